// Hostile requests that are not about framing: aiming the gateway at another host (absolute-form targets,
// CONNECT, Host games), hop-by-hop abuse of the Connection header, oversized heads and bodies, and clients
// that send slowly. A second local server stands in for "somewhere else": it must never be contacted.
import t from 'tap'
import { configFor, startGateway } from '../helpers/gateway.ts'
import { exchange, isRefusal, startRecordingUpstream, until } from '../helpers/raw-http.ts'
import { httpRequest } from '../helpers/http.ts'

const upstream = await startRecordingUpstream()
const elsewhere = await startRecordingUpstream()
const gateway = await startGateway(`
listen: { port: \${PORT}, maxHeaderSize: 8KiB, maxBodySize: 1KiB, timeouts: { headers: 1s, request: 2s, keepAlive: 1s } }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
log: { requests: false }
routes:
  - { name: upload, match: POST /upload, maxBodySize: 100 }
`)
t.teardown(async () => { await gateway.stop(); await upstream.close(); await elsewhere.close() })

const HOST = `127.0.0.1:${gateway.port}`
const OTHER = `127.0.0.1:${elsewhere.port}`

/** A normal client's request, to show the gateway still serves others. */
const normal = async (path = '/normal') => {
  const res = await fetch(`${gateway.url}${path}`)
  return { status: res.status, body: await res.json() as { url: string } }
}

