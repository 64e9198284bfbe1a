// The drift guard between deploy/sentry/gateway-dashboard.json and what the gateway really sends to Sentry.
// A real gateway (Sentry on, every request traced) in front of a small upstream and a real redis-server is
// driven until every widget has something to show: a cache miss and hit, a 429, a 502, a 504, an upstream
// 503, a Redis outage and a failed reload. Then every field each widget queries (conditions, columns, fields,
// aggregates, orderby) must exist in the received events or transactions, every value a condition filters
// on must occur there, and every widget's filter must match something. Renaming a tag or a value in
// observability/sentry.ts, or in the JSON, fails here instead of leaving an empty widget in production.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, startGateway } from '../helpers/gateway.ts'
import { startRedis } from '../helpers/redis.ts'
import { startSentryReceiver } from '../helpers/sentry-receiver.ts'
import { startUpstream } from '../helpers/upstreams.ts'

type Item = Record<string, unknown>
interface Query { fields: string[]; aggregates: string[]; columns: string[]; conditions: string; orderby: string }
interface Widget { title: string; widgetType: string; queries: Query[] }
interface Dashboard { widgets: Widget[] }

const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'sentry', 'gateway-dashboard.json'), 'utf8')) as Dashboard

// ---- the subset of Sentry's search and field syntax the dashboard uses ----

/**
 * Sentry's own fields (not tags) a widget may use, read from the event or transaction payload as the SDK
 * sends it. Anything not listed here is taken to be a tag.
 */
const BUILT_INS: Record<string, (item: Item) => unknown> = {
  transaction: (item) => item.transaction,
  'transaction.duration': (item) => (typeof item.timestamp === 'number' && typeof item.start_timestamp === 'number'
    ? (item.timestamp - item.start_timestamp) * 1000 : undefined),
  message: (item) => {
    const logentry = item.logentry as { formatted?: string; message?: string } | undefined
    return logentry?.formatted ?? logentry?.message ?? item.message
  },
  environment: (item) => item.environment,
  release: (item) => item.release,
  level: (item) => item.level,
}
/** Aggregate functions; their arguments are fields and are checked like any other. */
const FUNCTIONS = new Set(['count', 'count_unique', 'p50', 'p75', 'p90', 'p95', 'p99', 'avg', 'min', 'max', 'sum', 'failure_rate', 'epm'])
/** Which received items each widget type queries. */
const DATASETS: Record<string, 'event' | 'transaction'> = { 'error-events': 'event', 'transaction-like': 'transaction' }

interface Term { field: string; negated: boolean; values: string[] | null /* null: has:field */ }

/** `tags[route]` and `route` are the same tag. */
function fieldName(text: string): string {
  return /^tags\[(.+)\]$/.exec(text)?.[1] ?? text
}

/**
 * `key:value`, `!key:value`, `key:"quoted *"`, `key:[a,b]`, `has:key`, `!has:key`, ANDed by spaces. Anything
 * else (OR, parentheses, comparisons) throws, so a richer condition in the JSON extends this guard first.
 */
function parseConditions(text: string): Term[] {
  const terms: Term[] = []
  const token = /\s*(!?)((?:tags\[[\w.-]+\])|[A-Za-z_][\w.-]*):("(?:[^"\\]|\\.)*"|\[[^\]]*\]|[^\s"()[\]<>=]+)\s*/y
  while (token.lastIndex < text.length) {
    const start = token.lastIndex
    const match = token.exec(text)
    if (!match) throw new Error(`the drift guard does not understand the condition "${text.slice(start)}"; extend parseConditions`)
    const [, bang, key, raw] = match as unknown as [string, string, string, string]
    const values = raw.startsWith('[') ? raw.slice(1, -1).split(',').map((v) => unquote(v.trim())) : [unquote(raw)]
    if (key === 'has') terms.push({ field: fieldName(values[0]!), negated: bang === '!', values: null })
    else terms.push({ field: fieldName(key), negated: bang === '!', values })
  }
  return terms
}

function unquote(text: string): string {
  return text.startsWith('"') ? (JSON.parse(text) as string) : text
}

/** `count()` → [], `p95(transaction.duration)` → ['transaction.duration'], `route` → ['route']. */
function fieldsOf(expression: string): string[] {
  const call = /^([a-z_0-9]+)\((.*)\)$/.exec(expression.replace(/^-/, ''))
  if (!call) return [fieldName(expression.replace(/^-/, ''))]
  if (!FUNCTIONS.has(call[1]!)) throw new Error(`the drift guard does not know the function ${call[1]}(); add it to FUNCTIONS`)
  return call[2]!.split(',').map((arg) => arg.trim()).filter(Boolean).map(fieldName)
}

function valueOf(item: Item, field: string): string | undefined {
  const value = field in BUILT_INS ? BUILT_INS[field]!(item) : (item.tags as Record<string, unknown> | undefined)?.[field]
  return value === undefined || value === null ? undefined : String(value)
}

