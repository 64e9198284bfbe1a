// The gateway process over its life: admin probes, SIGTERM drain, SIGHUP reload (good, broken, new upstream).
// Real gateway processes (startGateway) in front of real throwaway upstreams.
import t from 'tap'
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { once } from 'node:events'
import { configFor, startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { refusingPort, startUpstream, type TestUpstream } from '../helpers/upstreams.ts'
import { httpRequest } from '../helpers/http.ts'
import { orTimeout } from '../helpers/wait.ts'

/** 'connected', or the error code of a TCP connect to 127.0.0.1:port (ECONNREFUSED once nothing listens). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}

/** Polls until a connect to the port is refused; returns the last outcome ('connected' if it never was within `ms`). */
async function refusedWithin(port: number, ms: number): Promise<string> {
  const deadline = Date.now() + ms
  let outcome = await tryConnect(port)
  while (outcome === 'connected' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    outcome = await tryConnect(port)
  }
  return outcome
}

/** Waits for a log line logged after this call (earlier lines, e.g. of a previous reload, do not count). */
function nextLog(gw: RunningGateway, predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number) {
  const from = gw.logs.length
  return gw.waitForLog((line) => gw.logs.indexOf(line) >= from && predicate(line), timeoutMs)
}

/** After exit: waits until the gateway's stdout is fully read ('exit' can come before the last log lines). */
async function allLogged(gw: RunningGateway): Promise<void> {
  if (!gw.proc.stdout.closed) await once(gw.proc.stdout, 'close')
}

const msgStarts = (prefix: string) => (line: Record<string, unknown>) => typeof line.msg === 'string' && line.msg.startsWith(prefix)

/**
 * An upstream that answers `name` at once, except on /slow: that request is held until the test calls
 * release() (or forever). `arrived` resolves when a held request has reached the upstream.
 */
async function holdingUpstream(name: string, slowBody = `${name}-slow`) {
  let arrive!: () => void
  const arrived = new Promise<void>((resolve) => { arrive = resolve })
  const held: ServerResponse[] = []
  const upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/slow') {
      held.push(res)
      arrive()
      return
    }
    res.setHeader('content-type', 'text/plain')
    res.end(name)
  })
  const release = () => { for (const res of held.splice(0)) if (!res.destroyed) res.end(slowBody) }
  return { ...upstream, arrived, release, name }
}

async function cleanup(gw: RunningGateway, ...upstreams: TestUpstream[]) {
  if (gw.proc.exitCode === null && gw.proc.signalCode === null) {
    if (await orTimeout(gw.stop('SIGTERM'), 5000) === 'timeout') await gw.stop('SIGKILL')
  }
  await Promise.all(upstreams.map((upstream) => upstream.close()))
}

t.test('admin probes', async (t) => {
  t.test('/healthz says ok and /readyz lists its checks when the upstream is up', async (t) => {
    const upstream = await startUpstream((_req, res) => res.end('up'))
    const gw = await startGateway(configFor(upstream.url))
    t.teardown(() => cleanup(gw, upstream))

    const health = await fetch(`${gw.adminUrl}/healthz`)
    t.equal(health.status, 200)
    t.equal(health.headers.get('content-type'), 'application/json')
    t.same(await health.json(), { status: 'ok' })

    const ready = await fetch(`${gw.adminUrl}/readyz`)
    t.equal(ready.status, 200)
    t.same(await ready.json(), {
      status: 'ready',
      checks: {
        config: { ok: true, file: gw.configFile },
        draining: { ok: true },
        upstream: { ok: true, url: upstream.url },
      },
    })
    t.equal((await fetch(`${gw.adminUrl}/nope`)).status, 404)
    t.equal((await fetch(`${gw.url}/`)).status, 200, 'the admin port is not the proxy port')
  })

  t.test('/readyz is 503 with checks.upstream.ok false when the upstream refuses connections', async (t) => {
    const port = await refusingPort()
    const gw = await startGateway(configFor(`http://127.0.0.1:${port}`))
    t.teardown(() => cleanup(gw))

    const ready = await fetch(`${gw.adminUrl}/readyz`)
    t.equal(ready.status, 503)
    const body = await ready.json() as { status: string; checks: Record<string, { ok: boolean; error?: string; url?: string }> }
    t.equal(body.status, 'not ready')
    t.match(body.checks.upstream, { ok: false, url: `http://127.0.0.1:${port}`, error: 'ECONNREFUSED' })
    t.equal(body.checks.config?.ok, true)
    t.equal(body.checks.draining?.ok, true)
    const health = await fetch(`${gw.adminUrl}/healthz`)
    t.equal(health.status, 200, 'the process is alive even though it cannot serve')
  })
})

