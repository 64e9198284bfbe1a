// CLI entry for the demo upstream; all behaviour lives in app.ts.
// With DATABASE_URL set the leads live in Postgres (postgres-store.ts): migrated at start, seeded with
// DEMO_SEED_LEADS leads (default 100000) if empty, pool bounded by PG_POOL_MAX, PG_IDLE_TIMEOUT_MS,
// PG_CONNECT_TIMEOUT_MS and PG_STATEMENT_TIMEOUT_MS; GET /internal/pool shows the pool.
import { DEFAULT_JWT_SECRET, startDemoUpstream, type LeadStore } from './app.ts'

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0) {
    console.error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`)
    process.exit(1)
  }
  return value
}

async function openDatabase(url: string): Promise<LeadStore & { close(): Promise<void> }> {
  // Loaded only in Postgres mode.
  const { DEFAULT_POOL, openPostgresStore } = await import('./postgres-store.ts')
  return openPostgresStore({
    url,
    seedLeads: intEnv('DEMO_SEED_LEADS', 100_000),
    pool: {
      max: intEnv('PG_POOL_MAX', DEFAULT_POOL.max),
      idleTimeoutMs: intEnv('PG_IDLE_TIMEOUT_MS', DEFAULT_POOL.idleTimeoutMs),
      connectionTimeoutMs: intEnv('PG_CONNECT_TIMEOUT_MS', DEFAULT_POOL.connectionTimeoutMs),
      statementTimeoutMs: intEnv('PG_STATEMENT_TIMEOUT_MS', DEFAULT_POOL.statementTimeoutMs),
    },
    // stderr: stdout's first line is the "listening" line scripts wait for.
    log: (line) => console.error(`postgres: ${line}`),
  })
}

const store = process.env.DATABASE_URL ? await openDatabase(process.env.DATABASE_URL) : undefined
const upstream = await startDemoUpstream({
  store,
  port: intEnv('DEMO_PORT', 8000),
  host: process.env.DEMO_HOST || '0.0.0.0',
  jwtSecret: process.env.JWT_SECRET || DEFAULT_JWT_SECRET,
  latencyMs: intEnv('DEMO_LATENCY_MS', 0),
})
console.log(`demo upstream listening on ${upstream.url}`)

let stopping = false
const stop = (): void => {
  // A second signal while closing should not start another close.
  if (stopping) return
  stopping = true
  upstream.close().then(() => store?.close()).then(() => process.exit(0), () => process.exit(1))
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
