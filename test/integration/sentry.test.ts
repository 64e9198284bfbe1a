// Sentry, on the wire: a local stand-in for Sentry's ingest receives what the gateway really sends.
import t from 'tap'
import { startSentryReceiver } from '../helpers/sentry-receiver.ts'
import { configFor, startGateway } from '../helpers/gateway.ts'
import { refusingPort, startUpstream } from '../helpers/upstreams.ts'
import { startRedis } from '../helpers/redis.ts'
import { openUpgrade } from '../helpers/upgrade.ts'

const receiver = await startSentryReceiver()
const upstream = await startUpstream((req, res) => {
  if (req.url?.startsWith('/fail')) res.statusCode = 503
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ headers: req.headers, rawHeaders: req.rawHeaders }))
})
t.teardown(async () => { await upstream.close(); await receiver.close() })

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA'
const SECRETS = [JWT, 'query-secret-value', 'cookie-secret-value', 'api-key-secret-value']
const sentryConfig = (extra = '', sampleRate = 1) => `sentry: { dsn: "${receiver.dsn()}", environment: test, tracesSampleRate: ${sampleRate}${extra} }\n`
const raw = () => receiver.envelopes.map((e) => e.raw).join('\n')

t.test('an upstream 502 is one error event: tagged with route and request id, grouped by route and error class, no secrets', async (t) => {
  const port = await refusingPort()
  const gw = await startGateway(configFor(`http://127.0.0.1:${port}`, `${sentryConfig()}routes:\n  - { name: leads, match: GET /api/leads/:id }\n`))
  t.teardown(() => gw.stop())
  const before = receiver.items('event').length
  const res = await fetch(`${gw.url}/api/leads/7?token=query-secret-value&status=new`, {
    headers: { authorization: `Bearer ${JWT}`, cookie: 'session=cookie-secret-value', 'x-api-key': 'api-key-secret-value' },
  })
  t.equal(res.status, 502)
  const requestId = res.headers.get('x-request-id')
  await receiver.waitFor(() => receiver.items('event').length > before)
  await new Promise((resolve) => setTimeout(resolve, 300))
  const events = receiver.items('event').slice(before)
  t.equal(events.length, 1, 'exactly one event')
  const event = events[0]!
  t.match(event.tags, { route: 'leads', method: 'GET', status: '502', status_class: '5xx', request_id: requestId, cache: 'none' })
  t.same(event.fingerprint, ['upstream', 'leads', 'upstream_unreachable'], 'grouped by route and error class, not by URL')
  for (const secret of SECRETS) t.notOk(raw().includes(secret), `${secret.slice(0, 12)}… never leaves`)
  t.notOk(raw().includes('/api/leads/7'), 'nor does the raw URL')
})

t.test('a WebSocket upgrade to an unreachable upstream is one error event too, with the id the client got', async (t) => {
  const port = await refusingPort()
  const gw = await startGateway(configFor(`http://127.0.0.1:${port}`, `${sentryConfig()}routes:\n  - { name: socket, match: GET /ws/:room }\n`))
  t.teardown(() => gw.stop())
  const before = receiver.items('event').length
  const answer = await openUpgrade(`${gw.url}/ws/lobby`)
  if (answer.kind === 'upgrade') answer.socket.destroy()
  t.equal(answer.res.statusCode, 502)
  await receiver.waitFor(() => receiver.items('event').length > before)
  const event = receiver.items('event').slice(before)[0]!
  t.match(event.tags, { route: 'socket', method: 'GET', status: '502', request_id: answer.res.headers['x-request-id'] })
  t.same(event.fingerprint, ['upstream', 'socket', 'upstream_unreachable'])
})