t.test('SIGTERM drain', async (t) => {
  t.test('an in-flight request completes, new connections are refused, exit 0 well before the drain timeout', async (t) => {
    const upstream = await holdingUpstream('a', 'x'.repeat(64 * 1024))
    const gw = await startGateway(configFor(upstream.url, 'shutdown: { drainTimeout: 20s }\n'))
    t.teardown(async () => { upstream.release(); await cleanup(gw, upstream) })

    // A client without keep-alive (Connection: close), so the finished response leaves no idle socket behind.
    const slow = httpRequest(`${gw.url}/slow`)
    await upstream.arrived
    const exited = gw.stop('SIGTERM')
    await gw.waitForLog((line) => line.msg === 'draining')

    // The "draining" line is written just before the listener closes, so allow the process a moment to get there.
    t.equal(await refusedWithin(gw.port, 5000), 'ECONNREFUSED', 'the proxy port stops accepting new connections')
    const ready = await fetch(`${gw.adminUrl}/readyz`)
    t.equal(ready.status, 503, 'readiness fails while draining')
    t.match(await ready.json(), { checks: { draining: { ok: false } } })
    t.equal(gw.proc.exitCode, null, 'the process waits for the in-flight request')

    // The upstream answers only now: the request must still get its whole response.
    upstream.release()
    const res = await slow
    t.equal(res.status, 200)
    t.equal(res.body, 'x'.repeat(64 * 1024), 'the full body arrives')

    const code = await orTimeout(exited, 10_000)
    t.equal(code, 0, 'exits 0 once the request is done (bound 10s, drain timeout 20s)')
    await allLogged(gw)
    t.ok(gw.logs.some((line) => line.msg === 'stopped'), 'the last log line says stopped')
    t.equal(await tryConnect(gw.adminPort), 'ECONNREFUSED', 'the admin port is closed too')
  })

  t.test('a keep-alive client\'s in-flight response closes its connection, so exit does not wait for it', async (t) => {
    const upstream = await holdingUpstream('a')
    t.teardown(() => upstream.close())
    const gw = await startGateway(`listen: { port: \${PORT}, timeouts: { keepAlive: 30s } }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
shutdown: { drainTimeout: 30s }
`)
    const agent = new Agent({ keepAlive: true })
    t.teardown(async () => { agent.destroy(); upstream.release(); await cleanup(gw, upstream) })

    const slow = new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
      request(`${gw.url}/slow`, { agent }, (res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
        res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, body }))
        res.on('error', reject)
      }).on('error', reject).end()
    })
    await upstream.arrived
    const exited = gw.stop('SIGTERM')
    await gw.waitForLog((line) => line.msg === 'draining')
    upstream.release()
    const res = await slow
    t.equal(res.status, 200)
    t.equal(res.body, 'a-slow')

    t.equal(res.connection, 'close', 'the response tells the client the connection closes')
    const code = await orTimeout(exited, 3000)
    t.equal(code, 0, 'exits without waiting for the idle keep-alive socket (bound 3s, drain timeout 30s)')
    if (code === 'timeout') {
      agent.destroy() // the client lets go of the socket: now the drain can finish
      t.equal(await orTimeout(exited, 10_000), 0, 'exits 0 once the client closes its idle connection')
    }
  })

  t.test('a request still running past shutdown.drainTimeout is cut and the process still exits 0', async (t) => {
    const upstream = await holdingUpstream('a') // never released: the upstream would hold the request forever
    const gw = await startGateway(configFor(upstream.url, 'shutdown: { drainTimeout: 500ms }\n'))
    t.teardown(() => cleanup(gw, upstream))

    const slow = httpRequest(`${gw.url}/slow`).then((res) => res, (err: NodeJS.ErrnoException) => err)
    await upstream.arrived
    const exited = gw.stop('SIGTERM')
    const code = await orTimeout(exited, 10_000)
    t.equal(code, 0, 'exits 0 (bound 10s) although the upstream never answered')
    const outcome = await orTimeout(slow, 5000)
    t.type(outcome, Error, 'the request was cut, not answered')
    t.match((outcome as NodeJS.ErrnoException).code, /^(ECONNRESET|EPIPE)$/)
    await allLogged(gw)
    t.ok(gw.logs.some((line) => line.msg === 'stopped'), 'the last log line says stopped')
  })
})

