// WebSocket upgrades through a real gateway process: the 101 handshake crosses the gateway, then the
// connection is a byte tunnel both ways. unmatched: reject refuses an upgrade no route matches.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { configFor, startGateway } from '../helpers/gateway.ts'
import { refusingPort } from '../helpers/upstreams.ts'
import { openUpgrade } from '../helpers/upgrade.ts'
import { within } from '../helpers/wait.ts'

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const acceptFor = (key: string) => createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64')

/** An upstream that completes the RFC 6455 handshake and then echoes every byte it receives. */
async function startEchoUpstream() {
  const upgrades: Array<{ url: string; headers: IncomingHttpHeaders; closed: Promise<void> }> = []
  const sockets = new Set<Duplex>()
  const server = createServer((_req, res) => res.writeHead(426, { upgrade: 'websocket' }).end('upgrade required'))
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers, closed: new Promise((resolve) => socket.once('close', () => resolve())) })
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
    if (req.url?.startsWith('/ws/silent')) return // never answers
    if (req.url?.startsWith('/ws/declined')) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 16\r\nconnection: close\r\n\r\nnot in this room')
      return
    }
    const key = req.headers['sec-websocket-key']
    if (typeof key !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      return
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
      + `Sec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`)
    if (head.length) socket.write(head)
    socket.pipe(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    upgrades,
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** Reads exactly `length` bytes from the tunnel (starting with anything that came with the 101). */
function readExactly(socket: Socket, length: number, already: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks = [already]
    let got = already.length
    const done = (err?: Error) => {
      socket.off('data', onData)
      socket.off('error', done)
      socket.off('close', onClose)
      if (err) reject(err)
      else resolve(Buffer.concat(chunks))
    }
    const onData = (chunk: Buffer) => {
      chunks.push(chunk)
      got += chunk.length
      if (got >= length) done()
    }
    const onClose = () => done(new Error(`tunnel closed after ${got} of ${length} bytes`))
    if (got >= length) return done()
    socket.on('data', onData)
    socket.once('error', done)
    socket.once('close', onClose)
  })
}

const echo = await startEchoUpstream()
t.teardown(() => echo.close())
const gateway = await startGateway(configFor(echo.url, `
routes:
  - { name: socket, match: GET /ws/:room }
`))
t.teardown(() => gateway.stop())
// Started before any subtest is declared: tap's root test may end once queued subtests finish, so no
// top-level await may come between two t.test calls.
const refusedGateway = await startGateway(configFor(`http://127.0.0.1:${await refusingPort()}`))
t.teardown(() => refusedGateway.stop())

