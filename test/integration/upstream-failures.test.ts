// Upstream failures through a real gateway process: refused, silent, reset, cut mid-body, 5xx, a client
// that leaves early. Each must become the documented answer (502/504 problem+json, a cut connection, a
// 499 log line) and none may take the gateway down. Also: unmatched: reject, upstream.host, base paths.
import t from 'tap'
import { spawn } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { request, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { configFor, startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { refusingPort, startUpstream } from '../helpers/upstreams.ts'
import { httpRequest } from '../helpers/http.ts'
import { within } from '../helpers/wait.ts'

/** A config whose upstream block is written out in full (configFor only takes the URL). */
function configWithUpstream(upstreamYaml: string, extra = ''): string {
  return `listen: { port: \${PORT} }\nadmin: { port: \${ADMIN_PORT} }\nupstream: ${upstreamYaml}\n${extra}`
}

interface Outcome {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** true when the response body arrived whole (node's `res.complete`). */
  complete: boolean
  /** The error the response stream ended with, if it was cut. */
  error?: Error
}

/** A GET that reports a cut response instead of rejecting, so a test can assert on how it ended. */
function get(url: string, headers: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers }, (res) => {
      const chunks: Buffer[] = []
      let error: Error | undefined
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', (err) => { error = err })
      res.on('close', () => resolve({
        status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete, ...(error ? { error } : {}),
      }))
    })
    req.on('error', reject)
    req.end()
  })
}

const problemOf = (outcome: Outcome) => JSON.parse(outcome.body.toString()) as Record<string, unknown>

/** What a problem document must never show a client: stack frames or source paths. [] when clean. */
function internalsIn(text: string): string[] {
  const leaks: Array<[string, RegExp]> = [
    ['a stack property', /"stack"/i],
    ['stack frames', /\n\s+at\s|\bat\s+\S+\s+\(/],
    ['file paths', /\/(work|home|root|usr|tmp|node_modules)\/|[\w-]+\.(ts|js|mjs):\d+|node:internal/],
  ]
  return leaks.filter(([, pattern]) => pattern.test(text)).map(([name]) => name)
}

// ---------------------------------------------------------------------------------------------------
// One misbehaving upstream, one behaviour per path.

const upstreamSaw: Array<{ url: string; host: string | undefined }> = []
let slowArrived: (() => void) | undefined
let slowClosed: ((finished: boolean) => void) | undefined

function misbehave(req: IncomingMessage, res: ServerResponse): void {
  upstreamSaw.push({ url: req.url ?? '', host: req.headers.host })
  switch (req.url) {
    case '/destroy':
      req.socket.destroy()
      return
    case '/partial-chunked':
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('x'.repeat(4096), () => setTimeout(() => res.socket?.destroy(), 50))
      return
    case '/partial-length':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 100_000 })
      res.write('y'.repeat(4096), () => setTimeout(() => res.socket?.destroy(), 50))
      return
    case '/500':
      res.writeHead(500, { 'content-type': 'text/plain', 'x-upstream-error': 'boom' })
      res.end('upstream exploded')
      return
    case '/503':
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '7' })
      res.end('{"error":"maintenance"}')
      return
    case '/slow':
      // Works "forever": answers only if nobody aborted it; reports whether the gateway hung up on it.
      res.on('close', () => slowClosed?.(res.writableFinished))
      slowArrived?.()
      setTimeout(() => { if (!res.destroyed) res.end('too late') }, 20_000).unref()
      return
    default:
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end(`ok ${req.url}`)
  }
}

// Each resource's teardown is registered as soon as it exists, so a failed start cannot leave a server
// holding the test process open.
const upstream = await startUpstream(misbehave)
t.teardown(() => upstream.close())
const gateway = await startGateway(configFor(upstream.url))
t.teardown(() => gateway.stop())

/**
 * A loopback port whose connects hang: a child node process listens with backlog 1 and then blocks its event
 * loop, so it never accepts. Once its accept queue is full Linux drops further SYNs (with the default
 * net.ipv4.tcp_abort_on_overflow=0) and connects stay in SYN_SENT: an upstream too slow to connect.
 * `hangs` says whether a probe connect really hung here; elsewhere the test is skipped.
 */
async function unacceptingPort(): Promise<{ port: number; hangs: boolean; close(): void }> {
  const child = spawn(process.execPath, ['-e', `
    const server = require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(server.address().port + '\\n', () => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000) // never accepts while blocked
        process.exit(0) // and never outlives a test run that forgot it
      })
    })`], { stdio: ['ignore', 'pipe', 'inherit'] })
  const sockets: Socket[] = []
  const close = () => { for (const socket of sockets) socket.destroy(); child.kill('SIGKILL') }
  const port = await within(10_000, 'unaccepting listener', new Promise<number>((resolve) => {
    child.stdout.setEncoding('utf8').once('data', (text: string) => resolve(Number(text.trim())))
  }))
  const probe = () => new Promise<'connected' | 'hangs' | 'refused'>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    sockets.push(socket)
    const timer = setTimeout(() => resolve('hangs'), 500)
    socket.once('connect', () => { clearTimeout(timer); resolve('connected') })
    socket.once('error', () => { clearTimeout(timer); resolve('refused') })
  })
  let outcome = await probe() // the first connects fill the accept queue, the next one should hang
  for (let i = 0; i < 8 && outcome === 'connected'; i++) outcome = await probe()
  return { port, hangs: outcome === 'hangs', close }
}

