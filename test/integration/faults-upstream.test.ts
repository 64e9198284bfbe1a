// Upstream faults under steady load: down, slow, cut mid-body, answering 5xx, and resetting reused
// keep-alive connections. Real gateway processes in front of misbehaving upstreams in this process; the
// load (test/helpers/load.ts) counts every response by status and problem code and every client-side error.
import t, { type Test } from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { startGateway } from '../helpers/gateway.ts'
import { refusingPort, startUpstream } from '../helpers/upstreams.ts'
import { httpRequest } from '../helpers/http.ts'
import { describeCounts, startLoad, statusAndCode, type LoadReport, type LoadSample } from '../helpers/load.ts'

const gatewayYaml = (upstream: string, extra = '') => `listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: ${upstream}
${extra}`

/** Per group (a path's kind), the labels its responses got, with counts. */
function byGroup(samples: LoadSample[], group: (sample: LoadSample) => string): Map<string, Record<string, number>> {
  const groups = new Map<string, Record<string, number>>()
  for (const sample of samples) {
    const name = group(sample)
    const counts = groups.get(name) ?? {}
    counts[sample.label] = (counts[sample.label] ?? 0) + 1
    groups.set(name, counts)
  }
  return groups
}

function expectGroups(t: Test, report: LoadReport, group: (sample: LoadSample) => string, expected: Record<string, string>): void {
  t.equal(report.answered + report.failed, report.sent, `every one of the ${report.sent} requests ended (${describeCounts(report)})`)
  const groups = byGroup(report.samples, group)
  for (const [name, label] of Object.entries(expected)) {
    const counts = groups.get(name) ?? {}
    t.ok((counts[label] ?? 0) > 0, `${name}: answered "${label}" under load`)
    t.same(Object.keys(counts), [label], `${name}: every request got "${label}" (${describeCounts({ counts })})`)
  }
  t.same([...groups.keys()].filter((name) => !(name in expected)), [], 'no request outside the expected groups')
}

const kindOf = (sample: LoadSample) => sample.request.path.split('/')[1]!

// ---------------------------------------------------------------------------------------------------
// One misbehaving upstream: the first path segment says how it answers.

function misbehave(req: IncomingMessage, res: ServerResponse): void {
  const kind = req.url!.split('/')[1]
  switch (kind) {
    case 'slow': // headers long after upstream.timeouts.headers; the gateway gives up first
      setTimeout(() => { if (!res.destroyed) res.end('too late') }, 3000).unref()
      return
    case 'cut-small': // a small answer of declared length, cut after a quarter: read whole by the gateway
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4000 })
      res.write('s'.repeat(1000), () => setTimeout(() => res.socket?.destroy(), 20))
      return
    case 'stall': // a small answer whose body stops coming: past upstream.timeouts.body
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4000 })
      res.write('p'.repeat(1000))
      setTimeout(() => { if (!res.destroyed) res.end('p'.repeat(3000)) }, 3000).unref()
      return
    case 'cut-large': // a large answer, streamed: the client already has the head when it is cut
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 200_000 })
      res.write('l'.repeat(80_000), () => setTimeout(() => res.socket?.destroy(), 20))
      return
    case '503':
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '7' })
      res.end('{"error":"maintenance"}')
      return
    default:
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`ok ${req.url}`)
  }
}

const origin = await startUpstream(misbehave)
t.teardown(() => origin.close())

