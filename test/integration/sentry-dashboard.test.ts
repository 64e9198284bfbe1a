// `gateway sentry-dashboard` against a local stand-in for Sentry's dashboards API: the real CLI process
// creates the dashboard, finds and replaces it on the next run (across list pages), and turns refusals,
// other errors and an unreachable Sentry into one line and exit 1. Also: the file is a valid request body.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { ROOT, runCli } from '../helpers/gateway.ts'
import { refusingPort } from '../helpers/upstreams.ts'

const FILE = join(ROOT, 'deploy', 'sentry', 'gateway-dashboard.json')
const dashboard = JSON.parse(readFileSync(FILE, 'utf8')) as Record<string, unknown> & { title: string; widgets: Widget[] }
const COLLECTION = '/api/0/organizations/acme/dashboards/'

/** tap's process tracking (NODE_OPTIONS) only slows each short CLI run; the token is set per test. */
const ENV: NodeJS.ProcessEnv = { NODE_OPTIONS: undefined, SENTRY_AUTH_TOKEN: 't0ken' }

interface Seen { method: string; path: string; query: URLSearchParams; authorization: string | undefined; body: unknown }
interface Stored { id: string; title: string; [key: string]: unknown }
interface Answer { status: number; body: unknown }

interface StandIn {
  url: string
  seen: Seen[]
  dashboards: Stored[]
  close(): Promise<void>
}

/**
 * Answers like Sentry: the list is paginated with a cursor Link header (pageSize caps per_page), POST creates
 * with the next id ("1" first), PUT replaces. `answer` may take over any request (refusals, failures).
 */
async function startSentryApi(options: { seed?: Stored[]; pageSize?: number; answer?: (req: Seen) => Answer | undefined } = {}): Promise<StandIn> {
  const seen: Seen[] = []
  const dashboards: Stored[] = [...(options.seed ?? [])]
  let nextId = 1
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stand-in')
      const text = Buffer.concat(chunks).toString()
      const request: Seen = { method: req.method ?? '', path: url.pathname, query: url.searchParams, authorization: req.headers.authorization, body: text ? JSON.parse(text) : undefined }
      seen.push(request)
      const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers })
        res.end(JSON.stringify(body))
      }
      const override = options.answer?.(request)
      if (override) return reply(override.status, override.body)
      const one = /^\/api\/0\/organizations\/acme\/dashboards\/([^/]+)\/$/.exec(url.pathname)
      if (url.pathname === COLLECTION && req.method === 'GET') {
        const perPage = Math.min(Number(url.searchParams.get('per_page') ?? 100), options.pageSize ?? 100)
        const offset = Number((url.searchParams.get('cursor') ?? '0:0:0').split(':')[1])
        const page = dashboards.slice(offset, offset + perPage).map(({ id, title }) => ({ id, title, dateCreated: '2026-01-01T00:00:00Z' }))
        const more = offset + perPage < dashboards.length
        const link = (cursor: string, rel: string, results: boolean) => `<http://${req.headers.host}${COLLECTION}?per_page=${perPage}&cursor=${cursor}>; rel="${rel}"; results="${results}"; cursor="${cursor}"`
        return reply(200, page, { link: `${link(`0:${Math.max(offset - perPage, 0)}:1`, 'previous', offset > 0)}, ${link(`0:${offset + perPage}:0`, 'next', more)}` })
      }
      if (url.pathname === COLLECTION && req.method === 'POST') {
        const created = { ...(request.body as object), id: String(nextId++) } as Stored
        dashboards.push(created)
        return reply(201, created)
      }
      if (one && req.method === 'PUT') {
        const index = dashboards.findIndex((d) => d.id === one[1])
        if (index === -1) return reply(404, { detail: 'The requested resource does not exist' })
        dashboards[index] = { ...(request.body as object), id: one[1]! } as Stored
        return reply(200, dashboards[index])
      }
      reply(404, { detail: 'The requested resource does not exist' })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    dashboards,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

async function standIn(t: Test, options: Parameters<typeof startSentryApi>[0] = {}): Promise<StandIn> {
  const api = await startSentryApi(options)
  t.teardown(() => api.close())
  return api
}

const install = (api: StandIn, extra: string[] = [], env: NodeJS.ProcessEnv = {}) =>
  runCli(['sentry-dashboard', '--org', 'acme', '--url', api.url, ...extra], { ...ENV, ...env })

const lines = (text: string) => text.split('\n').filter(Boolean)