t.test('a sampled request is a transaction with rate-limit, cache-lookup and upstream spans, continuing the client\'s trace', async (t) => {
  const gw = await startGateway(configFor(upstream.url, `${sentryConfig()}rateLimits: { default: { limit: 1000/min } }
routes:
  - { name: echo, match: GET /echo/:id, cache: { ttl: 1m } }
`))
  t.teardown(() => gw.stop())
  const traceId = '0123456789abcdef0123456789abcdef'
  const res = await fetch(`${gw.url}/echo/1`, { headers: { 'sentry-trace': `${traceId}-0123456789abcdef-1`, baggage: 'sentry-trace_id=0123456789abcdef0123456789abcdef,sentry-sampled=true' } })
  const seen = await res.json() as { headers: Record<string, string>; rawHeaders: string[] }
  const requestId = res.headers.get('x-request-id')
  t.match(seen.headers['sentry-trace'], new RegExp(`^${traceId}-[0-9a-f]{16}-1$`), 'the upstream continues the same trace')
  t.match(seen.headers.traceparent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), 'and gets the W3C header too')
  const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
  for (const name of ['sentry-trace', 'baggage', 'traceparent']) t.equal(names.filter((n) => n === name).length, 1, `exactly one ${name}`)
  t.not(seen.headers['sentry-trace'], `${traceId}-0123456789abcdef-1`, 'the parent is the gateway\'s span, not the client\'s')
  await receiver.waitFor(() => receiver.items('transaction').some((tx) => (tx.tags as Record<string, string>)?.request_id === requestId))
  const tx = receiver.items('transaction').find((tx) => (tx.tags as Record<string, string>)?.request_id === requestId)!
  t.equal((tx.contexts as { trace: { trace_id: string } }).trace.trace_id, traceId)
  t.match(tx.tags, { route: 'echo', cache: 'miss', limit: 'allowed', status_class: '2xx' })
  const ops = (tx.spans as Array<{ op: string; span_id: string }>).map((s) => s.op).sort()
  t.same(ops, ['gateway.cache', 'gateway.ratelimit', 'http.client'])
  const upstreamSpan = (tx.spans as Array<{ op: string; span_id: string }>).find((s) => s.op === 'http.client')!
  t.equal(seen.headers['sentry-trace']?.split('-')[1], upstreamSpan.span_id, 'the upstream\'s parent span is the upstream-call span')
})

t.test('transactions go out in batches: none lost beyond a batch, timed when their request ended, the waiting ones sent at shutdown', async (t) => {
  const gw = await startGateway(configFor(upstream.url, sentryConfig()))
  const idsOf = (responses: Response[]) => responses.map((res) => res.headers.get('x-request-id')!)
  const sentIds = () => new Set(receiver.items('transaction').map((tx) => (tx.tags as Record<string, string>)?.request_id))

  // More sampled requests at once than one batch holds (32).
  const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => fetch(`${gw.url}/echo/burst-${i}`).then(async (res) => (await res.arrayBuffer(), res))))
  await receiver.waitFor(() => idsOf(burst).every((id) => sentIds().has(id)))
  t.pass('all 40 transactions arrived')

  const res = await fetch(`${gw.url}/echo/timed`)
  await res.arrayBuffer()
  const answeredAt = Date.now()
  const id = res.headers.get('x-request-id') ?? ''
  await receiver.waitFor(() => sentIds().has(id))
  const tx = receiver.items('transaction').find((tx) => (tx.tags as Record<string, string>)?.request_id === id)!
  // Built up to 50 ms later in its batch, the transaction still ends when its request did: before the client had the answer.
  t.ok((tx.timestamp as number) * 1000 <= answeredAt + 1, `ends at ${(tx.timestamp as number) * 1000}, the answer arrived at ${answeredAt}`)

  // Stopped at once after the answer, the gateway sends the transaction still waiting for its batch.
  const last = await fetch(`${gw.url}/echo/last`)
  await last.arrayBuffer()
  await gw.stop()
  await receiver.waitFor(() => sentIds().has(last.headers.get('x-request-id') ?? ''))
  t.pass('the last request\'s transaction arrived after the gateway stopped')
})

t.test('a W3C traceparent alone is continued too', async (t) => {
  const gw = await startGateway(configFor(upstream.url, sentryConfig()))
  t.teardown(() => gw.stop())
  const traceId = 'fedcba9876543210fedcba9876543210'
  const res = await fetch(`${gw.url}/echo/2`, { headers: { traceparent: `00-${traceId}-0011223344556677-01` } })
  const seen = await res.json() as { headers: Record<string, string> }
  t.match(seen.headers['sentry-trace'], new RegExp(`^${traceId}-`))
  t.match(seen.headers.traceparent, new RegExp(`^00-${traceId}-`))
})

