// Fills the SalesFlow tables with realistic volumes, generated inside Postgres (generate_series, one
// INSERT … SELECT per table) so half a million leads take seconds, not a million round trips.
// Deterministic: setseed() makes the same size produce the same rows.
//
// Shape of the data:
// - leads: ~500 per user; users alice and bob (the demo's logins) come first, then user00002…;
//   statuses uniform, one e-mail in ten missing, created over the year before 2025-01-01.
// - events (default 4 per lead): 60% web_tracking_events, 25% social_engagement_events, 15% dm_messages.
//   Web and social events are skewed (random()²) so a few leads are very active, as in real tracking data;
//   messages come in conversations of ~20, each with one lead.
//
//   DATABASE_URL=postgres://… node deploy/postgres/seed.ts [--leads N] [--events N] [--reset]
//   (or SEED_LEADS / SEED_EVENTS; default 500000 leads, 4 events per lead)
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'

export interface SeedSize {
  leads: number
  /** Total across the three event tables; default 4 per lead. */
  events?: number
}

export const DEFAULT_LEADS = 500_000
export const EVENTS_PER_LEAD = 4
const LEADS_PER_USER = 500
// Serialises "is it empty? then seed" between processes that start together.
const SEED_LOCK_KEY = 824_215_002

const FIRST = ['Ada', 'Ben', 'Chloe', 'Dev', 'Elena', 'Farid', 'Grace', 'Hiro', 'Ines', 'Jonas', 'Kira', 'Luca', 'Maya', 'Nils', 'Olga', 'Priya']
const LAST = ['Adams', 'Brooks', 'Costa', 'Dubois', 'Evans', 'Fischer', 'Garcia', 'Hansen', 'Ito', 'Jensen', 'Kowalski', 'Lopez', 'Moreau', 'Novak', 'Okafor', 'Patel']
const pick = (values: readonly string[]): string =>
  `(ARRAY[${values.map((v) => pg.escapeLiteral(v)).join(', ')}])[1 + floor(random() * ${values.length})::int]`

// The year before the demo's fixed base date, like the in-memory demo data.
const IN_THE_YEAR = `timestamptz '2025-01-01 00:00:00+00' - random() * interval '365 days'`

const INSERT_LEADS = `
INSERT INTO leads (user_id, name, email, status, p_score, created_at)
SELECT CASE u WHEN 0 THEN 'alice' WHEN 1 THEN 'bob' ELSE 'user' || lpad(u::text, 5, '0') END,
       first || ' ' || last,
       CASE WHEN random() < 0.1 THEN NULL ELSE lower(first || '.' || last || n || '@example.com') END,
       ${pick(['new', 'contacted', 'qualified', 'won', 'lost'])},
       round((random() * 100)::numeric, 1)::float8,
       ${IN_THE_YEAR}
FROM (
  -- A subquery with volatile columns is not flattened: each row draws its name once.
  SELECT n, (n - 1) % $2::int AS u, ${pick(FIRST)} AS first, ${pick(LAST)} AS last
  FROM generate_series(1, $1::int) AS n
) AS s`

// $1 rows, over the leads with ids $2 … $2 + $3 - 1 (one INSERT's identity values are consecutive,
// unless another session inserts at the same time; then a few events point at its leads instead).
const SKEWED_LEAD = `$2::bigint + floor($3::bigint * random() ^ 2)::bigint`

const INSERT_WEB_EVENTS = `
INSERT INTO web_tracking_events (lead_id, event_type, url, "timestamp")
SELECT ${SKEWED_LEAD},
       CASE WHEN random() < 0.7 THEN 'page_view' ELSE ${pick(['click', 'form_submit'])} END,
       'https://salesflow.example' || ${pick(['/', '/pricing', '/features', '/demo', '/signup', '/blog/lead-scoring', '/blog/cold-outreach'])},
       ${IN_THE_YEAR}
FROM generate_series(1, $1::int)`

const INSERT_SOCIAL_EVENTS = `
INSERT INTO social_engagement_events (lead_id, platform, engagement_type, occurred_at)
SELECT ${SKEWED_LEAD},
       ${pick(['linkedin', 'instagram', 'x', 'facebook'])},
       ${pick(['like', 'comment', 'share', 'follow', 'mention'])},
       ${IN_THE_YEAR}
FROM generate_series(1, $1::int)`

