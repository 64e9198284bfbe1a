// Applies deploy/postgres/migrations/*.sql in file-name order and records each in schema_migrations,
// so a second run applies nothing. Ordinary files run in a transaction. A file with CREATE INDEX
// CONCURRENTLY must hold that one statement and runs outside any transaction (Postgres refuses it inside
// one); if such a build ever failed half-way it left an INVALID index that IF NOT EXISTS would skip for
// ever, so the runner drops that index first and builds it again.
//
//   DATABASE_URL=postgres://… node deploy/postgres/migrate.ts
import { readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url))

// One key for every runner on a database: two demo upstreams starting together must not race.
const LOCK_KEY = 824_215_001

export interface Migration {
  /** File name without .sql, e.g. "0002_idx_leads_user_status". */
  name: string
  sql: string
  /** The index a CONCURRENTLY file builds; undefined for files that run in a transaction. */
  concurrentIndex: string | undefined
}

export interface MigrateOptions {
  dir?: string
  /** Stop after this migration (by name): db:check measures before the index migrations. */
  until?: string
  log?: (line: string) => void
}

const withoutComments = (sql: string): string => sql.replace(/--[^\n]*/g, '')

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .sort()
    .map((file) => {
      const sql = readFileSync(join(dir, file), 'utf8')
      const code = withoutComments(sql)
      if (!/\bCONCURRENTLY\b/i.test(code)) return { name: basename(file, '.sql'), sql, concurrentIndex: undefined }
      const statements = code.split(';').filter((s) => s.trim() !== '')
      const index = /^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+([A-Za-z_][A-Za-z0-9_]*)\s/i.exec(code)
      if (statements.length !== 1 || !index) {
        throw new Error(`${file}: a CONCURRENTLY migration must be exactly one CREATE INDEX CONCURRENTLY IF NOT EXISTS <name> statement`)
      }
      return { name: basename(file, '.sql'), sql, concurrentIndex: index[1] as string }
    })
}

/** Applies what is not yet recorded; returns the names it applied. `client` is one session (not a pool). */
export async function migrate(client: pg.Client, options: MigrateOptions = {}): Promise<string[]> {
  const log = options.log ?? (() => {})
  const migrations = loadMigrations(options.dir)
  if (options.until !== undefined && !migrations.some((m) => m.name === options.until)) {
    throw new Error(`no migration named ${options.until}`)
  }
  // Index builds on large tables outlast any per-role statement timeout a hosted database sets.
  await client.query('SET statement_timeout = 0')
  await lock(client)
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      name text PRIMARY KEY,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const done = new Set((await client.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name))
    const applied: string[] = []
    for (const migration of migrations) {
      if (!done.has(migration.name)) {
        const started = performance.now()
        if (migration.concurrentIndex) await applyConcurrently(client, migration, migration.concurrentIndex, log)
        else await applyInTransaction(client, migration)
        applied.push(migration.name)
        log(`applied ${migration.name} (${Math.round(performance.now() - started)} ms)`)
      }
      if (migration.name === options.until) break
    }
    return applied
  } finally {
    // Ending the session releases the lock too, so a broken connection needs nothing more.
    await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => {})
  }
}

// Polls pg_try_advisory_lock rather than waiting in pg_advisory_lock: a waiting statement holds a
// snapshot, and the other runner's CREATE INDEX CONCURRENTLY would wait for that snapshot in turn.
async function lock(client: pg.Client, timeoutMs = 10 * 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [LOCK_KEY])
    if (rows[0]?.locked) return
    if (Date.now() > deadline) throw new Error('another migration run held the lock for too long')
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

async function applyInTransaction(client: pg.Client, migration: Migration): Promise<void> {
  await client.query('BEGIN')
  try {
    await client.query(migration.sql)
    await client.query('INSERT INTO schema_migrations (name) VALUES ($1) ON CONFLICT DO NOTHING', [migration.name])
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw new Error(`${migration.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
}

async function applyConcurrently(client: pg.Client, migration: Migration, index: string, log: (line: string) => void): Promise<void> {
  if (await dropIfInvalid(client, index)) log(`dropped invalid index ${index} left by an earlier failed build`)
  try {
    await client.query(migration.sql)
  } catch (err) {
    // Don't leave the invalid remains behind: writes would keep maintaining an index no query can use.
    await dropIfInvalid(client, index).catch(() => {})
    throw new Error(`${migration.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  await client.query('INSERT INTO schema_migrations (name) VALUES ($1) ON CONFLICT DO NOTHING', [migration.name])
}

/** Drops the index if it exists and is not valid; true if it did. The name resolves through search_path. */
export async function dropIfInvalid(client: pg.Client, index: string): Promise<boolean> {
  const { rows } = await client.query<{ valid: boolean }>(
    'SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)',
    [pg.escapeIdentifier(index)],
  )
  if (rows.length === 0 || rows[0]?.valid) return false
  await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${pg.escapeIdentifier(index)}`)
  return true
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const url = process.env.DATABASE_URL
  if (!url) {
    console.error('DATABASE_URL is not set (e.g. postgres://user:pass@localhost:5432/salesflow)')
    process.exit(2)
  }
  const client = new pg.Client({ connectionString: url, application_name: 'salesflow-migrate' })
  client.on('error', () => {}) // the query in flight fails too and says why
  await client.connect()
  try {
    const applied = await migrate(client, { log: (line) => console.log(line) })
    console.log(applied.length === 0 ? 'migrations: up to date' : `migrations: applied ${applied.length}`)
  } catch (err) {
    console.error(err instanceof Error ? err.message : err)
    process.exitCode = 1
  } finally {
    await client.end()
  }
}
