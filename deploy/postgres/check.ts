// `npm run db:check`: do the plan's indexes do what it promised? Against a real Postgres, in a scratch
// schema it drops afterwards: create the tables, seed, VACUUM ANALYZE, explain each hot query; apply the
// index migrations, explain again; check the planner now uses each expected index (exit 1 if not) and
// that a second migration run applies nothing; print execution time before/after and the speedup.
// Speedups are reported, not asserted: they depend on the machine and the data size.
//
//   npm run db:check [-- --leads N] [-- --events N] [-- --runs N]
//   DATABASE_URL=postgres://… npm run db:check     (else it starts a throwaway Postgres, see temp-cluster.ts)
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { measure, type Measured } from './explain.ts'
import { HOT_QUERIES } from './hot-queries.ts'
import { migrate } from './migrate.ts'
import { seedCounts, seedIfEmpty, type SeedCounts } from './seed.ts'
import { startTempCluster } from './temp-cluster.ts'

export const SCHEMA_MIGRATION = '0001_salesflow_schema'
export const DEFAULT_CHECK_LEADS = 200_000

export interface CheckOptions {
  url: string
  leads?: number
  events?: number
  /** Measured runs per query and phase (after one warm-up); the median is reported. */
  runs?: number
  log?: (line: string) => void
}

export interface QueryOutcome {
  name: string
  index: string
  before: Measured
  after: Measured
  /** The expected index is among those the planner used after the migrations. */
  usesIndex: boolean
}

export interface CheckResult {
  serverVersion: string
  seeded: SeedCounts
  seedSeconds: number
  /** The index migrations and how long each took to build. */
  indexMigrations: string[]
  indexBuildSeconds: number
  /** What a second migration run applied: nothing, if the migrations are re-runnable. */
  rerunApplied: string[]
  queries: QueryOutcome[]
  failures: string[]
}

export async function runDbCheck(options: CheckOptions): Promise<CheckResult> {
  const log = options.log ?? (() => {})
  const size = { leads: options.leads ?? DEFAULT_CHECK_LEADS, events: options.events }
  // A scratch schema keeps the check away from any real tables in the database it is pointed at.
  const schema = `salesflow_db_check_${process.pid}_${Date.now()}`
  const db = new pg.Client({ connectionString: options.url, application_name: 'salesflow-db-check' })
  // A dropped connection fails the query in flight, which reports it; unheard, the 'error' event would crash us first.
  db.on('error', () => {})
  await db.connect()
  try {
    const serverVersion = (await db.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version ?? '?'
    await db.query(`CREATE SCHEMA ${schema}`)
    await db.query(`SET search_path TO ${schema}`)
    await migrate(db, { until: SCHEMA_MIGRATION })

    log(`seeding ${JSON.stringify(seedCounts(size))}`)
    let started = performance.now()
    const seeded = await seedIfEmpty(db, size)
    if (!seeded) throw new Error('the scratch schema was not empty')
    const seedSeconds = (performance.now() - started) / 1000
    // VACUUM as autovacuum would have by now: it sets the visibility map that index-only scans need.
    await db.query('VACUUM ANALYZE leads, dm_messages, web_tracking_events, social_engagement_events')

    const params = new Map<string, unknown[]>()
    for (const q of HOT_QUERIES) params.set(q.name, await q.params(db))
    log('explaining the hot queries without the indexes')
    const before = new Map<string, Measured>()
    for (const q of HOT_QUERIES) before.set(q.name, await measure(db, q.sql, params.get(q.name) ?? [], options.runs))

    log('applying the index migrations')
    started = performance.now()
    const indexMigrations = await migrate(db, { log })
    const indexBuildSeconds = (performance.now() - started) / 1000
    await db.query('ANALYZE leads, dm_messages, web_tracking_events, social_engagement_events')

    log('explaining the hot queries with the indexes')
    const queries: QueryOutcome[] = []
    for (const q of HOT_QUERIES) {
      const after = await measure(db, q.sql, params.get(q.name) ?? [], options.runs)
      queries.push({ name: q.name, index: q.index, before: before.get(q.name) as Measured, after, usesIndex: after.indexes.includes(q.index) })
    }
    const rerunApplied = await migrate(db)

    const failures = queries
      .filter((q) => !q.usesIndex)
      .map((q) => `${q.name}: expected ${q.index}, the plan used ${q.after.scans.join(', ') || 'no scan'}`)
    if (rerunApplied.length > 0) failures.push(`a second migration run applied ${rerunApplied.join(', ')}`)
    return { serverVersion, seeded, seedSeconds, indexMigrations, indexBuildSeconds, rerunApplied, queries, failures }
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {})
    await db.end()
  }
}