// $4 conversations of ~20 messages; a conversation's lead follows from its id.
const INSERT_MESSAGES = `
INSERT INTO dm_messages (conversation_id, lead_id, direction, body, created_at)
SELECT c, $2::bigint + (c * 7919) % $3::bigint,
       CASE WHEN random() < 0.5 THEN 'inbound' ELSE 'outbound' END,
       ${pick(['Thanks for reaching out!', 'Could we book a call next week?', 'Here is the pricing overview you asked for.', 'Not interested right now, maybe next quarter.', 'Following up on my last message.', 'Sounds great, send me the contract.'])},
       ${IN_THE_YEAR}
FROM (SELECT 1 + floor(random() * $4::int)::bigint AS c FROM generate_series(1, $1::int)) AS m`

export interface SeedCounts {
  leads: number
  web_tracking_events: number
  social_engagement_events: number
  dm_messages: number
}

export function seedCounts(size: SeedSize): SeedCounts {
  const events = size.events ?? size.leads * EVENTS_PER_LEAD
  const social = Math.round(events * 0.25)
  const messages = Math.round(events * 0.15)
  return { leads: size.leads, web_tracking_events: events - social - messages, social_engagement_events: social, dm_messages: messages }
}

/**
 * Seeds in one transaction (all or nothing) if leads is empty, checked under a lock so two processes
 * starting together seed once; then ANALYZEs the tables. Returns the counts, or undefined if leads had rows.
 */
export async function seedIfEmpty(client: pg.Client, size: SeedSize): Promise<SeedCounts | undefined> {
  await client.query('BEGIN')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [SEED_LOCK_KEY])
    const { rows } = await client.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM leads) AS any')
    if (rows[0]?.any) {
      await client.query('ROLLBACK')
      return undefined
    }
    const counts = await insertAll(client, size)
    await client.query('COMMIT')
    await client.query('ANALYZE leads, dm_messages, web_tracking_events, social_engagement_events')
    return counts
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

async function insertAll(client: pg.Client, size: SeedSize): Promise<SeedCounts> {
  const counts = seedCounts(size)
  if (!Number.isInteger(counts.leads) || counts.leads < 1) throw new Error(`leads must be a positive integer, got ${size.leads}`)
  // A role's statement timeout is meant for requests; a bulk load rightly runs longer.
  await client.query('SET LOCAL statement_timeout = 0')
  await client.query('SELECT setseed(0.42)')
  const users = Math.max(2, Math.ceil(counts.leads / LEADS_PER_USER))
  const { rows } = await client.query<{ first: string }>(`WITH inserted AS (${INSERT_LEADS} RETURNING id) SELECT min(id) AS first FROM inserted`, [counts.leads, users])
  const first = Number(rows[0]?.first)
  const span = counts.leads
  await client.query(INSERT_WEB_EVENTS, [counts.web_tracking_events, first, span])
  await client.query(INSERT_SOCIAL_EVENTS, [counts.social_engagement_events, first, span])
  const conversations = Math.max(1, Math.round(counts.dm_messages / 20))
  await client.query(INSERT_MESSAGES, [counts.dm_messages, first, span, conversations])
  return counts
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { leads: { type: 'string' }, events: { type: 'string' }, reset: { type: 'boolean', default: false } },
  })
  const count = (text: string | undefined, name: string): number | undefined => {
    if (text === undefined || text === '') return undefined
    const n = Number(text)
    if (!Number.isInteger(n) || n < 1) {
      console.error(`${name} must be a positive integer, got ${JSON.stringify(text)}`)
      process.exit(2)
    }
    return n
  }
  const leads = count(values.leads ?? process.env.SEED_LEADS, 'leads') ?? DEFAULT_LEADS
  const events = count(values.events ?? process.env.SEED_EVENTS, 'events')
  const url = process.env.DATABASE_URL
  if (!url) {
    console.error('DATABASE_URL is not set; run the migrations first (node deploy/postgres/migrate.ts)')
    process.exit(2)
  }
  const client = new pg.Client({ connectionString: url, application_name: 'salesflow-seed' })
  client.on('error', () => {}) // the query in flight fails too and says why
  await client.connect()
  try {
    const started = performance.now()
    if (values.reset) await client.query('TRUNCATE leads, dm_messages, web_tracking_events, social_engagement_events RESTART IDENTITY')
    const counts = await seedIfEmpty(client, { leads, events })
    if (!counts) console.log('leads already has rows; nothing seeded (--reset truncates the tables and seeds again)')
    else console.log(`seeded ${JSON.stringify(counts)} in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  } catch (err) {
    console.error(err instanceof Error ? err.message : err)
    process.exitCode = 1
  } finally {
    await client.end()
  }
}
