// Redis faults under steady load: killed and restarted with two replicas sharing it, and made slow by a
// TCP proxy that holds every chunk far longer than redis.timeout. Real gateway processes, a real
// redis-server, a local Sentry receiver; the load comes from test/helpers/load.ts and every response and
// client-side error is counted.
import t, { type Test } from 'tap'
import { connect } from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { startRedis } from '../helpers/redis.ts'
import { startUpstream } from '../helpers/upstreams.ts'
import { startSentryReceiver } from '../helpers/sentry-receiver.ts'
import { startDelayProxy, type DelayProxy } from '../helpers/tcp-delay-proxy.ts'
import { describeCounts, quantile, startLoad, type LoadReport } from '../helpers/load.ts'
import { httpRequest } from '../helpers/http.ts'
import { until } from '../helpers/wait.ts'
import { EPISODE_SETTLE_MS } from '../../gateway/redis.ts'

const upstream = await startUpstream((req, res) => {
  res.setHeader('content-type', 'text/plain')
  res.end(`ok ${req.url}`)
})
t.teardown(() => upstream.close())
const receiver = await startSentryReceiver()
t.teardown(() => receiver.close())

/** The limited route's budget; `limit` counts by the x-client header, so each check uses a fresh key. */
const BUDGET = 5

const yaml = (redis: { url: string; keyPrefix: string; timeout: string }, extra = '') => `listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
${extra}
rateLimits:
  default: { key: ip, limit: 1000000/min }
routes:
  - name: limited
    match: GET /limited
    rateLimit: { key: "header:x-client", limit: ${BUDGET}/min }
  - name: cached
    match: GET /cached/*
    cache: { ttl: 1m }
redis: { url: "${redis.url}", keyPrefix: "${redis.keyPrefix}", timeout: ${redis.timeout} }
`

/** Sends `n` requests one after another to /limited with the given client key, alternating over the gateways. */
async function spend(gateways: RunningGateway[], key: string, n: number): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < n; i++) statuses.push((await httpRequest(`${gateways[i % gateways.length]!.url}/limited`, { headers: { 'x-client': key } })).status)
  return statuses
}
const allowed = (statuses: number[]) => statuses.filter((s) => s === 200).length

const isOutage = (line: Record<string, unknown>) => line.event === 'redis_outage'
const isBack = (line: Record<string, unknown>) => typeof line.msg === 'string' && line.msg.startsWith('redis is back')

/** A redis-server behind a delay proxy (startDelayProxy), and a gateway using it with redis.timeout 50 ms; all torn down with the test. */
async function gatewayBehindDelayProxy(t: Test, keyPrefix: string): Promise<{ proxy: DelayProxy; gw: RunningGateway }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const proxy = await startDelayProxy({ port: redis.port })
  t.teardown(() => proxy.close())
  const gw = await startGateway(yaml({ url: proxy.url(), keyPrefix, timeout: '50ms' }))
  t.teardown(() => gw.stop())
  return { proxy, gw }
}

/** A whole load report with nothing but 200s: every request answered, none failed. */
function allOk(t: Test, name: string, report: LoadReport): void {
  t.ok(report.sent > 0, `${name}: ${report.sent} requests sent`)
  t.equal(report.answered + report.failed, report.sent, `${name}: every request ended`)
  t.equal(report.failed, 0, `${name}: no client-side errors (${describeCounts(report)})`)
  t.same(Object.keys(report.counts), ['200'], `${name}: every answer was 200 (${describeCounts(report)})`)
}

