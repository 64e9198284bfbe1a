// The demo upstream's leads in Postgres (server.ts uses this when DATABASE_URL is set): a pg Pool sized
// and bounded as deploy/postgres/TUNING.md explains, the schema migrated at start, seeded if empty.
import pg from 'pg'
import { migrate } from '../postgres/migrate.ts'
import { seedIfEmpty, type SeedCounts } from '../postgres/seed.ts'
import * as sql from '../postgres/lead-queries.ts'
import { LEAD_STATUSES, type Lead, type LeadFields, type LeadStatus, type LeadStore } from './app.ts'

export interface PoolSettings {
  /** Most connections the pool opens (the plan's pool_size). pg has no overflow: beyond it, requests queue. */
  max: number
  /** An idle connection is closed after this long, so a quiet API gives its connections back. */
  idleTimeoutMs: number
  /** Longest wait for a connection, new or from the queue, before the request fails fast. */
  connectionTimeoutMs: number
  /** Server-side limit per statement (statement_timeout); below the gateway's upstream header timeout. */
  statementTimeoutMs: number
  /** A connection is replaced after this long (the plan's pool_recycle), e.g. to follow a failover. */
  maxLifetimeSeconds: number
}

export const DEFAULT_POOL: PoolSettings = {
  max: 20,
  idleTimeoutMs: 10_000,
  connectionTimeoutMs: 2_000,
  statementTimeoutMs: 5_000,
  maxLifetimeSeconds: 3_600,
}

export interface PoolStats {
  totalCount: number
  idleCount: number
  waitingCount: number
  max: number
}

export interface PostgresLeadStore extends LeadStore {
  readonly pool: pg.Pool
  stats(): PoolStats
  close(): Promise<void>
}

export interface OpenOptions {
  url: string
  pool?: Partial<PoolSettings>
  /** Leads to seed when the leads table is empty (events: 4 per lead); 0 seeds nothing. */
  seedLeads: number
  log?: (line: string) => void
}

interface LeadRow {
  id: string // bigint arrives as a string; demo ids stay far below 2^53
  user_id: string
  name: string
  email: string | null
  status: LeadStatus
  p_score: number
  created_at: Date
}

const toLead = (row: LeadRow): Lead => ({
  id: Number(row.id),
  user_id: row.user_id,
  name: row.name,
  email: row.email,
  status: row.status,
  p_score: row.p_score,
  created_at: row.created_at.toISOString(),
})

const UPDATABLE = ['name', 'email', 'status', 'p_score'] as const

/** Migrates (one session, outside the pool), seeds if empty, then opens the pool the requests use. */
export async function openPostgresStore(options: OpenOptions): Promise<PostgresLeadStore> {
  const log = options.log ?? (() => {})
  const setup = new pg.Client({ connectionString: options.url, application_name: 'salesflow-demo-migrate' })
  setup.on('error', () => {}) // the query in flight fails too and says why
  await setup.connect()
  try {
    const applied = await migrate(setup, { log })
    log(applied.length === 0 ? 'migrations up to date' : `applied ${applied.length} migrations`)
    if (options.seedLeads > 0) {
      const started = performance.now()
      const seeded: SeedCounts | undefined = await seedIfEmpty(setup, { leads: options.seedLeads })
      if (seeded) log(`seeded ${JSON.stringify(seeded)} in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    }
  } finally {
    await setup.end()
  }
  return createPostgresStore(options.url, { ...DEFAULT_POOL, ...options.pool }, log)
}

export function createPostgresStore(url: string, settings: PoolSettings, log: (line: string) => void = () => {}): PostgresLeadStore {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: 'salesflow-demo',
    max: settings.max,
    idleTimeoutMillis: settings.idleTimeoutMs,
    connectionTimeoutMillis: settings.connectionTimeoutMs,
    statement_timeout: settings.statementTimeoutMs,
    maxLifetimeSeconds: settings.maxLifetimeSeconds,
  })
  // An idle connection that breaks (database restart, failover) is reported here; without a listener
  // the 'error' event would crash the process. The pool has already dropped that connection.
  pool.on('error', (err) => log(`idle database connection failed: ${err.message}`))

  const rows = async (text: string, values: unknown[]): Promise<LeadRow[]> => (await pool.query<LeadRow>(text, values)).rows
  const get = async (user: string, id: number): Promise<Lead | undefined> => {
    const [row] = await rows(sql.GET_LEAD, [id, user])
    return row && toLead(row)
  }

  return {
    pool,

    async list(user, { status, limit, offset }) {
      const page = status
        ? await pool.query<LeadRow & { total: string }>(sql.LIST_LEADS_BY_STATUS, [user, status, limit, offset])
        : await pool.query<LeadRow & { total: string }>(sql.LIST_LEADS, [user, limit, offset])
      const first = page.rows[0]
      if (first) return { items: page.rows.map(toLead), total: Number(first.total) }
      // A page past the end carries no total; count separately.
      const count = status
        ? await pool.query<{ total: number }>(sql.COUNT_LEADS_BY_STATUS, [user, status])
        : await pool.query<{ total: number }>(sql.COUNT_LEADS, [user])
      return { items: [], total: count.rows[0]?.total ?? 0 }
    },

    get,

    async create(user, fields: LeadFields) {
      const [row] = await rows(sql.INSERT_LEAD, [user, fields.name, fields.email, fields.status, fields.p_score])
      return toLead(row as LeadRow)
    },

    async update(user, id, fields) {
      const columns = UPDATABLE.filter((column) => fields[column] !== undefined)
      if (columns.length === 0) return get(user, id)
      // Column names come from UPDATABLE, never from the request.
      const set = columns.map((column, i) => `${column} = $${i + 3}`).join(', ')
      const [row] = await rows(`UPDATE leads SET ${set} WHERE id = $1 AND user_id = $2 RETURNING ${sql.LEAD_COLUMNS}`,
        [id, user, ...columns.map((column) => fields[column])])
      return row && toLead(row)
    },

    async remove(user, id) {
      await pool.query(sql.DELETE_LEAD, [id, user])
    },

    async countByStatus(user) {
      const counts = Object.fromEntries(LEAD_STATUSES.map((s) => [s, 0])) as Record<LeadStatus, number>
      const { rows: found } = await pool.query<{ status: LeadStatus; n: number }>(sql.LEADS_BY_STATUS, [user])
      for (const { status, n } of found) counts[status] = n
      return counts
    },

    stats() {
      return { totalCount: pool.totalCount, idleCount: pool.idleCount, waitingCount: pool.waitingCount, max: settings.max }
    },

    close: () => pool.end(),
  }
}