t.test('down, slow, stalled or cut mid-body, 5xx under load: 502/504 problem+json, 5xx passed through, cut streams cut, nothing leaks', async (t) => {
  // A small pool and queue (capacity 32 > the load's 24 workers): a place leaked by any failed request
  // would soon turn later requests into 503 overloaded.
  const gw = await startGateway(gatewayYaml(`{ url: ${origin.url}, connections: 16, maxQueue: 16, timeouts: { headers: 300ms, body: 300ms } }`))
  t.teardown(() => gw.stop())
  const kinds = ['ok', 'slow', 'cut-small', 'stall', 'cut-large', '503']
  const mixed = await startLoad({
    url: gw.url, concurrency: 24, durationMs: 3000, keepSamples: true, classify: statusAndCode,
    next: (seq) => ({ path: `/${kinds[seq % kinds.length]}/${seq}` }),
  }).done
  expectGroups(t, mixed, kindOf, {
    ok: '200',
    slow: '504 upstream_timeout',
    'cut-small': '502 upstream_unreachable',
    stall: '504 upstream_timeout',
    'cut-large': 'error:EBODYCUT', // the head was out: cutting the connection is the only honest signal left
    503: '503', // the upstream's own answer, unchanged (not a problem document)
  })
  const passed = mixed.samples.find((s) => kindOf(s) === '503')!.response!
  t.equal(passed.body.toString(), '{"error":"maintenance"}', 'the upstream\'s 503 body passes through')
  t.equal(passed.headers['retry-after'], '7', 'and its headers')

  // Every failure above gave its place in the pool back: a full run of good requests is all 200.
  const after = await startLoad({ url: gw.url, concurrency: 24, requests: 480, classify: statusAndCode, next: (seq) => ({ path: `/ok/after-${seq}` }) }).done
  t.same(after.counts, { 200: 480 }, `after ${mixed.sent} mixed requests the pool serves as before (${describeCounts(after)})`)
  t.equal(gw.proc.exitCode, null, 'the gateway is still running')

  const port = await refusingPort()
  const down = await startGateway(gatewayYaml(`{ url: http://127.0.0.1:${port} }`))
  t.teardown(() => down.stop())
  const refused = await startLoad({ url: down.url, concurrency: 24, durationMs: 1000, keepSamples: true, classify: statusAndCode,
    next: (seq) => ({ path: `/down/${seq}` }) }).done
  expectGroups(t, refused, kindOf, { down: '502 upstream_unreachable' })
})

t.test('stale-if-error under load: a route that configures it serves stale through 5xx, timeouts, stalled or cut bodies, resets and an upstream gone', async (t) => {
  let sick = false
  const flaky = await startUpstream((req, res) => {
    if (!sick) return void res.end(`fresh ${req.url}`)
    const kind = req.url!.split('/')[2]
    if (kind === 'cut') return misbehave(Object.assign(req, { url: '/cut-small' }), res)
    if (kind === 'reset') return void req.socket.destroy()
    return misbehave(Object.assign(req, { url: `/${kind}` }), res)
  })
  let flakyOpen = true
  t.teardown(() => (flakyOpen ? flaky.close() : undefined))
  const gw = await startGateway(gatewayYaml(`{ url: ${flaky.url}, timeouts: { headers: 300ms, body: 300ms } }`, `
routes:
  - { name: sie, match: GET /sie/*, cache: { ttl: 1s, staleIfError: 1m } }
  - { name: plain, match: GET /plain/*, cache: { ttl: 1s } }
`))
  t.teardown(() => gw.stop())
  const kinds = ['503', 'slow', 'stall', 'cut', 'reset']
  const paths = ['sie', 'plain'].flatMap((route) => kinds.flatMap((kind) => Array.from({ length: 4 }, (_, i) => `/${route}/${kind}/${i}`)))
  const filled = await Promise.all(paths.map((path) => httpRequest(`${gw.url}${path}`)))
  t.ok(filled.every((res) => res.status === 200 && res.headers['x-cache'] === 'MISS'), 'every entry stored while the upstream was healthy')
  await sleep(1100) // past the 1 s ttl: every entry is stale now

  sick = true
  // The sie route answers "200 STALE" with the stored body; the plain route shows each failure.
  const classify = (res: { status: number; headers: Record<string, unknown>; body: Buffer }) =>
    res.headers['x-cache'] === 'STALE' ? `${res.status} STALE` : statusAndCode(res as Parameters<typeof statusAndCode>[0])
  const group = (s: LoadSample) => s.request.path.split('/').slice(1, 3).join(' ')
  const next = (seq: number) => ({ path: paths[seq % paths.length]! })
  const failing = await startLoad({ url: gw.url, concurrency: 20, durationMs: 2500, keepSamples: true, classify, next }).done
  expectGroups(t, failing, group, {
    'sie 503': '200 STALE',
    'sie slow': '200 STALE',
    'sie stall': '200 STALE',
    'sie cut': '200 STALE',
    'sie reset': '200 STALE',
    'plain 503': '503',
    'plain slow': '504 upstream_timeout',
    'plain stall': '504 upstream_timeout',
    'plain cut': '502 upstream_unreachable',
    'plain reset': '502 upstream_unreachable',
  })
  const wrongBody = failing.samples.filter((s) => s.label === '200 STALE' && s.response!.body.toString() !== `fresh ${s.request.path}`)
  t.equal(wrongBody.length, 0, 'every stale answer is the entry stored for its own URL')

  await flaky.close()
  flakyOpen = false
  const gone = await startLoad({ url: gw.url, concurrency: 20, durationMs: 1000, keepSamples: true, classify, next }).done
  const goneGroup = (s: LoadSample) => s.request.path.split('/')[1]!
  expectGroups(t, gone, goneGroup, { sie: '200 STALE', plain: '502 upstream_unreachable' })
})