t.test('SIGHUP reload', async (t) => {
  t.test('a good new config goes live: unmatched forward → reject, a new route, a "config reloaded" line', async (t) => {
    const upstream = await startUpstream((req, res) => res.end(`upstream saw ${req.url}`))
    const gw = await startGateway(configFor(upstream.url, 'unmatched: forward\n'))
    t.teardown(() => cleanup(gw, upstream))

    const before = await fetch(`${gw.url}/nope`)
    t.equal(before.status, 200, 'forwarded before the reload')
    t.equal(await before.text(), 'upstream saw /nope')

    gw.writeConfig(configFor(upstream.url, 'unmatched: reject\nroutes:\n  - { name: known, match: GET /known }\n'))
    const reloaded = nextLog(gw, (line) => line.msg === 'config reloaded')
    gw.proc.kill('SIGHUP')
    t.match(await reloaded, { level: 30, routes: 1 })

    const after = await fetch(`${gw.url}/nope`)
    t.equal(after.status, 404, 'rejected after the reload')
    t.match(await after.json(), { code: 'route_not_found' })
    const known = await fetch(`${gw.url}/known`)
    t.equal(known.status, 200)
    t.equal(await known.text(), 'upstream saw /known')
    t.match(await gw.waitForLog((line) => line.msg === 'request' && line.path === '/known'), { route: 'known', status: 200 })

    // Listener settings are read once at start: a reload that changes them says so.
    gw.writeConfig(`listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT}, host: 127.0.0.1 }
upstream: { url: ${upstream.url} }
unmatched: reject
`)
    const warned = nextLog(gw, msgStarts('these settings change only on restart'))
    const again = nextLog(gw, (line) => line.msg === 'config reloaded')
    gw.proc.kill('SIGHUP')
    t.same((await warned).keys, ['admin'], 'only the changed listener setting is named')
    t.match(await again, { routes: 0 })
    t.equal((await fetch(`${gw.url}/known`)).status, 404, 'the route is gone again')
    t.equal((await fetch(`${gw.adminUrl}/healthz`)).status, 200, 'the admin listener keeps running')
  })

  t.test('a broken file under steady load: "config reload failed" with file:line, no request fails, the old config serves', async (t) => {
    const upstream = await startUpstream((_req, res) => res.end('ok'))
    const good = configFor(upstream.url, 'unmatched: reject\nroutes:\n  - { name: ok, match: GET /ok }\n')
    const gw = await startGateway(good)
    t.teardown(() => cleanup(gw, upstream))

    const outcomes: Array<number | string> = []
    let stop = false
    const agent = new Agent({ keepAlive: true, maxSockets: 4 })
    t.teardown(() => agent.destroy())
    const get = (path: string) => new Promise<number>((resolve, reject) => {
      request(`${gw.url}${path}`, { agent }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)) })
        .on('error', reject).end()
    })
    const worker = async () => {
      while (!stop) outcomes.push(await get('/ok').catch((err: Error) => err.message))
    }
    const workers = [worker(), worker(), worker(), worker()]
    const completed = (n: number) => new Promise<void>((resolve) => {
      const poll = () => (outcomes.length >= n || stop ? resolve() : setTimeout(poll, 5))
      poll()
    })
    await completed(50)

    // Line 7 holds the bad duration; `unmatched: forward` would show if this file were (wrongly) applied.
    gw.writeConfig(`listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
unmatched: forward
routes: [{ name: ok, match: GET /ok }]
shutdown:
  drainTimeout: 5 mins
`)
    const failed = nextLog(gw, msgStarts('config reload failed'))
    const sentAt = outcomes.length
    gw.proc.kill('SIGHUP')
    const line = await failed
    await completed(outcomes.length + 100) // keep the load going past the failed reload
    stop = true
    await Promise.all(workers)

    t.equal(line.level, 50, 'logged as an error')
    t.same(line.problems, [`${gw.configFile}:7 shutdown.drainTimeout: expected a duration like 250ms, 30s, 5m, 1h`])
    t.ok(outcomes.length > sentAt + 100, `requests kept flowing through the reload (${outcomes.length} in all)`)
    t.same(outcomes.filter((outcome) => outcome !== 200), [], 'no request failed')
    t.notOk(gw.logs.some((l) => l.msg === 'config reloaded'))
    t.equal((await fetch(`${gw.url}/nope`)).status, 404, 'the old config (unmatched: reject) still serves')
    t.equal((await fetch(`${gw.adminUrl}/readyz`)).status, 200, 'still ready')
    t.equal(gw.proc.exitCode, null, 'still running')

    // The old file back, fixed: the next SIGHUP applies it.
    gw.writeConfig(good)
    const reloaded = nextLog(gw, (l) => l.msg === 'config reloaded')
    gw.proc.kill('SIGHUP')
    t.match(await reloaded, { routes: 1 })
  })

  t.test('a new upstream.url: later requests reach the new upstream, one in flight finishes on the old', async (t) => {
    const a = await holdingUpstream('A')
    const b = await holdingUpstream('B')
    const gw = await startGateway(configFor(a.url))
    t.teardown(async () => { a.release(); await cleanup(gw, a, b) })

    t.equal(await (await fetch(`${gw.url}/`)).text(), 'A')
    const inFlight = httpRequest(`${gw.url}/slow`)
    await a.arrived

    gw.writeConfig(configFor(b.url))
    const reloaded = nextLog(gw, (line) => line.msg === 'config reloaded')
    gw.proc.kill('SIGHUP')
    await reloaded

    for (let i = 0; i < 5; i++) t.equal(await (await fetch(`${gw.url}/`)).text(), 'B', `request ${i + 1} after the reload goes to B`)
    const ready = await (await fetch(`${gw.adminUrl}/readyz`)).json() as { checks: { upstream: { url: string } } }
    t.equal(ready.checks.upstream.url, b.url, '/readyz probes the new upstream')

    a.release()
    const res = await inFlight
    t.equal(res.status, 200, 'the request in flight on the old upstream completes')
    t.equal(res.body, 'A-slow')
  })
})

