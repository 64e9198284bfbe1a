// The upstream's database against a real Postgres (a throwaway cluster from Debian's `postgresql`
// package): db:check's logic on a small seed (every hot query uses its index after the migrations),
// the migrations re-run and recover from a failed concurrent index build, and the demo upstream serves
// its API from Postgres with its pool stats at /internal/pool.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import pg from 'pg'
import { runDbCheck } from '../../deploy/postgres/check.ts'
import { loadMigrations, migrate } from '../../deploy/postgres/migrate.ts'
import type { Lead } from '../../deploy/demo-upstream/app.ts'
import { ROOT } from '../helpers/gateway.ts'
import { createDatabase, findPostgresBin, startTempCluster } from '../helpers/postgres.ts'

const PLAN_INDEXES = [
  'idx_leads_user_status', 'idx_leads_created_score', 'idx_leads_email',
  'idx_messages_conversation_created', 'idx_events_lead_timestamp', 'idx_social_engagement_lead',
]

if (!findPostgresBin()) {
  t.plan(0, 'no Postgres server binaries in /usr/lib/postgresql/*/bin: apt-get install postgresql (or set PG_BIN)')
} else {
  const cluster = await startTempCluster()
  t.teardown(() => cluster.stop())

  t.test('the performance migrations are the plan\'s six indexes, one CONCURRENTLY statement per file', async (t) => {
    const migrations = loadMigrations()
    t.equal(migrations[0]?.concurrentIndex, undefined, 'the schema migration runs in a transaction')
    t.same(migrations.slice(1).map((m) => m.concurrentIndex), PLAN_INDEXES)
  })

  t.test('db:check: after the index migrations every hot query uses its index', async (t) => {
    const result = await runDbCheck({ url: cluster.url, leads: 20_000, runs: 1 })
    t.same(result.failures, [])
    t.equal(result.indexMigrations.length, 6)
    t.same(result.rerunApplied, [], 'a second run applies nothing')
    t.same([...new Set(result.queries.map((q) => q.index))].sort(), [...PLAN_INDEXES].sort(), 'every plan index is checked')
    for (const q of result.queries) {
      t.ok(q.usesIndex, `${q.name}: ${q.after.scans.join(', ')}`)
      t.notOk(q.before.indexes.includes(q.index), `${q.name}: not used before it existed`)
      t.ok(q.before.executionMs > 0 && q.after.executionMs > 0, `${q.name}: both phases measured`)
    }
    const admin = new pg.Client(cluster.url)
    await admin.connect()
    t.teardown(() => admin.end())
    const { rows } = await admin.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'salesflow_db_check_%'")
    t.same(rows, [], 'the scratch schema is dropped')
  })

  t.test('migrations re-run, and rebuild an index a failed concurrent build left invalid', async (t) => {
    const db = new pg.Client(await createDatabase(cluster, 'migrations'))
    await db.connect()
    t.teardown(() => db.end())
    const all = loadMigrations().map((m) => m.name)
    t.same(await migrate(db), all, 'first run applies everything')
    t.same(await migrate(db), [], 'second run applies nothing')
    await db.query('DELETE FROM schema_migrations')
    t.same(await migrate(db), all, 'with the record lost, every file runs again without error (IF NOT EXISTS)')

    // A unique build over duplicate rows fails half-way and leaves an INVALID index of that name.
    await db.query("INSERT INTO leads (user_id, name, status) VALUES ('u', 'a', 'new'), ('u', 'b', 'new')")
    await db.query('DROP INDEX idx_leads_user_status')
    await t.rejects(db.query('CREATE UNIQUE INDEX CONCURRENTLY idx_leads_user_status ON leads (user_id, status)'))
    const state = async () => (await db.query(
      "SELECT indisvalid AS valid, indisunique AS unique FROM pg_index WHERE indexrelid = 'idx_leads_user_status'::regclass")).rows[0]
    t.same(await state(), { valid: false, unique: true }, 'the failed build left an invalid index')
    await db.query("DELETE FROM schema_migrations WHERE name = '0002_idx_leads_user_status'")
    const logged: string[] = []
    t.same(await migrate(db, { log: (line) => logged.push(line) }), ['0002_idx_leads_user_status'])
    t.same(await state(), { valid: true, unique: false }, 'dropped and built again as the migration says')
    t.ok(logged.some((line) => line.includes('dropped invalid index idx_leads_user_status')), logged.join('\n'))
  })

  t.test('the demo upstream in Postgres mode', async (t) => {
    const url = await createDatabase(cluster, 'demo')
    const start = async () => {
      const child = spawn(process.execPath, [join(ROOT, 'deploy/demo-upstream/server.ts')], {
        env: { ...process.env, DATABASE_URL: url, DEMO_PORT: '0', DEMO_HOST: '127.0.0.1', DEMO_SEED_LEADS: '2000', PG_POOL_MAX: '4' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
      let stderr = ''
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
      const [line] = (await once(child.stdout.setEncoding('utf8'), 'data')) as [string]
      const base = /listening on (http:\/\/\S+)/.exec(line)?.[1]
      if (!base) throw new Error(`no listening line: ${line} ${stderr}`)
      const stop = async () => {
        child.kill('SIGTERM')
        const [code] = await once(child, 'exit')
        return code as number | null
      }
      return { base, stop, stderr: () => stderr }
    }

    const demo = await start()
    const call = async (path: string, init: RequestInit & { token?: string; json?: unknown } = {}) => {
      const headers = new Headers(init.headers)
      if (init.token) headers.set('authorization', `Bearer ${init.token}`)
      if (init.json !== undefined) headers.set('content-type', 'application/json')
      const res = await fetch(demo.base + path, { ...init, headers, body: init.json === undefined ? init.body : JSON.stringify(init.json) })
      const text = await res.text()
      return { status: res.status, body: text ? JSON.parse(text) : undefined }
    }
    const login = async (user: string) => (await call('/auth/login', { method: 'POST', json: { username: user, password: 'demo' } })).body.access_token as string
    const alice = await login('alice')
    const bob = await login('bob')
    t.match(demo.stderr(), /applied 7 migrations/)
    t.match(demo.stderr(), /seeded \{"leads":2000/)

    const list = await call('/api/leads?limit=50', { token: alice })
    t.equal(list.status, 200)
    t.equal(list.body.total, 500, 'the seed gives each user 500 leads')
    const items = list.body.items as Lead[]
    t.equal(items.length, 50)
    t.same(Object.keys(items[0] as Lead).sort(), ['created_at', 'email', 'id', 'name', 'p_score', 'status', 'user_id'])
    t.ok(items.every((l) => l.user_id === 'alice' && typeof l.id === 'number' && new Date(l.created_at).toISOString() === l.created_at))
    t.ok(items.every((l, i) => i === 0 || (items[i - 1] as Lead).created_at >= l.created_at), 'newest first')
    t.same((await call('/api/leads?limit=10&offset=10', { token: alice })).body.items, items.slice(10, 20), 'paging')
    t.same((await call('/api/leads?offset=5000', { token: alice })).body, { items: [], total: 500 }, 'past the end keeps the total')

    const first = items[0] as Lead
    t.same((await call(`/api/leads/${first.id}`, { token: alice })).body, first, 'one lead')
    t.equal((await call(`/api/leads/${first.id}`, { token: bob })).status, 404, "another user's lead is not found")

    const dashboard = (await call('/api/dashboard', { token: alice })).body
    t.equal(dashboard.total, 500)
    const qualified = await call('/api/leads?status=qualified&limit=5', { token: alice })
    t.equal(qualified.body.total, dashboard.by_status.qualified)
    t.ok((qualified.body.items as Lead[]).every((l) => l.status === 'qualified'))

    const created = await call('/api/leads', { method: 'POST', token: alice, json: { name: 'New Person', p_score: 12.25 } })
    t.equal(created.status, 201)
    t.match(created.body, { name: 'New Person', email: null, status: 'new', p_score: 12.25, user_id: 'alice' })
    t.same((await call('/api/leads?limit=1', { token: alice })).body.items[0], created.body, 'the new lead is the newest')
    const patched = await call(`/api/leads/${created.body.id}`, { method: 'PATCH', token: alice, json: { status: 'won', email: 'new@example.com' } })
    t.same(patched.body, { ...created.body, status: 'won', email: 'new@example.com' })
    t.equal((await call(`/api/leads/${created.body.id}`, { method: 'DELETE', token: alice })).status, 204)
    t.equal((await call(`/api/leads/${created.body.id}`, { token: alice })).status, 404)

    // More requests at once than the pool has connections: they queue for one, none fails.
    const burst = await Promise.all(Array.from({ length: 40 }, () => call('/api/dashboard', { token: bob })))
    t.ok(burst.every((r) => r.status === 200 && r.body.total === 500))
    const pool = await call('/internal/pool')
    t.equal(pool.status, 200)
    t.match(pool.body, { totalCount: Number, idleCount: Number, waitingCount: 0, max: 4 })
    t.ok(pool.body.totalCount >= 1 && pool.body.totalCount <= 4, `at most PG_POOL_MAX connections (${pool.body.totalCount})`)
    t.equal(await demo.stop(), 0, 'SIGTERM closes the server and the pool')

    const again = await start()
    const kept = await fetch(`${again.base}/api/dashboard`, { headers: { authorization: `Bearer ${alice}` } })
    t.equal(((await kept.json()) as { total: number }).total, 500, 'a restart keeps the data')
    t.match(again.stderr(), /migrations up to date/)
    t.notMatch(again.stderr(), /seeded/, 'and does not seed again')
    t.equal(await again.stop(), 0)
  })
}