const ms = (value: number): string => (value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(3))

/** A markdown table: one row per query. */
export function formatTable(result: CheckResult): string {
  const lines = [
    '| query | index used after | before ms | after ms | speedup | buffers before → after | plan before → after |',
    '|---|---|---:|---:|---:|---:|---|',
  ]
  for (const q of result.queries) {
    const speedup = q.after.executionMs > 0 ? `${(q.before.executionMs / q.after.executionMs).toFixed(1)}×` : '—'
    lines.push(`| ${q.name} | ${q.usesIndex ? q.index : `**not ${q.index}**`} | ${ms(q.before.executionMs)} | ${ms(q.after.executionMs)} | ${speedup} | `
      + `${q.before.buffers} → ${q.after.buffers} | ${q.before.scans.join(', ')} → ${q.after.scans.join(', ')} |`)
  }
  return lines.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { leads: { type: 'string' }, events: { type: 'string' }, runs: { type: 'string' } } })
  const positive = (text: string | undefined, name: string): number | undefined => {
    if (text === undefined) return undefined
    const n = Number(text)
    if (!Number.isInteger(n) || n < 1) {
      console.error(`--${name} must be a positive integer, got ${JSON.stringify(text)}`)
      process.exit(2)
    }
    return n
  }
  const size = { leads: positive(values.leads, 'leads'), events: positive(values.events, 'events'), runs: positive(values.runs, 'runs') }
  const log = (line: string): void => console.error(`db:check: ${line}`)
  let url = process.env.DATABASE_URL
  const cluster = url ? undefined : await startTempCluster().catch((err: Error) => {
    console.error(`db:check: set DATABASE_URL, or install Postgres for a throwaway one (${err.message})`)
    process.exit(2)
  })
  if (cluster) {
    log(`started a throwaway Postgres in ${cluster.dir}`)
    url = cluster.url
    // Ctrl-C must not leave a server running as nobody. (Against DATABASE_URL an interrupted run
    // leaves its salesflow_db_check_* schema behind: drop it by hand.)
    const interrupted = (): void => { void cluster.stop().finally(() => process.exit(130)) }
    process.once('SIGINT', interrupted)
    process.once('SIGTERM', interrupted)
  }
  try {
    const result = await runDbCheck({ url: url as string, ...size, log })
    console.log(`Postgres ${result.serverVersion}; seeded ${JSON.stringify(result.seeded)} in ${result.seedSeconds.toFixed(1)} s; `
      + `${result.indexMigrations.length} index migrations built in ${result.indexBuildSeconds.toFixed(1)} s; `
      + `median of ${values.runs ?? 5} runs of EXPLAIN (ANALYZE, BUFFERS) execution time\n`)
    console.log(formatTable(result))
    if (result.failures.length > 0) {
      console.log(`\nFAILED:\n${result.failures.map((f) => `- ${f}`).join('\n')}`)
      process.exitCode = 1
    } else {
      console.log(`\nok: every hot query uses its index; a second migration run applied nothing`)
    }
  } catch (err) {
    console.error(err instanceof Error ? err.stack : err)
    process.exitCode = 1
  } finally {
    await cluster?.stop()
  }
}