t.test('with Sentry off, the client\'s trace headers pass through untouched', async (t) => {
  const gw = await startGateway(configFor(upstream.url))
  t.teardown(() => gw.stop())
  const res = await fetch(`${gw.url}/echo/3`, { headers: { 'sentry-trace': '0123456789abcdef0123456789abcdef-0123456789abcdef-1', traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01' } })
  const seen = await res.json() as { headers: Record<string, string> }
  t.equal(seen.headers['sentry-trace'], '0123456789abcdef0123456789abcdef-0123456789abcdef-1')
  t.equal(seen.headers.traceparent, '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01')
})

t.test('upstream 5xx answers are reported (or only counted when reportUpstream5xx is off)', async (t) => {
  const on = await startGateway(configFor(upstream.url, sentryConfig()))
  const off = await startGateway(configFor(upstream.url, sentryConfig(', reportUpstream5xx: false')))
  t.teardown(async () => { await on.stop(); await off.stop() })
  const offId = (await fetch(`${off.url}/fail/1`)).headers.get('x-request-id')
  const onRes = await fetch(`${on.url}/fail/1`)
  t.equal(onRes.status, 503, 'passed through')
  const onId = onRes.headers.get('x-request-id')
  await receiver.waitFor(() => receiver.items('event').some((e) => (e.tags as Record<string, string>)?.request_id === onId))
  t.match(receiver.items('event').find((e) => (e.tags as Record<string, string>)?.request_id === onId), { fingerprint: ['upstream-5xx', '(unmatched)', '503'] })
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.notOk(receiver.items('event').some((e) => (e.tags as Record<string, string>)?.request_id === offId))
})

t.test('a Redis outage is one event per episode; a failed reload is one event', async (t) => {
  const redis = await startRedis()
  const gw = await startGateway(configFor(upstream.url, `${sentryConfig('', 0)}redis: { url: "${redis.url}" }\nrateLimits: { default: { limit: 1000/min } }\n`))
  t.teardown(async () => { await gw.stop(); await redis.stop() })
  const outages = () => receiver.items('event').filter((e) => (e.tags as Record<string, string>)?.event === 'redis_outage').length
  const before = outages()
  await redis.kill()
  for (let i = 0; i < 10; i++) t.equal((await fetch(`${gw.url}/echo/${i}`)).status, 200)
  await receiver.waitFor(() => outages() > before)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(outages() - before, 1)
  gw.writeConfig('listen: { timeouts: { headers: 5 mins } }\n')
  gw.proc.kill('SIGHUP')
  await receiver.waitFor(() => receiver.items('event').some((e) => (e.tags as Record<string, string>)?.event === 'config_reload_failed'))
  t.pass('the failed reload was reported')
})

t.test('the tunnel forwards allow-listed envelopes as they are and refuses everything else', async (t) => {
  const allowed = receiver.dsn(42)
  const gw = await startGateway(configFor(upstream.url, `sentry: { tunnel: { path: /monitoring, allow: ["${allowed}"], maxSize: 2KiB, limit: 4/min } }\n`))
  t.teardown(() => gw.stop())
  const envelope = (dsn: string, extra = '') => `${JSON.stringify({ dsn, sent_at: new Date().toISOString() })}\n{"type":"event"}\n{"message":"from the browser${extra}"}\n`
  const post = (body: string) => fetch(`${gw.url}/monitoring`, { method: 'POST', headers: { 'content-type': 'application/x-sentry-envelope' }, body })
  const before = receiver.envelopes.length
  const sent = envelope(allowed)
  const ok = await post(sent)
  t.equal(ok.status, 200)
  await receiver.waitFor(() => receiver.envelopes.length > before)
  const forwarded = receiver.envelopes.at(-1)!
  t.match(forwarded.path, /^\/api\/42\/envelope\//, 'to the allow-listed project')
  t.equal(forwarded.raw, sent, 'the bytes as sent')
  t.equal((await post(envelope('http://evil@attacker.example/1'))).status, 403, 'a DSN not on the list goes nowhere')
  t.equal((await post(envelope(allowed, 'x'.repeat(4096)))).status, 413, 'over maxSize')
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await post(envelope(allowed))).status)
  t.same(statuses, [200, 200, 429], 'its own limit: 4 a minute, the refused DSN counted too, the oversized one refused before')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(receiver.envelopes.length - before, 3, 'only the allowed, in-limit envelopes reached Sentry')
})