/** Sentry's `*` wildcard; otherwise an exact match. */
function valueMatches(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false
  if (!pattern.includes('*')) return pattern === value
  return new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's').test(value)
}

function termMatches(item: Item, term: Term): boolean {
  const value = valueOf(item, term.field)
  const hit = term.values === null ? value !== undefined : term.values.some((pattern) => valueMatches(pattern, value))
  return term.negated ? !hit : hit
}

/** Every way a widget could be empty or silently wrong against these items; [] when it is sound. */
function problemsOf(widget: Widget, data: Record<'event' | 'transaction', Item[]>): string[] {
  const dataset = DATASETS[widget.widgetType]
  if (!dataset) return [`widgetType ${widget.widgetType} is not covered by the drift guard`]
  const items = data[dataset]
  const problems: string[] = []
  const present = (field: string) => items.some((item) => valueOf(item, field) !== undefined)
  for (const query of widget.queries) {
    const terms = parseConditions(query.conditions)
    for (const term of terms) {
      if (!present(term.field)) problems.push(`condition field "${term.field}" is in no received ${dataset}`)
      for (const pattern of term.values ?? []) {
        if (!items.some((item) => valueMatches(pattern, valueOf(item, term.field)))) {
          problems.push(`condition value ${term.field}:${pattern} never occurs in the received ${dataset}s`)
        }
      }
    }
    const matching = items.filter((item) => terms.every((term) => termMatches(item, term)))
    if (!matching.length) problems.push(`conditions "${query.conditions}" match no received ${dataset}`)
    const queried = new Set([...query.columns, ...query.fields, ...query.aggregates, ...(query.orderby ? [query.orderby] : [])].flatMap(fieldsOf))
    for (const field of queried) {
      const missing = matching.filter((item) => valueOf(item, field) === undefined).length
      if (!present(field)) problems.push(`field "${field}" is in no received ${dataset}`)
      else if (missing) problems.push(`field "${field}" is missing from ${missing} of the ${matching.length} ${dataset}s the widget matches`)
    }
  }
  return problems
}

// ---- a gateway that produces everything the dashboard shows ----

const receiver = await startSentryReceiver()
const upstream = await startUpstream((req, res) => {
  if (req.url === '/api/broken') return void req.socket.destroy()
  if (req.url === '/api/slow') return void setTimeout(() => res.end('late'), 2000).unref()
  if (req.url === '/api/flaky') res.statusCode = 503
  res.setHeader('content-type', 'application/json')
  res.end('{"ok":true}')
})
const redis = await startRedis()
const gw = await startGateway(`listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url}, timeouts: { headers: 300ms } }
redis: { url: "${redis.url}" }
sentry: { dsn: "${receiver.dsn()}", environment: test, tracesSampleRate: 1, cacheHitSampleRate: 1 }
rateLimits: { default: { key: ip, limit: 1000/min } }
routes:
  - { name: lead, match: GET /api/leads/:id, cache: { ttl: 1m } }
  - { name: login, match: POST /auth/login, rateLimit: { key: ip, limit: 2/min } }
  - { name: broken, match: GET /api/broken }
  - { name: slow, match: GET /api/slow }
  - { name: flaky, match: GET /api/flaky }
`)
t.teardown(async () => { await gw.stop(); await redis.stop(); await upstream.close(); await receiver.close() })

const requestIds: string[] = []
async function send(path: string, method = 'GET'): Promise<Response> {
  const res = await fetch(`${gw.url}${path}`, { method })
  await res.arrayBuffer()
  requestIds.push(res.headers.get('x-request-id')!)
  return res
}
const tagOf = (item: Item, tag: string) => (item.tags as Record<string, string> | undefined)?.[tag]
const eventsTagged = (tag: string, value: string) => receiver.items('event').filter((e) => tagOf(e, tag) === value)