t.test('no open proxy', async (t) => {
  const attempts = [
    `GET http://${OTHER}/steal HTTP/1.1\r\nHost: ${OTHER}\r\nConnection: close\r\n\r\n`,
    `GET http://${OTHER}/steal HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
    `GET https://${OTHER}/steal HTTP/1.1\r\nHost: ${OTHER}\r\nConnection: close\r\n\r\n`,
    `GET http://evil.example/steal HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
    `POST http://${OTHER}/upload HTTP/1.1\r\nHost: ${OTHER}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi`,
    `GET ${OTHER}/steal HTTP/1.1\r\nHost: ${OTHER}\r\nConnection: close\r\n\r\n`,
    `OPTIONS * HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
  ]
  for (const bytes of attempts) {
    const before = upstream.requests.length
    const result = await exchange(gateway.port, bytes)
    t.ok(isRefusal(result, 400), `absolute-form and other non-path targets are refused: ${bytes.split('\r\n')[0]}`)
    t.equal(upstream.requests.length, before, 'and not forwarded to the upstream either')
  }

  // Paths that merely look like authorities go to the configured upstream, as paths.
  for (const target of [`//${OTHER}/steal`, `/\\\\${OTHER}/steal`, `/@${OTHER}/steal`]) {
    const result = await exchange(gateway.port, `GET ${target} HTTP/1.1\r\nHost: ${OTHER}\r\nConnection: close\r\n\r\n`)
    t.equal(result.responses[0]?.status, 200, `${target} is a path on the upstream`)
    t.equal(upstream.requests.at(-1)?.url, target)
  }

  // A Host header naming another server only names it: the request still goes to the upstream.
  const hosted = await exchange(gateway.port, `GET /by-host HTTP/1.1\r\nHost: ${OTHER}\r\nConnection: close\r\n\r\n`)
  t.equal(hosted.responses[0]?.status, 200)
  t.equal(upstream.requests.at(-1)?.url, '/by-host')

  // A WebSocket handshake with an absolute-form target.
  const upgrade = await exchange(gateway.port, `GET http://${OTHER}/ws HTTP/1.1\r\nHost: ${OTHER}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n`
    + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', { giveUpMs: 5000 })
  t.notOk(upgrade.responses.some((r) => r.status === 101), 'no tunnel is opened')

  t.equal(elsewhere.connections(), 0, 'the other server was never contacted')
})

t.test('CONNECT is refused and tunnels nowhere', async (t) => {
  const before = upstream.requests.length
  const result = await exchange(gateway.port, `CONNECT ${OTHER} HTTP/1.1\r\nHost: ${OTHER}\r\n\r\n`)
  t.ok(result.closed, 'the connection is closed')
  t.notOk(result.responses.some((r) => r.status >= 200 && r.status < 300), `no 2xx (got ${JSON.stringify(result.raw.slice(0, 60))})`)
  // Bytes sent after a refused CONNECT must not reach anyone either.
  const withPayload = await exchange(gateway.port, [`CONNECT ${OTHER} HTTP/1.1\r\nHost: ${OTHER}\r\n\r\n`, `GET /through-tunnel HTTP/1.1\r\nHost: ${OTHER}\r\n\r\n`], { pauseMs: 50 })
  t.ok(withPayload.closed)
  t.equal(elsewhere.connections(), 0, 'the CONNECT target was never contacted')
  t.equal(upstream.requests.length, before, 'nor was anything forwarded upstream')
  t.equal((await normal()).status, 200, 'the gateway still serves')
})

t.test('a request with two Host headers is refused (RFC 9112 §3.2)', async (t) => {
  const before = upstream.requests.length
  const result = await exchange(gateway.port, `GET /two-hosts HTTP/1.1\r\nHost: ${HOST}\r\nHost: ${OTHER}\r\nConnection: close\r\n\r\n`)
  t.ok(isRefusal(result, 400), `refused (got ${JSON.stringify(result.raw.slice(0, 60))})`)
  t.equal(upstream.requests.length, before, 'not forwarded')
})

t.test('CR/LF cannot be smuggled into headers the upstream receives', async (t) => {
  for (const bytes of [
    `GET /crlf HTTP/1.1\r\nHost: ${HOST}\r\nX-Note: a\rX-Injected: yes\r\n\r\n`,
    `GET /crlf HTTP/1.1\r\nHost: ${HOST}\r\nX-Request-Id: abc\rX-Injected: yes\r\n\r\n`,
    `GET /crlf\rX-Injected: yes HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`,
  ]) {
    const before = upstream.requests.length
    t.ok(isRefusal(await exchange(gateway.port, bytes), 400), `refused: ${JSON.stringify(bytes.slice(0, 60))}`)
    t.equal(upstream.requests.length, before)
  }
  // Encoded CR LF in the target stays encoded: a path, not a header line.
  const encoded = await exchange(gateway.port, `GET /crlf%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)
  t.equal(encoded.responses[0]?.status, 200)
  const seen = upstream.requests.at(-1)!
  t.equal(seen.url, '/crlf%0d%0aX-Injected:%20yes')
  t.equal(seen.headers['x-injected'], undefined)
  t.notOk(/x-injected/i.test(Object.keys(encoded.responses[0]!.headers).join()), 'nor into the response')
})

t.test('a client cannot use Connection to strip the headers the gateway sets upstream', async (t) => {
  const body = 'name=mallory'
  const raw = await httpRequest(`${gateway.url}/upload`, {
    method: 'POST',
    headers: {
      connection: 'keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, Via, Host, Content-Length, Content-Type, Authorization',
      'x-forwarded-for': '6.6.6.6',
      'x-request-id': 'client-chosen-id',
      authorization: 'Bearer not-hop-by-hop-for-me',
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': String(body.length),
    },
    body,
  })
  t.equal(raw.status, 200)
  const seen = upstream.requests.at(-1)!
  t.equal(seen.url, '/upload')
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the gateway\'s, not the client\'s and not absent')
  t.equal(seen.headers['x-forwarded-proto'], 'http')
  t.equal(seen.headers['x-forwarded-host'], HOST)
  t.equal(seen.headers.via, '1.1 gateway')
  t.equal(seen.headers.host, HOST)
  t.equal(seen.headers['x-request-id'], raw.headers['x-request-id'], 'the request id upstream is the one the client is told')
  t.equal(seen.headers['x-request-id'], 'client-chosen-id', 'a well-formed id is kept even when named in Connection')
  t.equal(seen.body.toString(), body, 'the body arrives whole, framed by the gateway')
  t.ok(seen.complete)
  t.notMatch(String(seen.headers.connection ?? ''), /x-forwarded|x-request-id|via|host/i, 'the client\'s Connection list is not passed on')

  const smuggledViaKeepAlive = await httpRequest(`${gateway.url}/keepalive`, { headers: { connection: 'keep-alive, keep-alive', 'keep-alive': 'timeout=1000' } })
  t.equal(smuggledViaKeepAlive.status, 200)
  t.equal(upstream.requests.at(-1)!.headers['keep-alive'], undefined, 'Keep-Alive never crosses')
})

t.test('behind a trusted proxy, Connection cannot cut the X-Forwarded-For chain', async (t) => {
  const trusting = await startGateway(configFor(upstream.url, 'log: { requests: false }\ntrustedProxies: [loopback]\n'))
  t.teardown(() => trusting.stop())
  const raw = await httpRequest(`${trusting.url}/chain`, { headers: { connection: 'X-Forwarded-For', 'x-forwarded-for': '203.0.113.7' } })
  t.equal(raw.status, 200)
  t.equal(upstream.requests.at(-1)!.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1', 'the chain keeps the client and adds the peer')
})

t.test('an oversized head gets 431 and nothing is forwarded', async (t) => {
  const before = upstream.requests.length
  const big = await exchange(gateway.port, `GET /big HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`)
  t.ok(isRefusal(big, 431), 'one large header')
  const many = await exchange(gateway.port, `GET /many HTTP/1.1\r\nHost: ${HOST}\r\n${Array.from({ length: 1000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`)
  t.ok(isRefusal(many, 431), 'many small headers')
  const longTarget = await exchange(gateway.port, `GET /${'p'.repeat(10_000)} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`)
  t.ok(isRefusal(longTarget, 431) || isRefusal(longTarget, 414), 'a long request target')
  t.match(JSON.parse(big.responses[0]!.body), { status: 431, code: 'headers_too_large' })
  t.equal(upstream.requests.length, before)
  t.equal((await normal()).status, 200)
})

t.test('an oversized body gets 413 whether declared or chunked, and never reaches the upstream whole', async (t) => {
  const before = upstream.requests.length
  const declared = await exchange(gateway.port, `POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 101\r\n\r\n${'x'.repeat(101)}`, { responses: 1 })
  t.ok(isRefusal(declared, 413), 'by Content-Length, on the route limit')
  t.match(JSON.parse(declared.responses[0]!.body), { status: 413, code: 'body_too_large' })
  const global = await exchange(gateway.port, `POST /elsewhere HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(2000)}`, { responses: 1 })
  t.ok(isRefusal(global, 413), 'by Content-Length, on listen.maxBodySize')
  const expect = await exchange(gateway.port, `POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n`, { responses: 1 })
  t.equal(expect.responses[0]?.status, 413, 'with Expect: 100-continue, refused before the body is sent')
  const huge = await exchange(gateway.port, `POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 99999999999999999999999\r\n\r\n`)
  t.ok(isRefusal(huge, 413) || isRefusal(huge, 400), 'an absurd Content-Length')
  t.equal(upstream.requests.length, before, 'nothing declared too large was forwarded')

  const chunk = `${(60).toString(16)}\r\n${'y'.repeat(60)}\r\n`
  const chunked = await exchange(gateway.port, [`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}`, chunk, chunk, '0\r\n\r\n'], { pauseMs: 20, responses: 1 })
  t.equal(chunked.responses[0]?.status, 413, 'a chunked body is counted')
  t.ok(upstream.requests.slice(before).every((r) => !r.complete), 'the upstream never got a complete oversized body')
  t.equal((await normal()).status, 200)
})

t.test('slowloris: a head trickled slowly is cut by listen.timeouts.headers; others are served meanwhile', async (t) => {
  const before = upstream.requests.length
  // 100 header lines, 200ms apart, never finishing the head: 20 s of trickling against a 1 s timeout.
  const lines = [`GET /slow HTTP/1.1\r\nHost: ${HOST}\r\n`, ...Array.from({ length: 100 }, (_, i) => `X-Slow-${i}: ${i}\r\n`)]
  const slow = Array.from({ length: 5 }, () => exchange(gateway.port, lines, { pauseMs: 200, giveUpMs: 40_000 }))
  await new Promise((resolve) => setTimeout(resolve, 300))
  const others = await Promise.all([normal('/during/1'), normal('/during/2'), normal('/during/3')])
  t.same(others.map((o) => o.status), [200, 200, 200], 'normal clients get normal answers meanwhile')
  const results = await Promise.all(slow)
  for (const result of results) {
    t.ok(result.closed, 'the slow connection is closed by the gateway')
    t.ok(result.written < lines.length, `while the client was still trickling (${result.written} of ${lines.length} lines sent)`)
    t.notOk(result.responses.some((r) => r.status === 200), 'and never answered as a success')
    t.ok(result.responses.length === 0 || isRefusal(result, 408), `with 408 if anything (got ${JSON.stringify(result.raw.slice(0, 40))})`)
  }
  t.equal(upstream.requests.slice(before).filter((r) => r.url === '/slow').length, 0, 'nothing of it was forwarded')
})

t.test('a slow body is cut by listen.timeouts.request; others are served meanwhile', async (t) => {
  const before = upstream.requests.length
  // 100 one-byte pieces of a declared 100-byte body, 200ms apart: 20 s against a 2 s timeout.
  const pieces = [`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 100\r\n\r\n`, ...Array.from({ length: 100 }, () => 'z')]
  const slow = Array.from({ length: 3 }, () => exchange(gateway.port, pieces, { pauseMs: 200, giveUpMs: 40_000 }))
  await until(() => upstream.requests.slice(before).filter((r) => r.url === '/upload').length === 3)
  const others = await Promise.all([normal('/during/4'), normal('/during/5')])
  t.same(others.map((o) => o.status), [200, 200], 'normal clients get normal answers meanwhile')
  const results = await Promise.all(slow)
  for (const result of results) {
    t.ok(result.closed, 'the slow upload is cut off')
    t.ok(result.written < pieces.length, `while the client was still sending (${result.written} of ${pieces.length} pieces sent)`)
    t.notOk(result.responses.some((r) => r.status === 200), 'and never answered as a success')
  }
  const uploads = upstream.requests.slice(before).filter((r) => r.url === '/upload')
  await until(() => uploads.every((r) => r.body.length < 100 || r.complete))
  t.ok(uploads.every((r) => !r.complete), 'the upstream never got the whole body')
})
