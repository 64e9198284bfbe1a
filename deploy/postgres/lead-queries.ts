// The SQL behind the demo upstream's lead endpoints, in one place so db:check explains exactly what
// the demo runs. Newest first with id as the tie-break, like the in-memory store.

export const LEAD_COLUMNS = 'id, user_id, name, email, status, p_score, created_at'

// count(*) OVER () is computed before LIMIT, so one round trip gives the page and the total. A page past
// the end has no row to carry the total; the store then asks COUNT_LEADS*.
// MATERIALIZED is deliberate: without it Postgres 15 plans `WHERE user_id = $1 ORDER BY created_at DESC
// LIMIT 50` under the window as a walk of idx_leads_created_score that stops early, but the window has to
// read every row, so the walk covers the whole table. For a user owning 1 lead in 40 (20,000 leads) we
// measured 13 ms and 20,003 buffers against 4 ms for no index at all; for 1 in 400 it happened to choose well.
// Fenced off, the user's rows come from idx_leads_user_status and only they are sorted.

/** GET /api/leads: $1 user, $2 limit, $3 offset. */
export const LIST_LEADS = `WITH theirs AS MATERIALIZED (SELECT ${LEAD_COLUMNS} FROM leads WHERE user_id = $1)
SELECT *, count(*) OVER () AS total FROM theirs ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3`

/** GET /api/leads?status=…: $1 user, $2 status, $3 limit, $4 offset. */
export const LIST_LEADS_BY_STATUS = `WITH theirs AS MATERIALIZED (SELECT ${LEAD_COLUMNS} FROM leads WHERE user_id = $1 AND status = $2)
SELECT *, count(*) OVER () AS total FROM theirs ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4`

export const COUNT_LEADS = 'SELECT count(*)::int AS total FROM leads WHERE user_id = $1'
export const COUNT_LEADS_BY_STATUS = 'SELECT count(*)::int AS total FROM leads WHERE user_id = $1 AND status = $2'

/** GET /api/dashboard: $1 user. */
export const LEADS_BY_STATUS = 'SELECT status, count(*)::int AS n FROM leads WHERE user_id = $1 GROUP BY status'

/** GET /api/leads/{id}: $1 id, $2 user (another user's lead is not found). */
export const GET_LEAD = `SELECT ${LEAD_COLUMNS} FROM leads WHERE id = $1 AND user_id = $2`

/** POST /api/leads: $1 user, $2 name, $3 email, $4 status, $5 p_score. */
export const INSERT_LEAD = `INSERT INTO leads (user_id, name, email, status, p_score) VALUES ($1, $2, $3, $4, $5)
RETURNING ${LEAD_COLUMNS}`

/** DELETE /api/leads/{id}: $1 id, $2 user. Its events go with it (ON DELETE CASCADE). */
export const DELETE_LEAD = 'DELETE FROM leads WHERE id = $1 AND user_id = $2'