t.test('POST /reload on the admin port: token required, 422 with the problems for a broken file, 200 applies', async (t) => {
  const upstream = await startUpstream((_req, res) => res.end('ok'))
  const withToken = (extra: string) => `listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT}, token: s3cret }
upstream: { url: ${upstream.url} }
${extra}`
  const gw = await startGateway(withToken('unmatched: forward\n'))
  t.teardown(() => cleanup(gw, upstream))
  const reload = (authorization?: string, method = 'POST') =>
    fetch(`${gw.adminUrl}/reload`, { method, headers: authorization ? { authorization } : {} })

  gw.writeConfig(withToken('unmatched: reject\n'))
  t.equal((await reload()).status, 401, 'no token')
  t.equal((await reload('Bearer wrong!')).status, 401, 'a wrong token')
  t.equal((await reload('Bearer s3cret', 'GET')).status, 405, 'GET is not an action')
  t.equal((await fetch(`${gw.url}/nope`)).status, 200, 'nothing was applied by refused calls')

  gw.writeConfig(withToken('unmatched: nowhere\n'))
  const broken = await reload('Bearer s3cret')
  t.equal(broken.status, 422)
  t.match(await broken.json(), { ok: false, problems: [new RegExp(`^${gw.configFile}:4 unmatched:`)] })
  t.equal((await fetch(`${gw.url}/nope`)).status, 200, 'the old config keeps serving')

  gw.writeConfig(withToken('unmatched: reject\n'))
  const applied = await reload('Bearer s3cret')
  t.equal(applied.status, 200)
  t.match(await applied.json(), { ok: true, routes: 0 })
  t.equal((await fetch(`${gw.url}/nope`)).status, 404, 'the new config serves')
})