t.test('the first run creates the dashboard, the second finds it by title and replaces it', async (t) => {
  const api = await standIn(t)
  const first = await install(api)
  t.equal(first.code, 0, first.stderr)
  t.equal(first.stdout, 'created dashboard "API gateway" (id 1)\n')
  t.equal(first.stderr, '')
  t.same(api.seen.map((r) => `${r.method} ${r.path}`), [`GET ${COLLECTION}`, `POST ${COLLECTION}`])
  const post = api.seen[1]!
  t.equal(post.authorization, 'Bearer t0ken')
  t.strictSame(post.body, dashboard, 'the body is the file, as it is')

  const second = await install(api)
  t.equal(second.code, 0, second.stderr)
  t.equal(second.stdout, 'updated dashboard "API gateway" (id 1)\n')
  t.same(api.seen.slice(2).map((r) => `${r.method} ${r.path}`), [`GET ${COLLECTION}`, `PUT ${COLLECTION}1/`])
  t.strictSame(api.seen[3]!.body, dashboard)
  t.equal(api.dashboards.length, 1, 'one dashboard, not two')
  for (const request of api.seen) t.equal(request.authorization, 'Bearer t0ken', `${request.method} carries the token`)
})

t.test('--project sets the dashboard\'s projects', async (t) => {
  const api = await standIn(t)
  const result = await install(api, ['--project', '42'])
  t.equal(result.code, 0, result.stderr)
  t.strictSame(api.seen.at(-1)!.body, { ...dashboard, projects: [42] })
  const bad = await install(api, ['--project', 'gateway'])
  t.equal(bad.code, 2, 'a project slug is refused: the API takes ids')
  t.match(bad.stderr, /--project takes a numeric project id/)
})

t.test('the list is followed across pages until the title is found', async (t) => {
  const others = ['General', 'Frontend', 'Checkout'].map((title, i) => ({ id: String(900 + i), title }))
  const api = await standIn(t, { pageSize: 2, seed: [...others, { id: '7', title: 'API gateway' }] })
  const result = await install(api)
  t.equal(result.code, 0, result.stderr)
  t.equal(result.stdout, 'updated dashboard "API gateway" (id 7)\n')
  const gets = api.seen.filter((r) => r.method === 'GET')
  t.equal(gets.length, 2, 'two pages read')
  t.equal(gets[1]!.query.get('cursor'), '0:2:0', 'the second with the cursor from the Link header')
  t.same(api.seen.at(-1)!.path, `${COLLECTION}7/`)
  t.equal(api.dashboards.length, 4)
})

t.test('a refused token is one line and exit 1', async (t) => {
  for (const [status, detail] of [[401, 'Invalid token'], [403, 'You do not have permission to perform this action.']] as const) {
    const api = await standIn(t, { answer: () => ({ status, body: { detail } }) })
    const result = await install(api)
    t.equal(result.code, 1, `${status}`)
    t.equal(result.stdout, '')
    t.same(lines(result.stderr), [`sentry-dashboard: Sentry refused the token (${status}): ${detail}`])
  }
})

t.test('any other failure is one line with the status, and exit 1', async (t) => {
  const invalid = { widgets: [{ queries: ['Invalid conditions\nline two'] }] }
  const api = await standIn(t, { answer: (req) => (req.method === 'POST' ? { status: 400, body: invalid } : undefined) })
  const result = await install(api)
  t.equal(result.code, 1)
  t.same(lines(result.stderr), [`sentry-dashboard: POST ${COLLECTION} answered 400: ${JSON.stringify(invalid).replace(/\\n/g, '\\n')}`])
  const down = await standIn(t, { answer: () => ({ status: 503, body: 'upstream connect error' }) })
  const failing = await install(down)
  t.equal(failing.code, 1)
  t.same(lines(failing.stderr), [`sentry-dashboard: GET ${COLLECTION} answered 503: "upstream connect error"`])
  t.equal(down.seen.length, 1, 'nothing is created when the list fails')
})

t.test('an unreachable Sentry is one line and exit 1', async (t) => {
  const port = await refusingPort()
  const result = await runCli(['sentry-dashboard', '--org', 'acme', '--url', `http://127.0.0.1:${port}`], ENV)
  t.equal(result.code, 1)
  t.equal(result.stdout, '')
  t.same(lines(result.stderr), [`sentry-dashboard: cannot reach Sentry at http://127.0.0.1:${port}: ECONNREFUSED`])
})

t.test('--dry-run prints the body and sends nothing, without a token', async (t) => {
  const api = await standIn(t)
  const result = await install(api, ['--dry-run'], { SENTRY_AUTH_TOKEN: undefined })
  t.equal(result.code, 0, result.stderr)
  t.strictSame(JSON.parse(result.stdout), dashboard)
  const withProject = await runCli(['sentry-dashboard', '--dry-run', '--project', '5'], { ...ENV, SENTRY_AUTH_TOKEN: undefined })
  t.equal(withProject.code, 0, withProject.stderr)
  t.strictSame(JSON.parse(withProject.stdout), { ...dashboard, projects: [5] })
  t.equal(api.seen.length, 0)
})

