// GET /metrics on the admin port of real gateway processes: the counters move as requests are made,
// reloads and a real redis-server's outage show up, and no path, user or key ever becomes a label.
// Assertions compare scrapes before and after (deltas), so the tests do not depend on each other's traffic.
import t from 'tap'
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { signDemoToken } from '../../deploy/demo-upstream/app.ts'
import { configFor, startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { refusingPort, startUpstream } from '../helpers/upstreams.ts'
import { startRedis } from '../helpers/redis.ts'

interface Sample { name: string; labels: Record<string, string>; value: number }

/** The Prometheus text format, as far as these tests need it: one sample per line, comments skipped. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match) throw new Error(`unparsable metrics line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, name, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[name!] = value!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

interface Scrape {
  text: string
  samples: Sample[]
  /** The sum of the samples of `name` whose labels include `labels` (0 when there is none). */
  get(name: string, labels?: Record<string, string>): number
  has(name: string, labels?: Record<string, string>): boolean
}

async function scrape(gw: RunningGateway): Promise<Scrape> {
  const res = await fetch(`${gw.adminUrl}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`)
  const text = await res.text()
  const samples = parseMetrics(text)
  const matching = (name: string, labels: Record<string, string>) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  return {
    text,
    samples,
    get: (name, labels = {}) => matching(name, labels).reduce((sum, s) => sum + s.value, 0),
    has: (name, labels = {}) => matching(name, labels).length > 0,
  }
}

/** Polls the metrics until check() accepts them or the (generous) bound passes; returns the last scrape. */
async function scrapeUntil(gw: RunningGateway, check: (m: Scrape) => boolean, timeoutMs = 10_000): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const metrics = await scrape(gw)
    if (check(metrics) || Date.now() >= deadline) return metrics
    await sleep(50)
  }
}

/** Waits for a log line logged after this call. */
function nextLog(gw: RunningGateway, predicate: (line: Record<string, unknown>) => boolean) {
  const from = gw.logs.length
  return gw.waitForLog((line) => gw.logs.indexOf(line) >= from && predicate(line))
}

async function status(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, init)
  await res.arrayBuffer()
  return res.status
}

// ---------------------------------------------------------------------------------------------------
// Setup: an upstream that answers at once, except /slow (held until the test ends) and /missing (404).

const held = new Set<() => void>()
let slowArrived: () => void = () => {}
const upstream = await startUpstream((req, res) => {
  if (req.url === '/slow') {
    held.add(() => res.destroy())
    return slowArrived()
  }
  res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ url: req.url, padding: 'x'.repeat(512) }))
})
t.teardown(async () => {
  for (const release of held) release()
  await upstream.close()
})

const ROUTES = `
identity: { jwt: { secret: demo-secret } }
rateLimits:
  default: { key: ip, limit: 100000/min }
routes:
  - name: lead
    match: GET /api/leads/:id
    cache: { ttl: 5m }
  - name: login
    match: POST /auth/login
    rateLimit: { key: ip, limit: 2/min }
  - name: mine
    match: GET /api/mine/:id
    rateLimit: { key: user, limit: 1000/min }
  - name: keyed
    match: GET /api/keyed
    rateLimit: { key: header:x-api-key, limit: 1000/min }
  - name: echo
    match: [GET /echo, GET /missing, GET /slow]
`
const gw = await startGateway(configFor(upstream.url, ROUTES))
t.teardown(() => gw.stop())