t.test('Redis killed mid-load and restarted: no 5xx, per-instance limits while down, one shared counter again after, one Sentry event', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sentry = (release: string) => `sentry: { dsn: "${receiver.dsn(7)}", environment: faults, release: ${release}, tracesSampleRate: 0 }`
  // A kill closes the connection, which starts the outage at once, whatever the timeout. The timeout is
  // generous so that, on a busy machine, the first commands to the restarted Redis (the limiter's script
  // loaded again) do not time out and honestly start a second episode: this test counts one kill as one.
  const a = await startGateway(yaml({ url: redis.url, keyPrefix: 'kill:', timeout: '1s' }, sentry('gw-a')))
  t.teardown(() => a.stop())
  const b = await startGateway(yaml({ url: redis.url, keyPrefix: 'kill:', timeout: '1s' }, sentry('gw-b')))
  t.teardown(() => b.stop())

  // Steady load through both replicas for the whole episode: every request spends from the default
  // limit, so each one touches Redis (or, while it is down, the in-memory insurance).
  const load = (gw: RunningGateway) => startLoad({ url: gw.url, concurrency: 12, next: (seq) => ({ path: `/load/${seq}` }) })
  const loadA = load(a)
  const loadB = load(b)
  t.teardown(() => { void loadA.stop(); void loadB.stop() })
  await Promise.all([loadA.ended(200), loadB.ended(200)])

  const before = await spend([a, b], 'before', 2 * BUDGET)
  t.equal(allowed(before), BUDGET, `with Redis up the two replicas share one budget (${before.join(',')})`)

  await redis.kill()
  await Promise.all([a.waitForLog(isOutage), b.waitForLog(isOutage)])
  const duringA = await spend([a], 'during', BUDGET + 3)
  const duringB = await spend([b], 'during', BUDGET + 3)
  t.same(duringA, [...Array(BUDGET).fill(200), 429, 429, 429], 'Redis down: replica A still enforces the limit on its own')
  t.same(duringB, [...Array(BUDGET).fill(200), 429, 429, 429], 'and replica B has its own full budget (per-instance counting)')
  const servedDuring = loadA.report.answered + loadB.report.answered
  await Promise.all([loadA.ended(loadA.report.answered + 300), loadB.ended(loadB.report.answered + 300)])
  t.ok(loadA.report.answered + loadB.report.answered >= servedDuring + 600, 'the load kept being served while Redis was down')

  await redis.restart()
  await Promise.all([a.waitForLog(isBack, 15_000), b.waitForLog(isBack, 15_000)])
  const after = await spend([a, b], 'after', 2 * BUDGET)
  t.equal(allowed(after), BUDGET, `Redis back: one shared counter again across both replicas (${after.join(',')})`)
  await Promise.all([loadA.ended(loadA.report.answered + 300), loadB.ended(loadB.report.answered + 300)])

  const [reportA, reportB] = await Promise.all([loadA.stop(), loadB.stop()])
  allOk(t, 'replica A', reportA)
  allOk(t, 'replica B', reportB)

  for (const [name, gw] of [['A', a], ['B', b]] as const) {
    t.equal(gw.logs.filter(isOutage).length, 1, `replica ${name} logged the outage once`)
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    t.match(metrics, /^gateway_redis_outages_total 1$/m, `replica ${name} counted one outage episode`)
    t.match(metrics, /^gateway_redis_up 1$/m, `replica ${name} sees Redis up again`)
  }

  // Sentry: exactly one event per replica for the episode, and nothing else (no 5xx was reported either).
  const events = (release: string) => receiver.items('event').filter((e) => e.release === release)
  await receiver.waitFor(() => events('gw-a').length >= 1 && events('gw-b').length >= 1)
  t.equal(await a.stop(), 0, 'replica A drained')
  t.equal(await b.stop(), 0, 'both replicas drained (buffered events are flushed on exit)')
  for (const release of ['gw-a', 'gw-b']) {
    const sent = events(release)
    t.equal(sent.length, 1, `${release}: exactly one Sentry event (${sent.map((e) => String(e.message ?? (e.logentry as { message?: string })?.message)).join(' | ')})`)
    t.match(sent[0]?.tags, { event: 'redis_outage' }, `${release}: it is the outage event`)
  }
})

t.test('Redis made slow (every chunk held 1 s, redis.timeout 50ms): requests answer from the fallback within a bounded time', async (t) => {
  const { proxy, gw } = await gatewayBehindDelayProxy(t, 'slow:')
  const next = (seq: number) => ({ path: seq % 2 ? `/cached/${seq % 100}` : `/plain/${seq}` })

  const baseline = await startLoad({ url: gw.url, concurrency: 20, durationMs: 1000, next }).done
  allOk(t, 'Redis fast', baseline)

  const DELAY_MS = 1000
  await sleep(300) // the cache's fire-and-forget L2 writes from the baseline finish before Redis turns slow
  // With a 50 ms timeout on a busy machine even the fast Redis can miss one and open an episode; successful
  // L2 lookups (cached URLs not in L1) for EPISODE_SETTLE_MS close it, so that what follows starts with none open.
  const episodeOpen = () => gw.logs.findLast((line) => line.event === 'redis_outage' || line.event === 'redis_recovered')?.event === 'redis_outage'
  let settle = 0
  await until(async () => {
    if (!episodeOpen()) return true
    await httpRequest(`${gw.url}/cached/settle-${settle++}`)
    return false
  }, 4 * EPISODE_SETTLE_MS, 100)
  t.notOk(episodeOpen(), 'no Redis episode open before Redis turns slow')
  proxy.setDelay(DELAY_MS)
  const slowFrom = gw.logs.length
  // Proof that Redis really is slow now: a PING through the proxy takes a full round trip of delays.
  const pingMs = measurePing(proxy.port)
  // First only the limiters use the slow Redis: requests no route caches.
  const limitsOnly = await startLoad({ url: gw.url, concurrency: 20, durationMs: 2000, next: (seq) => ({ path: `/plain/slow-${seq}` }) }).done
  const reportedByLimits = gw.logs.slice(slowFrom).some(isOutage)
  // Then the cache's L2 too: distinct cached URLs, each an L1 miss looked up in Redis before going upstream.
  const slow = await startLoad({ url: gw.url, concurrency: 20, durationMs: 3000, next: (seq) => ({ path: seq % 2 ? `/cached/slow-${seq}` : `/plain/slow-${seq}` }) }).done
  const limited = await spend([gw], 'slow', BUDGET + 2)
  t.ok(await pingMs >= 2 * DELAY_MS - 50, `a PING through the proxy took ${(await pingMs).toFixed(0)} ms`)

  allOk(t, 'Redis slow, limits only', limitsOnly)
  allOk(t, 'Redis slow, limits and L2', slow)
  t.same(limited, [...Array(BUDGET).fill(200), 429, 429], 'the limit still holds (in-memory insurance)')
  // The bound, from the config: every Redis command is bounded by redis.timeout (T = 50 ms). On this path
  // a request waits for Redis at most twice in a row (its limits are spent in parallel, then the L2 lookup on
  // an L1 miss), so about 2T = 100 ms. A request that waited for Redis's real answer would take at least one
  // round trip through the proxy, 2 × 1000 ms. 1000 ms = 20T is half of that and leaves ~900 ms for the
  // upstream, the gateway and scheduling on a loaded 2-core machine: generous, yet no request can pass it
  // by waiting for slow Redis even once.
  const BOUND_MS = 1000
  for (const [name, report] of [['limits only', limitsOnly], ['limits and L2', slow]] as const) {
    t.ok(report.maxMs < BOUND_MS, `${name}: slowest request ${report.maxMs.toFixed(0)} ms < ${BOUND_MS} ms (p99 ${quantile(report.latencies, 0.99).toFixed(0)} ms, ${report.sent} requests)`)
  }
  // Shared limits silently turning per-instance is what an operator must hear about (README: "The outage
  // is logged once"), whichever part of the gateway met the slow Redis first.
  t.ok(reportedByLimits, 'the slowness was reported as a Redis episode while only the limiters used Redis')
  t.ok(gw.logs.slice(slowFrom).some(isOutage), 'it was reported once the cache used Redis too')

  proxy.setDelay(0)
  await sleep(2 * DELAY_MS + 100) // the replies still held in the proxy drain out
  const recovered = await startLoad({ url: gw.url, concurrency: 20, durationMs: 1000, next }).done
  allOk(t, 'Redis fast again', recovered)
})