t.test('a reused connection reset before any answer: GET, DELETE and bodiless PUT retried once; POST, PATCH and PUT with a body never', async (t) => {
  // The model of an upstream closing an idle keep-alive connection just as the gateway reuses it: the
  // second request on every connection finds it destroyed before any byte of an answer.
  interface Arrival { method: string; served: boolean; bodyBytes: number }
  const arrivals = new Map<string, Arrival[]>()
  const requestsOn = new WeakMap<Socket, number>()
  const resetting = await startUpstream((req, res) => {
    const id = String(req.headers['x-load-id'])
    const list = arrivals.get(id) ?? []
    arrivals.set(id, list)
    const nth = (requestsOn.get(req.socket) ?? 0) + 1
    requestsOn.set(req.socket, nth)
    if (nth === 2) {
      list.push({ method: req.method!, served: false, bodyBytes: 0 })
      return void req.socket.destroy()
    }
    let bodyBytes = 0
    req.on('data', (chunk: Buffer) => { bodyBytes += chunk.length })
    req.on('end', () => {
      list.push({ method: req.method!, served: true, bodyBytes })
      res.end(`${req.method} ${id} ${bodyBytes}`)
    })
  })
  t.teardown(() => resetting.close())
  const gw = await startGateway(gatewayYaml(`{ url: ${resetting.url}, connections: 4 }`))
  t.teardown(() => gw.stop())

  const body = 'b'.repeat(2048)
  const plan = [
    { method: 'GET', body: undefined, retried: true },
    { method: 'DELETE', body: undefined, retried: true },
    { method: 'PUT', body: undefined, retried: true },
    { method: 'PUT', body, retried: false }, // a body cannot be replayed (README: "has no body to replay")
    { method: 'POST', body, retried: false },
    { method: 'PATCH', body, retried: false },
  ]
  const specOf = (seq: number) => plan[seq % plan.length]!
  const report = await startLoad({
    url: gw.url, concurrency: 8, durationMs: 2500, keepSamples: true, classify: statusAndCode,
    next: (seq) => {
      const spec = specOf(seq)
      return {
        method: spec.method, path: `/item/${seq}`,
        headers: { 'x-load-id': String(seq), ...(spec.body ? { 'content-type': 'text/plain', 'content-length': spec.body.length } : {}) },
        ...(spec.body ? { body: spec.body } : {}),
      }
    },
  }).done
  t.equal(report.failed, 0, `no client-side errors (${describeCounts(report)})`)

  // What each request must have got, from what the upstream saw of it.
  const tally = new Map<string, { requests: number; reset: number; retried: number; wrong: string[] }>()
  for (const sample of report.samples) {
    const spec = specOf(sample.seq)
    const name = `${spec.method}${spec.body ? ' with a body' : ''}`
    const entry = tally.get(name) ?? { requests: 0, reset: 0, retried: 0, wrong: [] }
    tally.set(name, entry)
    entry.requests++
    const seen = arrivals.get(String(sample.seq)) ?? []
    if (seen[0] && !seen[0].served) entry.reset++
    if (seen.length === 2) entry.retried++
    const attempts = spec.retried && seen[0] && !seen[0].served ? 2 : 1
    const last = seen[attempts - 1]
    const expected = last?.served ? '200' : '502 upstream_unreachable'
    const problems = [
      seen.length !== attempts && `reached the upstream ${seen.length}× (expected ${attempts})`,
      sample.label !== expected && `answered ${sample.label} (expected ${expected})`,
      last?.served && last.bodyBytes !== (spec.body?.length ?? 0) && `the upstream got ${last.bodyBytes} body bytes`,
    ].filter(Boolean)
    if (problems.length) entry.wrong.push(`#${sample.seq}: ${problems.join(', ')}`)
  }
  for (const spec of plan) {
    const name = `${spec.method}${spec.body ? ' with a body' : ''}`
    const entry = tally.get(name)!
    t.ok(entry.reset > 0, `${name}: ${entry.reset} of ${entry.requests} met a reset connection`)
    t.equal(entry.retried, spec.retried ? entry.reset : 0, spec.retried ? `${name}: every reset one was sent once more` : `${name}: never sent twice`)
    t.same(entry.wrong.slice(0, 5), [], `${name}: every answer matches what the upstream saw (${entry.wrong.length} wrong)`)
  }
})