t.test('GET /metrics is the Prometheus text format, with the process metrics too', async (t) => {
  const res = await fetch(`${gw.adminUrl}/metrics`)
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await res.text()
  t.match(text, /# TYPE gateway_requests_total counter/)
  t.match(text, /# TYPE gateway_request_duration_seconds histogram/)
  t.match(text, /\nprocess_cpu_user_seconds_total /, 'process CPU')
  t.match(text, /\nnodejs_eventloop_lag_seconds /, 'event loop lag')
  t.match(text, /\nprocess_resident_memory_bytes /, 'memory')
  const notFound = await (await fetch(`${gw.adminUrl}/nope`)).json() as { endpoints: string[] }
  t.ok(notFound.endpoints.includes('/metrics'), 'listed among the admin endpoints')
})

t.test('requests_total counts by route, method and status class; the histogram counts them too', async (t) => {
  const before = await scrape(gw)
  t.same([await status(`${gw.url}/echo`), await status(`${gw.url}/echo`), await status(`${gw.url}/echo`)], [200, 200, 200])
  t.equal(await status(`${gw.url}/missing`), 404)
  t.equal(await status(`${gw.url}/unrouted/98765`, { method: 'PROPFIND' }), 200, 'unmatched requests are forwarded')
  const after = await scrape(gw)
  const delta = (name: string, labels: Record<string, string>) => after.get(name, labels) - before.get(name, labels)
  t.equal(delta('gateway_requests_total', { route: 'echo', method: 'GET', status_class: '2xx' }), 3)
  t.equal(delta('gateway_requests_total', { route: 'echo', method: 'GET', status_class: '4xx' }), 1)
  t.equal(delta('gateway_requests_total', { route: '(unmatched)', method: 'OTHER', status_class: '2xx' }), 1, 'no route: (unmatched); PROPFIND: OTHER')
  const series = { route: 'echo', method: 'GET', status_class: '2xx' }
  t.equal(delta('gateway_request_duration_seconds_count', series), 3, 'the histogram count grows with the counter')
  t.ok(delta('gateway_request_duration_seconds_sum', series) > 0, 'and its sum')
  t.equal(after.get('gateway_request_duration_seconds_bucket', { ...series, le: '+Inf' }), after.get('gateway_request_duration_seconds_count', series))
  t.equal(delta('gateway_upstream_response_seconds_count', { route: 'echo', status_class: '2xx' }), 3, 'upstream response times')
  t.equal(delta('gateway_upstream_response_seconds_count', { route: 'echo', status_class: '4xx' }), 1)
})

t.test('a cache miss then a hit: lookups by result and tier, the hit ratio, L1 bytes and entries', async (t) => {
  const before = await scrape(gw)
  const first = await fetch(`${gw.url}/api/leads/12345`)
  await first.arrayBuffer()
  const second = await fetch(`${gw.url}/api/leads/12345`)
  await second.arrayBuffer()
  t.same([first.headers.get('x-cache'), second.headers.get('x-cache')], ['MISS', 'HIT'])
  const after = await scrape(gw)
  const delta = (labels: Record<string, string>) => after.get('gateway_cache_lookups_total', labels) - before.get('gateway_cache_lookups_total', labels)
  t.equal(delta({ route: 'lead', result: 'miss', tier: 'none' }), 1)
  t.equal(delta({ route: 'lead', result: 'hit', tier: 'l1' }), 1)
  const ratio = after.get('gateway_cache_hit_ratio', { route: 'lead' })
  t.ok(ratio > 0 && ratio < 1, `hit ratio ${ratio}`)
  t.notOk(after.has('gateway_cache_hit_ratio', { route: 'echo' }), 'no ratio for a route that does not cache')
  t.ok(after.get('gateway_cache_l1_bytes') > 512, `L1 holds the stored body (${after.get('gateway_cache_l1_bytes')} bytes)`)
  t.ok(after.get('gateway_cache_l1_entries') >= 1)
  t.ok(after.has('gateway_cache_evictions_total'))
})

t.test('a 429 counts as limited for its route, policy and key kind', async (t) => {
  const before = await scrape(gw)
  const login = () => status(`${gw.url}/auth/login`, { method: 'POST', body: 'username=alice' })
  t.same([await login(), await login(), await login()], [200, 200, 429])
  const after = await scrape(gw)
  const delta = (name: string, labels: Record<string, string>) => after.get(name, labels) - before.get(name, labels)
  t.equal(delta('gateway_ratelimit_decisions_total', { route: 'login', policy: 'login', key: 'ip', decision: 'allowed' }), 2)
  t.equal(delta('gateway_ratelimit_decisions_total', { route: 'login', policy: 'login', key: 'ip', decision: 'limited' }), 1)
  t.equal(delta('gateway_ratelimit_decisions_total', { route: 'login', policy: 'default', key: 'ip', decision: 'allowed' }), 3, 'every decision, not only the binding one')
  t.equal(delta('gateway_requests_total', { route: 'login', method: 'POST', status_class: '4xx' }), 1)
})

t.test('no path, user id or API key becomes a label value', async (t) => {
  const token = await signDemoToken('user-31337')
  t.equal(await status(`${gw.url}/api/mine/424242`, { headers: { authorization: `Bearer ${token}` } }), 200)
  t.equal(await status(`${gw.url}/api/keyed`, { headers: { 'x-api-key': 'key-5550123-secret' } }), 200)
  t.equal(await status(`${gw.url}/unrouted/98765?q=777888`), 200)
  const metrics = await scrape(gw)
  t.ok(metrics.get('gateway_ratelimit_decisions_total', { route: 'mine', key: 'user', decision: 'allowed' }) >= 1, 'the user limit is counted by its key kind')
  t.ok(metrics.get('gateway_ratelimit_decisions_total', { route: 'keyed', key: 'header', decision: 'allowed' }) >= 1, 'the header limit too')
  // Label values only: sample values (memory sizes, CPU seconds) may contain any digits.
  const labelValues = metrics.samples.flatMap((s) => Object.values(s.labels))
  t.ok(labelValues.includes('(unmatched)'))
  for (const secret of ['12345', '424242', '31337', '5550123', '98765', '777888', 'secret', '/']) {
    t.notOk(labelValues.some((value) => value.includes(secret)), `no label value contains "${secret}"`)
  }
  const seen = new Set<string>()
  for (const sample of metrics.samples) {
    const id = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`
    if (seen.has(id)) t.fail(`duplicate series ${id}`)
    seen.add(id)
  }
})

t.test('pool gauges show a request in flight; when its client goes away it counts as 4xx', async (t) => {
  const before = await scrape(gw)
  for (const state of ['connected', 'free', 'pending', 'queued', 'running', 'size']) {
    t.ok(before.has('gateway_upstream_pool', { state }), `pool ${state}`)
  }
  t.notOk(before.has('gateway_redis_up'), 'no redis configured: gateway_redis_up is absent')
  const arrived = new Promise<void>((resolve) => { slowArrived = resolve })
  const req = request(`${gw.url}/slow`)
  req.on('error', () => {})
  req.end()
  await arrived
  const inFlight = await scrape(gw)
  t.ok(inFlight.get('gateway_upstream_pool', { state: 'running' }) >= 1, 'running: the held request')
  t.ok(inFlight.get('gateway_upstream_pool', { state: 'connected' }) >= 1, 'connected')
  req.destroy()
  const labels = { route: 'echo', method: 'GET', status_class: '4xx' }
  const after = await scrapeUntil(gw, (m) => m.get('gateway_requests_total', labels) > before.get('gateway_requests_total', labels))
  t.equal(after.get('gateway_requests_total', labels) - before.get('gateway_requests_total', labels), 1, '499 → 4xx')
  t.equal(after.get('gateway_upstream_errors_total') - before.get('gateway_upstream_errors_total'), 0, 'not an upstream error')
})

t.test('SIGHUP: reloads{result="ok"}; a broken file: reloads{result="failed"}; series continue across the reload', async (t) => {
  const before = await scrape(gw)
  const reloaded = nextLog(gw, (line) => line.msg === 'config reloaded')
  gw.proc.kill('SIGHUP')
  await reloaded
  const ok = await scrape(gw)
  t.equal(ok.get('gateway_config_reloads_total', { result: 'ok' }) - before.get('gateway_config_reloads_total', { result: 'ok' }), 1)

  // The reload compiled new Route and LimitPolicy objects: their requests must land in the same series.
  const hit = await fetch(`${gw.url}/api/leads/12345`)
  await hit.arrayBuffer()
  t.equal(hit.headers.get('x-cache'), 'HIT', 'the cache was kept')
  const afterHit = await scrape(gw)
  const hits = { route: 'lead', result: 'hit', tier: 'l1' }
  t.equal(afterHit.get('gateway_cache_lookups_total', hits) - ok.get('gateway_cache_lookups_total', hits), 1)
  t.equal(afterHit.samples.filter((s) => s.name === 'gateway_cache_lookups_total' && s.labels.route === 'lead' && s.labels.result === 'hit').length, 1, 'one series, not one per reload')
  const defaults = afterHit.samples.filter((s) => s.name === 'gateway_ratelimit_decisions_total' && s.labels.route === 'lead' && s.labels.decision === 'allowed')
  t.equal(defaults.length, 1, 'rate limit decisions too')

  gw.writeConfig('routes: [ this is not valid')
  const failed = nextLog(gw, (line) => typeof line.msg === 'string' && line.msg.startsWith('config reload failed'))
  gw.proc.kill('SIGHUP')
  await failed
  const broken = await scrape(gw)
  t.equal(broken.get('gateway_config_reloads_total', { result: 'failed' }) - before.get('gateway_config_reloads_total', { result: 'failed' }), 1)
  t.equal(broken.get('gateway_config_reloads_total', { result: 'ok' }), ok.get('gateway_config_reloads_total', { result: 'ok' }))
  gw.writeConfig(configFor(upstream.url, ROUTES))
})

t.test('a refused upstream: a 502 counted as an upstream error by code', async (t) => {
  const refused = await startGateway(configFor(`http://127.0.0.1:${await refusingPort()}`, 'routes: [{ name: orders, match: GET /orders/:id }]'))
  t.teardown(() => refused.stop())
  t.equal(await status(`${refused.url}/orders/77`), 502)
  const metrics = await scrape(refused)
  t.equal(metrics.get('gateway_upstream_errors_total', { route: 'orders', code: 'upstream_unreachable' }), 1)
  t.equal(metrics.get('gateway_requests_total', { route: 'orders', method: 'GET', status_class: '5xx' }), 1)
  t.equal(metrics.get('gateway_cache_l1_bytes'), 0, 'no route caches: L1 is 0')
  t.notOk(metrics.samples.some((s) => Object.values(s.labels).some((value) => value.includes('77'))), 'no path in a label')
})

t.test('admin.metrics: false: no /metrics (404, not listed), requests are served as before', async (t) => {
  const quiet = await startGateway(`listen: { port: \${PORT} }\nadmin: { port: \${ADMIN_PORT}, metrics: false }\nupstream: { url: ${upstream.url} }\n${ROUTES}`)
  t.teardown(() => quiet.stop())
  t.equal(await status(`${quiet.url}/echo`), 200)
  const res = await fetch(`${quiet.adminUrl}/metrics`)
  t.equal(res.status, 404)
  const body = await res.json() as { endpoints: string[] }
  t.notOk(body.endpoints.includes('/metrics'), 'not listed among the admin endpoints')
  t.equal((await fetch(`${quiet.adminUrl}/healthz`)).status, 200, 'the rest of the admin listener works')
})

t.test('gateway_redis_up follows a real redis-server being killed and restarted', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const shared = await startGateway(configFor(upstream.url, `redis: { url: "${redis.url}" }\n${ROUTES}`))
  t.teardown(() => shared.stop())
  const up = await scrapeUntil(shared, (m) => m.get('gateway_redis_up') === 1)
  t.equal(up.get('gateway_redis_up'), 1, 'up while connected')
  t.equal(up.get('gateway_redis_outages_total'), 0)
  await redis.kill()
  const down = await scrapeUntil(shared, (m) => m.has('gateway_redis_up') && m.get('gateway_redis_up') === 0)
  t.equal(down.get('gateway_redis_up'), 0, 'down after the kill')
  t.equal(down.get('gateway_redis_outages_total'), 1, 'one outage episode')
  await redis.restart()
  const back = await scrapeUntil(shared, (m) => m.get('gateway_redis_up') === 1, 15_000)
  t.equal(back.get('gateway_redis_up'), 1, 'up again after the restart')
  t.equal(back.get('gateway_redis_outages_total'), 1, 'still one episode')
})