// Everything the subtests need is set up before the first one is declared: tap's root test may end once the
// queued subtests finish, so no top-level await may sit between two t.test calls.
const unaccepting = await unacceptingPort()
t.teardown(() => unaccepting.close())

const requestLog = (gw: RunningGateway, path: string) => gw.waitForLog((line) => line.msg === 'request' && line.path === path)

t.test('connection refused: 502 upstream_unreachable as problem+json, no internals', async (t) => {
  const port = await refusingPort()
  const gw = await startGateway(configFor(`http://127.0.0.1:${port}`))
  t.teardown(() => gw.stop())
  const res = await get(`${gw.url}/anything?q=1`)
  t.equal(res.status, 502)
  t.equal(res.headers['content-type'], 'application/problem+json')
  const problem = problemOf(res)
  t.match(problem, { status: 502, code: 'upstream_unreachable', type: 'urn:gateway:error:upstream_unreachable' })
  t.equal(problem.requestId, res.headers['x-request-id'], 'the body quotes the x-request-id header')
  t.match(problem.requestId, /^[0-9a-f-]{36}$/)
  t.same(internalsIn(res.body.toString()), [], 'no stack trace, no file paths')
  const line = await requestLog(gw, '/anything')
  t.match(line, { status: 502, error: 'upstream_unreachable', errorSource: 'upstream', requestId: problem.requestId })
  t.equal((await fetch(`${gw.adminUrl}/healthz`)).status, 200, 'the gateway is still up')
})

t.test('an upstream that never sends headers: 504 upstream_timeout after upstream.timeouts.headers', async (t) => {
  const silent = await startUpstream(() => { /* reads the request, never answers */ })
  t.teardown(() => silent.close())
  const gw = await startGateway(configWithUpstream(`{ url: ${silent.url}, timeouts: { headers: 300ms } }`))
  t.teardown(() => gw.stop())
  const res = await within(10_000, 'silent upstream', get(`${gw.url}/hang`))
  t.equal(res.status, 504)
  t.equal(res.headers['content-type'], 'application/problem+json')
  const problem = problemOf(res)
  t.match(problem, { status: 504, code: 'upstream_timeout', requestId: res.headers['x-request-id'] })
  t.match(problem.detail, /UND_ERR_HEADERS_TIMEOUT/)
  t.same(internalsIn(res.body.toString()), [], 'no stack trace, no file paths')
  t.equal((await fetch(`${gw.adminUrl}/healthz`)).status, 200, 'the gateway is still up')
})

t.test('an upstream that accepts no connection in time: 504 upstream_timeout after upstream.timeouts.connect', {
  skip: unaccepting.hangs ? false : 'a full accept queue does not make loopback connects hang on this machine',
}, async (t) => {
  const gw = await startGateway(configWithUpstream(`{ url: http://127.0.0.1:${unaccepting.port}, timeouts: { connect: 300ms, headers: 60s } }`))
  t.teardown(() => gw.stop())
  const res = await within(10_000, 'unaccepted connect', get(`${gw.url}/connect`))
  t.equal(res.status, 504)
  t.equal(res.headers['content-type'], 'application/problem+json')
  const problem = problemOf(res)
  t.match(problem, { status: 504, code: 'upstream_timeout', requestId: res.headers['x-request-id'] })
  t.match(problem.detail, /UND_ERR_CONNECT_TIMEOUT/, 'the connect timeout fired, not the 60s headers timeout')
  t.equal((await fetch(`${gw.adminUrl}/healthz`)).status, 200, 'the gateway is still up')
})

t.test('an upstream that drops the connection before answering: 502', async (t) => {
  const res = await within(10_000, '/destroy', get(`${gateway.url}/destroy`))
  t.equal(res.status, 502)
  t.equal(res.headers['content-type'], 'application/problem+json')
  t.match(problemOf(res), { status: 502, code: 'upstream_unreachable', requestId: res.headers['x-request-id'] })
  t.same(internalsIn(res.body.toString()), [], 'no stack trace, no file paths')
})

for (const framing of ['chunked', 'length'] as const) {
  t.test(`an upstream cut mid-body (${framing}): the client sees an aborted response, not a hang`, async (t) => {
    const path = `/partial-${framing}`
    const res = await within(10_000, path, get(`${gateway.url}${path}`))
    t.equal(res.status, 200, 'the headers had already gone out')
    t.equal(res.complete, false, 'the body is reported incomplete')
    t.ok(res.error, 'reading the body ends in an error')
    if (framing === 'length') t.ok(res.body.length < 100_000, `only ${res.body.length} of the declared 100000 bytes arrived`)
    const line = await requestLog(gateway, path)
    t.match(line, { upstreamStatus: 200, error: String })
    t.comment(`logged error: ${String(line.error)}`)
  })
}