t.test('the upgrade crosses the gateway and the tunnel echoes bytes both ways', async (t) => {
  const before = echo.upgrades.length
  const handshake = await within(10_000, 'upgrade', openUpgrade(`${gateway.url}/ws/lobby?token=abc`))
  if (handshake.kind !== 'upgrade') {
    t.fail(`expected 101, got ${handshake.res.statusCode}: ${handshake.body}`)
    return
  }
  const { res, socket, head, key } = handshake
  t.teardown(() => socket.destroy())
  t.equal(res.statusCode, 101)
  t.equal(res.headers.upgrade?.toLowerCase(), 'websocket')
  t.match(res.headers.connection, /upgrade/i)
  t.equal(res.headers['sec-websocket-accept'], acceptFor(key), 'the upstream\'s accept for our key')

  const seen = echo.upgrades.slice(before)
  t.equal(seen.length, 1, 'one upgrade reached the upstream')
  t.equal(seen[0]?.url, '/ws/lobby?token=abc')
  t.equal(seen[0]?.headers['sec-websocket-key'], key)
  t.equal(seen[0]?.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(seen[0]?.headers.host, `127.0.0.1:${gateway.port}`, 'Host is preserved by default')

  const hello = Buffer.from('hello through the gateway')
  socket.write(hello)
  t.same(await within(5_000, 'small echo', readExactly(socket, hello.length, head)), hello)
  // A larger payload, sent in pieces: every byte comes back, in order.
  const big = randomBytes(2 * 1024 * 1024)
  const echoed = within(10_000, 'large echo', readExactly(socket, big.length))
  for (let at = 0; at < big.length; at += 100_000) socket.write(big.subarray(at, at + 100_000))
  t.ok((await echoed).equals(big), '2 MiB echoed unchanged')
})

t.test('a spoofed X-Forwarded-For from an untrusted client is not passed on', async (t) => {
  const before = echo.upgrades.length
  const handshake = await within(10_000, 'upgrade', openUpgrade(`${gateway.url}/ws/spoof`, { 'x-forwarded-for': '6.6.6.6' }))
  if (handshake.kind === 'upgrade') handshake.socket.destroy()
  t.equal(handshake.res.statusCode, 101)
  t.equal(echo.upgrades[before]?.headers['x-forwarded-for'], '127.0.0.1')
})

t.test('the tunnel closes when the client closes it, and the gateway keeps serving', async (t) => {
  const handshake = await within(10_000, 'upgrade', openUpgrade(`${gateway.url}/ws/closing`))
  if (handshake.kind !== 'upgrade') return void t.fail(`expected 101, got ${handshake.res.statusCode}`)
  const upstreamSocketsBefore = echo.upgrades.length
  const upstreamSide = echo.upgrades.at(-1)
  t.equal(upstreamSide?.url, '/ws/closing')
  handshake.socket.end()
  await within(5_000, 'upstream socket close', upstreamSide!.closed)
  await within(5_000, 'client socket close', new Promise((resolve) => handshake.socket.once('close', resolve)))
  // One access-log line for the tunnel once it closed, under the id the upstream was given.
  const line = await gateway.waitForLog((l) => l.msg === 'request' && l.path === '/ws/closing')
  t.match(line, { route: 'socket', method: 'GET', status: 101, requestId: upstreamSide?.headers['x-request-id'] })
  t.ok((line.bytesOut as number) > 0, 'the 101 head counts as bytes sent')
  t.equal(gateway.logs.filter((l) => l.msg === 'request' && l.path === '/ws/closing').length, 1, 'logged once')
  const again = await within(10_000, 'second upgrade', openUpgrade(`${gateway.url}/ws/again`))
  t.equal(again.res.statusCode, 101, 'a new upgrade still works')
  if (again.kind === 'upgrade') again.socket.destroy()
  t.equal(echo.upgrades.length, upstreamSocketsBefore + 1)
  t.equal((await fetch(`${gateway.adminUrl}/healthz`)).status, 200)
})

t.test('unmatched: reject refuses an upgrade no route matches with 404, and allows a matched one', async (t) => {
  const gw = await startGateway(configFor(echo.url, `
unmatched: reject
routes:
  - { name: socket, match: GET /ws/:room }
`))
  t.teardown(() => gw.stop())
  const before = echo.upgrades.length
  const refused = await within(10_000, 'refused upgrade', openUpgrade(`${gw.url}/elsewhere`))
  t.equal(refused.kind, 'response', 'no 101')
  t.equal(refused.res.statusCode, 404)
  t.equal(refused.res.headers['content-type'], 'application/problem+json')
  if (refused.kind === 'response') {
    t.match(JSON.parse(refused.body), { status: 404, code: 'route_not_found', requestId: refused.res.headers['x-request-id'] })
  }
  t.equal(echo.upgrades.length, before, 'the refused upgrade never reached the upstream')
  t.match(await gw.waitForLog((l) => l.msg === 'request' && l.path === '/elsewhere'),
    { status: 404, error: 'route_not_found', requestId: refused.res.headers['x-request-id'] }, 'a refused upgrade is logged like a refused request')

  const allowed = await within(10_000, 'allowed upgrade', openUpgrade(`${gw.url}/ws/room1`))
  t.equal(allowed.res.statusCode, 101)
  if (allowed.kind === 'upgrade') {
    allowed.socket.write('ping')
    t.equal((await within(5_000, 'echo', readExactly(allowed.socket, 4, allowed.head))).toString(), 'ping')
    allowed.socket.destroy()
  }
})

t.test('an upstream that declines the upgrade: its answer reaches the client', async (t) => {
  const declined = await within(10_000, 'declined upgrade', openUpgrade(`${gateway.url}/ws/declined`))
  t.equal(declined.kind, 'response', 'no 101')
  t.equal(declined.res.statusCode, 403)
  if (declined.kind === 'response') t.equal(declined.body, 'not in this room')
  t.match(await gateway.waitForLog((l) => l.msg === 'request' && l.path === '/ws/declined'), { status: 403, route: 'socket' }, 'logged with the upstream\'s answer')
})

t.test('an upstream that never answers an upgrade: 504 after the upstream timeouts, as for a plain request', async (t) => {
  const gw = await startGateway(`listen: { port: \${PORT} }\nadmin: { port: \${ADMIN_PORT} }
upstream: { url: "${echo.url}", timeouts: { connect: 200ms, headers: 300ms } }
routes:
  - { name: socket, match: GET /ws/:room }
`)
  t.teardown(() => gw.stop())
  const silent = await within(10_000, 'silent upgrade', openUpgrade(`${gw.url}/ws/silent`))
  t.equal(silent.kind, 'response', 'no 101')
  t.equal(silent.res.statusCode, 504)
  t.equal(silent.res.headers['content-type'], 'application/problem+json')
  if (silent.kind === 'response') t.match(JSON.parse(silent.body), { code: 'upstream_timeout', requestId: silent.res.headers['x-request-id'] })
  t.match(await gw.waitForLog((l) => l.msg === 'request' && l.path === '/ws/silent'), { status: 504, error: 'upstream_timeout', route: 'socket' })
})

t.test('an upstream URL with a base path prefixes upgrade paths too', async (t) => {
  const gw = await startGateway(configFor(`${echo.url}/v1`))
  t.teardown(() => gw.stop())
  const before = echo.upgrades.length
  const handshake = await within(10_000, 'upgrade', openUpgrade(`${gw.url}/ws/based?x=1`))
  if (handshake.kind === 'upgrade') handshake.socket.destroy()
  t.equal(handshake.res.statusCode, 101)
  t.equal(echo.upgrades[before]?.url, '/v1/ws/based?x=1', 'the same path an HTTP request would be forwarded to')
  t.match(await gw.waitForLog((l) => l.msg === 'request' && l.status === 101), { path: '/ws/based' }, 'the log speaks of the client\'s target')
})

/** An upgrade's outcome as data: the status the client got, or the error its connection ended with. */
const tryUpgrade = (url: string) => within(10_000, `upgrade ${url}`, openUpgrade(url).then(
  (handshake) => {
    if (handshake.kind === 'upgrade') handshake.socket.destroy()
    return { status: handshake.res.statusCode, type: handshake.res.headers['content-type'], error: undefined }
  },
  (err: Error & { code?: string }) => ({ status: undefined, type: undefined, error: err.code ?? err.message }),
))

t.test('an upgrade to an unreachable upstream ends promptly; the gateway logs it and survives', async (t) => {
  const outcome = await tryUpgrade(`${refusedGateway.url}/ws/down`)
  t.not(outcome.status, 101, 'no tunnel')
  const notice = await refusedGateway.waitForLog((line) => line.msg === 'websocket upgrade failed')
  t.equal(notice.level, 40, 'logged as a warning')
  t.equal(refusedGateway.proc.exitCode, null, 'the gateway is still running')
  t.equal((await fetch(`${refusedGateway.adminUrl}/healthz`)).status, 200)
})

t.test('an upgrade to an unreachable upstream is answered 502 problem+json, like a plain request', async (t) => {
  const outcome = await tryUpgrade(`${refusedGateway.url}/ws/down`)
  t.equal(outcome.error, undefined, 'the client gets an answer, not a dropped connection')
  t.equal(outcome.status, 502)
  t.equal(outcome.type, 'application/problem+json')
  t.match(await refusedGateway.waitForLog((l) => l.msg === 'request' && l.status === 502), { path: '/ws/down', errorSource: 'upstream' })
})