t.test('usage errors exit 2: no token, no --org, a bad --url or flag', async (t) => {
  const api = await standIn(t)
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['--org', 'acme', '--url', api.url], { SENTRY_AUTH_TOKEN: undefined }, /SENTRY_AUTH_TOKEN is not set/],
    [['--org', 'acme', '--url', api.url], { SENTRY_AUTH_TOKEN: '' }, /SENTRY_AUTH_TOKEN is not set/],
    [['--url', api.url], {}, /--org is required/],
    [['--org', 'acme', '--url', 'ftp://sentry.example'], {}, /--url must be an http\(s\) address/],
    [['--org', 'acme', '--bogus'], {}, /Unknown option '--bogus'/],
  ]
  for (const [args, env, reason] of cases) {
    const result = await runCli(['sentry-dashboard', ...args], { ...ENV, ...env })
    t.equal(result.code, 2, args.join(' '))
    t.match(result.stderr, reason)
    t.match(result.stderr, /usage: gateway sentry-dashboard --org SLUG/)
    t.equal(result.stdout, '')
  }
  t.equal(api.seen.length, 0)
  const help = await runCli(['sentry-dashboard', '--help'], ENV)
  t.equal(help.code, 0)
  t.match(help.stdout, /^usage: gateway sentry-dashboard/)
})

t.test('a --file that is not a dashboard is one line and exit 1', async (t) => {
  const api = await standIn(t)
  const result = await install(api, ['--file', join(ROOT, 'package.json')])
  t.equal(result.code, 1)
  t.same(lines(result.stderr), [`sentry-dashboard: ${join(ROOT, 'package.json')}: not a dashboard (an object with a title and widgets)`])
  const missing = await install(api, ['--file', join(ROOT, 'no-such-dashboard.json')])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /^sentry-dashboard: .*no-such-dashboard\.json: ENOENT/)
  t.equal(api.seen.length, 0)
})

// What Sentry's dashboard serializer accepts (src/sentry/api/serializers/rest_framework/dashboard.py), checked
// here so a hand edit that Sentry would refuse with a 400 fails in CI instead of in a deploy.
interface Query { name: string; fields: string[]; aggregates: string[]; columns: string[]; conditions: string; orderby: string }
interface Widget { title: string; displayType: string; widgetType: string; interval: string; limit?: number; queries: Query[]; layout: { x: number; y: number; w: number; h: number; minH: number } }

t.test('the dashboard file is a valid create-dashboard request body', async (t) => {
  const DISPLAY_TYPES = ['line', 'area', 'stacked_area', 'bar', 'table', 'big_number', 'top_n']
  // "discover" is deprecated in favour of the split datasets.
  const WIDGET_TYPES = ['error-events', 'transaction-like', 'spans', 'issue', 'metrics', 'logs']
  t.type(dashboard.title, 'string')
  t.ok(dashboard.widgets.length > 0 && dashboard.widgets.length <= 30, 'at most 30 widgets')
  t.equal(new Set(dashboard.widgets.map((w) => w.title)).size, dashboard.widgets.length, 'widget titles are unique')
  const cells = new Map<string, string>()
  for (const widget of dashboard.widgets) {
    t.test(widget.title, async (t) => {
      t.ok(DISPLAY_TYPES.includes(widget.displayType), `displayType ${widget.displayType}`)
      t.ok(WIDGET_TYPES.includes(widget.widgetType), `widgetType ${widget.widgetType}`)
      t.match(widget.interval, /^\d+[mhd]$/)
      t.ok(widget.queries.length >= 1 && widget.queries.length <= 10)
      const { x, y, w, h, minH } = widget.layout
      t.ok(x >= 0 && w >= 1 && x + w <= 6 && y >= 0 && h >= minH && minH >= 1, 'inside the 6-column grid')
      const overlapped = new Set<string>()
      for (let col = x; col < x + w; col++) {
        for (let row = y; row < y + h; row++) {
          const other = cells.get(`${col},${row}`)
          if (other) overlapped.add(other)
          cells.set(`${col},${row}`, widget.title)
        }
      }
      t.same([...overlapped], [], 'overlaps no other widget')
      for (const query of widget.queries) {
        for (const key of ['name', 'conditions', 'orderby'] as const) t.type(query[key], 'string', key)
        for (const key of ['fields', 'aggregates', 'columns'] as const) t.ok(Array.isArray(query[key]), key)
        t.strictSame([...query.fields].sort(), [...query.columns, ...query.aggregates].sort(), 'fields are the columns and aggregates')
        t.ok(query.aggregates.length > 0, 'at least one aggregate')
        if (query.orderby) t.ok(query.fields.includes(query.orderby.replace(/^-/, '')), `orderby ${query.orderby} is one of the fields`)
        if (widget.displayType === 'big_number') t.same(query.columns, [], 'a big number has no grouping')
      }
      if (widget.limit !== undefined) {
        t.ok(widget.limit >= 1 && widget.limit <= 10, 'limit 1-10')
        // Sentry draws at most 10 series: a grouped chart's limit times its aggregates.
        t.ok(widget.limit * widget.queries[0]!.aggregates.length <= 10, 'at most 10 series')
      }
      if (['line', 'area', 'bar'].includes(widget.displayType) && widget.queries[0]!.columns.length) t.ok(widget.limit, 'a grouped chart sets its limit')
    })
  }
})