t.test('upstream 500 and 503 pass through unchanged', async (t) => {
  const five = await httpRequest(`${gateway.url}/500`)
  t.equal(five.status, 500)
  t.equal(five.body, 'upstream exploded')
  t.equal(five.headers['content-type'], 'text/plain')
  t.equal(five.headers['x-upstream-error'], 'boom')
  const unavailable = await httpRequest(`${gateway.url}/503`)
  t.equal(unavailable.status, 503)
  t.equal(unavailable.body, '{"error":"maintenance"}')
  t.equal(unavailable.headers['content-type'], 'application/json')
  t.equal(unavailable.headers['retry-after'], '7')
  const line = await requestLog(gateway, '/503')
  t.match(line, { status: 503, upstreamStatus: 503 })
  t.notOk('error' in line, 'an upstream 5xx is not a gateway error')
})

t.test('a client that hangs up aborts the upstream request; the log says 499', async (t) => {
  const arrived = new Promise<void>((resolve) => { slowArrived = resolve })
  const closed = new Promise<boolean>((resolve) => { slowClosed = resolve })
  t.teardown(() => { slowArrived = undefined; slowClosed = undefined })
  const req = request(`${gateway.url}/slow`, { agent: false })
  req.on('error', () => { /* we are the ones hanging up */ })
  req.end()
  await within(10_000, 'upstream receiving /slow', arrived)
  req.destroy()
  const finished = await within(5_000, 'upstream seeing the abort', closed)
  t.equal(finished, false, 'the upstream connection closed before the upstream answered')
  const line = await requestLog(gateway, '/slow')
  t.match(line, { status: 499, error: 'client_closed', upstreamStatus: null })
})

t.test('unmatched: reject answers 404 route_not_found; matched routes still forward', async (t) => {
  const gw = await startGateway(configFor(upstream.url, `
unmatched: reject
routes:
  - { name: known, match: GET /known/:id }
`))
  t.teardown(() => gw.stop())
  const before = upstreamSaw.length
  const missing = await get(`${gw.url}/unknown/path?x=1`)
  t.equal(missing.status, 404)
  t.equal(missing.headers['content-type'], 'application/problem+json')
  t.match(problemOf(missing), { status: 404, code: 'route_not_found', requestId: missing.headers['x-request-id'] })
  t.same(internalsIn(missing.body.toString()), [], 'no stack trace, no file paths')
  const known = await get(`${gw.url}/known/1`)
  t.equal(known.status, 200)
  t.equal(known.body.toString(), 'ok /known/1')
  t.same(upstreamSaw.slice(before).map((seen) => seen.url), ['/known/1'], 'only the matched request reached the upstream')
})

t.test('upstream.host: preserve sends the client\'s Host, upstream sends the upstream URL\'s host:port', async (t) => {
  const hosts = await startUpstream((req, res) => res.end(req.headers.host ?? '(none)'))
  t.teardown(() => hosts.close())
  const preserving = await startGateway(configFor(hosts.url))
  t.teardown(() => preserving.stop())
  const rewriting = await startGateway(configWithUpstream(`{ url: ${hosts.url}, host: upstream }`))
  t.teardown(() => rewriting.stop())
  t.equal((await httpRequest(`${preserving.url}/`)).body, `127.0.0.1:${preserving.port}`)
  t.equal((await httpRequest(`${preserving.url}/`, { headers: { host: 'api.example.com' } })).body, 'api.example.com')
  t.equal((await httpRequest(`${rewriting.url}/`)).body, `127.0.0.1:${hosts.port}`)
  t.equal((await httpRequest(`${rewriting.url}/`, { headers: { host: 'api.example.com' } })).body, `127.0.0.1:${hosts.port}`)
})

t.test('an upstream URL with a base path prefixes every forwarded path', async (t) => {
  const paths = await startUpstream((req, res) => res.end(req.url))
  t.teardown(() => paths.close())
  const based = await startGateway(configFor(`${paths.url}/v1`))
  t.teardown(() => based.stop())
  const slashed = await startGateway(configFor(`${paths.url}/api/v2/`))
  t.teardown(() => slashed.stop())
  t.equal((await httpRequest(`${based.url}/leads/7?sort=name&x=%20`)).body, '/v1/leads/7?sort=name&x=%20')
  t.equal((await httpRequest(`${based.url}/`)).body, '/v1/')
  t.equal((await httpRequest(`${slashed.url}/leads`)).body, '/api/v2/leads', 'a trailing slash on the base path is not doubled')
})

t.test('the gateway survived all of the above', async (t) => {
  t.equal(gateway.proc.exitCode, null, 'still running')
  const res = await httpRequest(`${gateway.url}/after`)
  t.equal(res.status, 200)
  t.equal(res.body, 'ok /after')
  const health = await fetch(`${gateway.adminUrl}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })
  t.notOk(gateway.logs.some((line) => line.msg === 'uncaught exception'), 'nothing escaped to the process handlers')
  t.notOk(gateway.logs.some((line) => line.msg === 'unhandled rejection'), 'no unhandled rejection')
})