t.test('Redis flapping around its timeout: one episode, not one per flap; it ends once Redis stays fast', async (t) => {
  const { proxy, gw } = await gatewayBehindDelayProxy(t, 'flap:')
  // Every request spends from the default limit in Redis; half are L1 misses looked up in L2 as well.
  const load = startLoad({ url: gw.url, concurrency: 10, next: (seq) => ({ path: seq % 2 ? `/cached/flap-${seq}` : `/plain/flap-${seq}` }) })
  t.teardown(() => void load.stop())
  await load.ended(200)
  const from = gw.logs.length
  // On a busy machine even the fast Redis can miss a 50 ms timeout, so an episode may already be open: it
  // is then the one the slow turns must keep open.
  const openAtStart = gw.logs.findLast((line) => line.event === 'redis_outage' || line.event === 'redis_recovered')?.event === 'redis_outage'
  const outagesCounted = async () => Number(/^gateway_redis_outages_total (\d+)$/m.exec(await (await fetch(`${gw.adminUrl}/metrics`)).text())?.[1])
  const countedBefore = await outagesCounted()
  // Slow (every chunk held 200 ms, four times the timeout) and fast in turns, each turn well under
  // EPISODE_SETTLE_MS: commands fail in the slow turns and succeed in the fast ones.
  for (let flap = 0; flap < 4; flap++) {
    proxy.setDelay(200)
    await sleep(400)
    proxy.setDelay(0)
    await sleep(400)
  }
  const outages = () => (openAtStart ? 1 : 0) + gw.logs.slice(from).filter(isOutage).length
  t.equal(outages(), 1, `four slow turns are one episode${openAtStart ? ' (the one open when they began)' : ''}`)
  t.ok(await until(() => gw.logs.slice(from).some((line) => line.event === 'redis_recovered'), 6 * EPISODE_SETTLE_MS), 'the episode ended once Redis stayed fast')
  const back = gw.logs.slice(from).find((line) => line.event === 'redis_recovered')!
  // From a failure in the first slow turn to at least the last slow turn's start (3 × 800 ms later), plus the settle time.
  t.ok((back.downForMs as number) >= 3 * 800 + EPISODE_SETTLE_MS - 200, `it lasted past the last slow turn and the settle time (${back.downForMs as number} ms)`)
  t.equal(outages(), 1, 'still one episode')
  allOk(t, 'Redis flapping', await load.stop())
  t.equal(await outagesCounted() - countedBefore, openAtStart ? 0 : 1, 'one outage counted for them')
})

/** Milliseconds from sending PING on a fresh connection to the port until +PONG comes back. */
async function measurePing(port: number): Promise<number> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const started = performance.now()
  socket.write('PING\r\n')
  let text = ''
  for await (const chunk of socket) {
    text += String(chunk)
    if (text.includes('+PONG')) break
  }
  socket.destroy()
  return performance.now() - started
}
