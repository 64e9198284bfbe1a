// The queries db:check measures: the demo upstream's lead endpoints (the very SQL it runs) and the
// plan's other hot paths, each with the index the performance migrations add for it.
import type pg from 'pg'
import { LEADS_BY_STATUS, LEAD_COLUMNS, LIST_LEADS, LIST_LEADS_BY_STATUS } from './lead-queries.ts'

export interface HotQuery {
  name: string
  /** The index the planner should use once the performance migrations ran. */
  index: string
  sql: string
  /** Parameter values, picked from the seeded data once and used for every run, before and after. */
  params(db: pg.Client): Promise<unknown[]>
}

const one = async <T>(db: pg.Client, sql: string): Promise<T> => {
  const { rows } = await db.query(sql)
  if (rows.length === 0) throw new Error(`no row for: ${sql}`)
  return Object.values(rows[0] as object)[0] as T
}

// The lead with the most rows in an event table: the one whose timeline someone is looking at,
// and the case where an index that already holds the order saves a sort.
const busiestLead = (table: string) => (db: pg.Client) =>
  one<string>(db, `SELECT lead_id FROM ${table} GROUP BY lead_id ORDER BY count(*) DESC, lead_id LIMIT 1`)

export const HOT_QUERIES: readonly HotQuery[] = [
  {
    name: "a user's leads, newest first (GET /api/leads)",
    index: 'idx_leads_user_status',
    sql: LIST_LEADS,
    params: async () => ['alice', 50, 0],
  },
  {
    name: "a user's leads by status (GET /api/leads?status=qualified)",
    index: 'idx_leads_user_status',
    sql: LIST_LEADS_BY_STATUS,
    params: async () => ['alice', 'qualified', 50, 0],
  },
  {
    name: "a user's counts by status (GET /api/dashboard)",
    index: 'idx_leads_user_status',
    sql: LEADS_BY_STATUS,
    params: async () => ['alice'],
  },
  {
    name: 'recent leads by created_at, p_score (LIMIT 50)',
    index: 'idx_leads_created_score',
    sql: `SELECT ${LEAD_COLUMNS} FROM leads ORDER BY created_at DESC, p_score DESC LIMIT 50`,
    params: async () => [],
  },
  {
    name: 'lead by e-mail',
    index: 'idx_leads_email',
    sql: `SELECT ${LEAD_COLUMNS} FROM leads WHERE email = $1`,
    params: async (db) => [await one<string>(db,
      'SELECT email FROM leads WHERE email IS NOT NULL AND id >= (SELECT (min(id) + max(id)) / 2 FROM leads) ORDER BY id LIMIT 1')],
  },
  {
    name: "a conversation's messages, newest first",
    index: 'idx_messages_conversation_created',
    sql: 'SELECT id, lead_id, direction, body, created_at FROM dm_messages WHERE conversation_id = $1 ORDER BY created_at DESC LIMIT 50',
    params: async (db) => [await one<string>(db,
      'SELECT conversation_id FROM dm_messages WHERE id >= (SELECT (min(id) + max(id)) / 2 FROM dm_messages) ORDER BY id LIMIT 1')],
  },
  {
    name: "a lead's web events, newest first (busiest lead)",
    index: 'idx_events_lead_timestamp',
    sql: 'SELECT id, event_type, url, "timestamp" FROM web_tracking_events WHERE lead_id = $1 ORDER BY "timestamp" DESC LIMIT 50',
    params: async (db) => [await busiestLead('web_tracking_events')(db)],
  },
  {
    name: "a lead's social engagement by type (busiest lead)",
    index: 'idx_social_engagement_lead',
    sql: 'SELECT engagement_type, count(*)::int AS n FROM social_engagement_events WHERE lead_id = $1 GROUP BY engagement_type',
    params: async (db) => [await busiestLead('social_engagement_events')(db)],
  },
]
