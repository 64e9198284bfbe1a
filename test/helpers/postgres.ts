// A real Postgres for tests: one throwaway cluster per test file (deploy/postgres/temp-cluster.ts, Debian's
// `postgresql` package), with a fresh database per test so they cannot see each other's tables.
import pg from 'pg'
import type { TempCluster } from '../../deploy/postgres/temp-cluster.ts'

export { findPostgresBin, startTempCluster, type TempCluster } from '../../deploy/postgres/temp-cluster.ts'

/** Creates database `name` in the cluster and returns its URL. */
export async function createDatabase(cluster: TempCluster, name: string): Promise<string> {
  const admin = new pg.Client(cluster.url)
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  } finally {
    await admin.end()
  }
  return cluster.url.replace(/\/[^/]*$/, `/${name}`)
}
