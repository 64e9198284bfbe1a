// Signals under steady load: SIGTERM while fast and slow requests are in flight, and SIGHUP with broken
// configs followed by a good one. Real gateway processes; the load (test/helpers/load.ts) counts every
// response and every client-side error, and the upstream records which requests reached it.
import t from 'tap'
import { connect } from 'node:net'
import { startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { startUpstream } from '../helpers/upstreams.ts'
import { describeCounts, startLoad, type LoadResponse, type LoadSample } from '../helpers/load.ts'

/** 'connected', or the error code of a TCP connect to 127.0.0.1:port. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}

/** Waits for a log line logged after this call. */
function nextLog(gw: RunningGateway, predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number) {
  const from = gw.logs.length
  return gw.waitForLog((line) => gw.logs.indexOf(line) >= from && predicate(line), timeoutMs)
}

const msgStarts = (prefix: string) => (line: Record<string, unknown>) => typeof line.msg === 'string' && line.msg.startsWith(prefix)

t.test('SIGTERM under load: every request that reached the gateway completes, new connections are refused, exit within drainTimeout', async (t) => {
  const SLOW_MS = 1500
  const DRAIN_MS = 5000
  const seen = new Set<string>()
  let slowHeld = 0
  const upstream = await startUpstream((req, res) => {
    seen.add(String(req.headers['x-load-id']))
    if (!req.url!.startsWith('/slow')) return void res.end(`fast ${req.url}`)
    slowHeld++
    setTimeout(() => { slowHeld--; res.end('s'.repeat(100_000)) }, SLOW_MS) // streamed: above the gateway's 64 KiB whole-body size
  })
  t.teardown(() => upstream.close())
  const gw = await startGateway(`listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
shutdown: { drainTimeout: ${DRAIN_MS}ms }
`)
  t.teardown(() => gw.stop('SIGKILL'))

  const request = (kind: string) => (seq: number) => ({ path: `/${kind}/${seq}`, headers: { 'x-load-id': `${kind}-${seq}` } })
  const common = { url: gw.url, keepSamples: true, errorPauseMs: 10 }
  const fast = startLoad({ ...common, concurrency: 20, next: request('fast') })
  const slow = startLoad({ ...common, concurrency: 10, next: request('slow') })
  t.teardown(() => { void fast.stop(); void slow.stop() })
  await fast.ended(300)
  await slow.ended(10) // the slow workers are on their second round: ten held upstream right now
  while (slowHeld < 10) await new Promise((resolve) => setTimeout(resolve, 5))

  const signalledAt = performance.now()
  const exited = gw.stop('SIGTERM')
  await gw.waitForLog((line) => line.msg === 'draining')
  // The first attempt may race the close (the log line is written just before it), and a loaded machine
  // may answer an attempt with something passing (a reset from the accept queue, no free local port): try
  // again for a while and require a refusal, naming every outcome seen.
  const outcomes: string[] = []
  while (performance.now() - signalledAt < 5000) {
    const outcome = await tryConnect(gw.port)
    outcomes.push(outcome)
    if (outcome === 'ECONNREFUSED') break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(outcomes.at(-1), 'ECONNREFUSED', `new connections are refused once draining (attempts: ${[...new Set(outcomes)].join(', ')})`)
  const code = await exited
  const exitMs = performance.now() - signalledAt
  const [fastReport, slowReport] = await Promise.all([fast.stop(), slow.stop()])

  t.equal(code, 0, 'exit 0')
  // A margin for the exit itself (closing the pool, flushing logs) on a loaded machine, over the drain timeout.
  t.ok(exitMs < DRAIN_MS + 2000, `exited ${exitMs.toFixed(0)} ms after SIGTERM (drainTimeout ${DRAIN_MS} ms + 2 s margin)`)

  const samples = [...fastReport.samples, ...slowReport.samples]
  const key = (s: LoadSample) => String((s.request.headers as Record<string, string>)['x-load-id'])
  const inFlightSlow = slowReport.samples.filter((s) => s.startedAt < signalledAt && s.startedAt + s.ms > signalledAt)
  t.ok(inFlightSlow.length >= 10, `${inFlightSlow.length} slow requests were in flight at the signal`)
  t.same(inFlightSlow.filter((s) => s.label !== '200' || s.response!.body.length !== 100_000).map((s) => s.label), [],
    'each of them completed with its whole body')
  const reached = samples.filter((s) => seen.has(key(s)))
  const lost = reached.filter((s) => s.label !== '200')
  t.same(lost.map((s) => `${key(s)}: ${s.label}`), [], `all ${reached.length} requests that reached the upstream were answered 200`)
  const answered = samples.filter((s) => s.response && !s.error)
  t.same([...new Set(answered.map((s) => s.label))], ['200'], 'every answer the gateway gave was 200 (no 5xx while draining)')
  const failed = samples.filter((s) => s.error)
  t.same([...new Set(failed.map((s) => s.error!.code))].filter((c) => !['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(c!)), [],
    'requests that failed failed at the connection (refused, or an idle keep-alive connection closed as they were sent)')
  t.ok(failed.some((s) => s.error!.code === 'ECONNREFUSED' && s.startedAt > signalledAt), 'the load met refused connections after the signal')
  t.comment(`fast: ${describeCounts(fastReport)}; slow: ${describeCounts(slowReport)}`)
})

t.test('SIGHUP with broken configs under load: nothing dropped, the old route config serves on, then a good one applies', async (t) => {
  const upstream = await startUpstream((req, res) => res.end(`ok ${req.url}`))
  t.teardown(() => upstream.close())
  // Which config answered shows on every response: the route spends from a named limit, and the
  // RateLimit-Policy header names it.
  const config = (policy: string, limit: string) => `listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
rateLimits:
  ${policy}: { key: route, limit: ${limit} }
routes:
  - { name: api, match: GET /api/*, rateLimit: ${policy} }
`
  const gw = await startGateway(config('v1', '1000000/min'))
  t.teardown(() => gw.stop())
  const policyOf = (res: LoadResponse) => `${res.status} ${/^"([^"]+)"/.exec(String(res.headers['ratelimit-policy']))?.[1] ?? '(no policy)'}`
  const load = startLoad({ url: gw.url, concurrency: 24, keepSamples: true, classify: policyOf, next: (seq) => ({ path: `/api/${seq}` }) })
  t.teardown(() => void load.stop())
  await load.ended(300)

  const broken = [
    { what: 'YAML syntax', text: config('v2', '2000000/min').replace('routes:', 'routes: [') },
    { what: 'schema', text: config('v2', '2000000/fortnight') },
    { what: 'route conflict', text: `${config('v2', '2000000/min')}  - { name: api2, match: GET /api/* }\n` },
  ]
  for (const { what, text } of broken) {
    gw.writeConfig(text)
    const failed = nextLog(gw, msgStarts('config reload failed'))
    gw.proc.kill('SIGHUP')
    t.match(await failed, { level: 50, problems: [String] }, `a broken file (${what}) is refused`)
    await load.ended(load.report.answered + load.report.failed + 200) // the load goes on past each refusal
  }

  gw.writeConfig(config('v2', '2000000/min'))
  const goodAt = performance.now()
  const reloaded = nextLog(gw, (line) => line.msg === 'config reloaded')
  gw.proc.kill('SIGHUP')
  await reloaded
  const reloadedAt = performance.now()
  await load.ended(load.report.answered + load.report.failed + 300)
  const report = await load.stop()

  t.equal(report.failed, 0, `no request failed (${describeCounts(report)})`)
  t.equal(report.answered, report.sent, 'every request was answered')
  const finishedBefore = report.samples.filter((s) => s.startedAt + s.ms < goodAt)
  const startedAfter = report.samples.filter((s) => s.startedAt > reloadedAt)
  t.ok(finishedBefore.length > 800, `${finishedBefore.length} requests were answered before the good reload`)
  t.same(new Set(finishedBefore.map((s) => s.label)), new Set(['200 v1']), 'through three refused reloads the old config answered every one')
  t.ok(startedAfter.length >= 250, `${startedAfter.length} requests were sent after the good reload`)
  t.same(new Set(startedAfter.map((s) => s.label)), new Set(['200 v2']), 'after the good reload, every one is answered by the new config')

  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  t.match(metrics, /^gateway_config_reloads_total\{result="failed"\} 3$/m, 'three failed reloads counted')
  t.match(metrics, /^gateway_config_reloads_total\{result="ok"\} 1$/m, 'one good one')
})