// The traffic, once for the whole file (the tests below read what it produced): every request is traced
// (tracesSampleRate 1, cacheHitSampleRate 1).
t.test('the traffic produces everything the dashboard shows', async (t) => {
  const outcomes = [
    (await send('/api/leads/1')).status, (await send('/api/leads/1')).headers.get('x-cache'),
    (await send('/auth/login', 'POST')).status, (await send('/auth/login', 'POST')).status, (await send('/auth/login', 'POST')).status,
    (await send('/api/broken')).status, (await send('/api/slow')).status, (await send('/api/flaky')).status,
  ]
  t.same(outcomes, [200, 'HIT', 200, 200, 429, 502, 504, 503], 'a miss and a hit, a 429, a 502, a 504 and an upstream 503')
  // An outage is noticed by the next Redis command, so requests follow the kill until the event is sent.
  await redis.kill()
  for (let i = 0; i < 20 && !eventsTagged('event', 'redis_outage').length; i++) {
    await send(`/api/leads/${10 + i}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await receiver.waitFor(() => eventsTagged('event', 'redis_outage').length > 0)
  gw.writeConfig('listen: { timeouts: { headers: 5 mins } }\n')
  gw.proc.kill('SIGHUP')
  await receiver.waitFor(() => eventsTagged('event', 'config_reload_failed').length > 0)
  const traced = () => new Set(receiver.items('transaction').map((tx) => tagOf(tx, 'request_id')))
  await receiver.waitFor(() => requestIds.every((id) => traced().has(id)))
  await receiver.waitFor(() => ['502', '504', '503'].every((status) => eventsTagged('status', status).length > 0))
  t.pass('a Redis outage, a failed reload, and a transaction for every request arrived')
})

const mentions = (problems: string[], pattern: RegExp) => problems.some((problem) => pattern.test(problem))
const received = () => ({ event: receiver.items('event'), transaction: receiver.items('transaction') })

t.test('every widget queries fields the gateway sends and values that occur', async (t) => {
  const data = received()
  for (const widget of dashboard.widgets) t.same(problemsOf(widget, data), [], widget.title)
})

t.test('every tag a widget queries is one the gateway sets (not a built-in that happens to match)', async (t) => {
  const data = received()
  for (const widget of dashboard.widgets) {
    const items = data[DATASETS[widget.widgetType]!]
    for (const query of widget.queries) {
      const queried = new Set([...parseConditions(query.conditions).map((term) => term.field), ...[...query.fields, ...query.aggregates, ...query.columns].flatMap(fieldsOf)])
      for (const field of [...queried].filter((f) => !(f in BUILT_INS))) {
        t.ok(items.some((item) => tagOf(item, field) !== undefined), `${widget.title}: tag "${field}" is in the received tags`)
      }
    }
  }
})

t.test('the guard itself catches a renamed tag or value, in the JSON or in what the gateway sends', async (t) => {
  const data = received()
  const widget = (title: string) => structuredClone(dashboard.widgets.find((w) => w.title.startsWith(title))!)
  const renamedColumn = widget('Cache outcomes')
  renamedColumn.queries[0]!.columns = ['cache_result']
  renamedColumn.queries[0]!.fields = ['cache_result', 'count()']
  t.ok(mentions(problemsOf(renamedColumn, data), /field "cache_result" is in no received transaction/), 'a column renamed in the JSON')
  const renamedValue = widget('Rate-limited')
  renamedValue.queries[0]!.conditions = 'limit:throttled'
  t.ok(mentions(problemsOf(renamedValue, data), /limit:throttled never occurs/), 'a value renamed in the JSON')
  t.ok(mentions(problemsOf(renamedValue, data), /match no received transaction/), 'and the widget would be empty')
  const renamedEvent = widget('Redis outages')
  renamedEvent.queries[0]!.conditions = 'event:redis_down'
  t.not(problemsOf(renamedEvent, data).length, 0, 'an event name renamed in the JSON')
  // What a rename in observability/sentry.ts looks like on the wire: the same items, the tag under another key.
  const renameTag = (items: Item[], from: string, to: string) => items.map((item) => {
    const { [from]: value, ...tags } = (item.tags ?? {}) as Record<string, string>
    return { ...item, tags: value === undefined ? tags : { ...tags, [to]: value } }
  })
  const sentWithout = (from: string, to: string) => ({ event: renameTag(data.event, from, to), transaction: renameTag(data.transaction, from, to) })
  for (const [tag, title] of [['route', 'Errors by route'], ['cache', 'Cache outcomes'], ['limit', 'Rate-limited'], ['status_class', 'Requests by status class'], ['upstream', 'Upstream problems'], ['event', 'Redis outages']] as const) {
    t.not(problemsOf(widget(title), sentWithout(tag, `${tag}_renamed`)).length, 0, `the gateway renaming "${tag}" breaks "${title}"`)
  }
  const relabel = (value: string) => data.transaction.map((tx) => ({ ...tx, tags: { ...(tx.tags as object), cache: tagOf(tx, 'cache') === value ? 'absent' : tagOf(tx, 'cache') } }))
  t.not(problemsOf(widget('Cache outcomes'), { event: data.event, transaction: relabel('none') }).length, 0, 'the gateway renaming cache "none" breaks the !cache:none filter')
})

t.test('the condition parser reads what it claims to and refuses the rest', async (t) => {
  t.same(parseConditions('has:route !cache:none status:[502, 504] message:"Upstream *" tags[limit]:limited'), [
    { field: 'route', negated: false, values: null },
    { field: 'cache', negated: true, values: ['none'] },
    { field: 'status', negated: false, values: ['502', '504'] },
    { field: 'message', negated: false, values: ['Upstream *'] },
    { field: 'limit', negated: false, values: ['limited'] },
  ])
  t.same(parseConditions(''), [])
  t.throws(() => parseConditions('route:a OR route:b'), /does not understand/)
  t.throws(() => parseConditions('(route:a)'), /does not understand/)
  t.same(fieldsOf('p95(transaction.duration)'), ['transaction.duration'])
  t.same(fieldsOf('-count()'), [])
  t.throws(() => fieldsOf('apdex(300)'), /does not know the function apdex/)
})
