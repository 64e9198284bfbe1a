// Request smuggling: ambiguous framing sent as raw bytes to a real gateway in front of a recording upstream.
// Each attempt must be refused (400 problem+json, or the connection closed), or forwarded as exactly one
// well-formed request; the request hidden inside it (GET /smuggled) must never reach the upstream, and the
// next client's request must get its own answer (the gateway's upstream connections are not desynchronised).
import t from 'tap'
import { configFor, startGateway } from '../helpers/gateway.ts'
import { exchange, isRefusal, startRecordingUpstream, type Exchange, type RecordedRequest } from '../helpers/raw-http.ts'

const upstream = await startRecordingUpstream()
const gateway = await startGateway(configFor(upstream.url, `
log: { requests: false }
routes:
  - { name: submit, match: POST /submit }
`))
t.teardown(async () => { await gateway.stop(); await upstream.close() })

const HOST = `127.0.0.1:${gateway.port}`
const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`
const hex = (text: string) => Buffer.byteLength(text).toString(16)

interface Attempt {
  name: string
  bytes: string | Buffer
  /**
   * refuse: must be refused, and nothing may reach the upstream.
   * refuse-late: must be refused; the head may have been forwarded already (the body streams), but the
   *   upstream must never see a complete request.
   * either: refusing is fine; forwarding is fine if exactly one well-formed, complete request arrives.
   */
  expect: 'refuse' | 'refuse-late' | 'either'
  /** For `either`: the body the upstream must get if the request is forwarded. */
  body?: string
}

const chunkedSmuggle = `0\r\n\r\n${SMUGGLED}`
const ATTEMPTS: Attempt[] = [
  {
    name: 'CL.TE: Content-Length and Transfer-Encoding: chunked together',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${Buffer.byteLength(chunkedSmuggle)}\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'TE.CL: Transfer-Encoding: chunked first, a short Content-Length after',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${hex(SMUGGLED)}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    expect: 'refuse',
  },
  {
    name: 'two different Content-Length headers',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 0\r\nContent-Length: ${Buffer.byteLength(SMUGGLED)}\r\n\r\n${SMUGGLED}`,
    expect: 'refuse',
  },
  {
    name: 'a Content-Length list with different values',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 0, ${Buffer.byteLength(SMUGGLED)}\r\n\r\n${SMUGGLED}`,
    expect: 'refuse',
  },
  {
    name: 'two equal Content-Length headers',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`,
    expect: 'either',
    body: 'hello',
  },
  {
    name: 'a signed Content-Length',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: +5\r\n\r\nhello${SMUGGLED}`,
    expect: 'refuse',
  },
  {
    name: 'a negative Content-Length',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: -1\r\n\r\n${SMUGGLED}`,
    expect: 'refuse',
  },
  {
    name: 'Transfer-Encoding: chunked, identity (chunked not last)',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked, identity\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'Transfer-Encoding: xchunked',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: xchunked\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'Transfer-Encoding: xchunked with a Content-Length',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${Buffer.byteLength(chunkedSmuggle)}\r\nTransfer-Encoding: xchunked\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'two Transfer-Encoding headers: chunked, then identity',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'Transfer-Encoding with whitespace before the colon',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding : chunked\r\nContent-Length: ${Buffer.byteLength(chunkedSmuggle)}\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'Transfer-Encoding value with leading whitespace (" chunked", plain OWS: one chunked request)',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding:  chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    expect: 'either',
    body: 'hello',
  },
  {
    name: 'Transfer-Encoding value with a leading tab and a Content-Length',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${Buffer.byteLength(chunkedSmuggle)}\r\nTransfer-Encoding:\tchunked\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'Transfer-Encoding folded onto a continuation line (obs-fold)',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${Buffer.byteLength(chunkedSmuggle)}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'a Transfer-Encoding line hidden as the continuation of another header (obs-fold)',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nX-Padding: a\r\n Transfer-Encoding: chunked\r\nContent-Length: ${Buffer.byteLength(chunkedSmuggle)}\r\n\r\n${chunkedSmuggle}`,
    expect: 'refuse',
  },
  {
    name: 'an obs-fold continuation line in an ordinary header',
    bytes: `GET /fold HTTP/1.1\r\nHost: ${HOST}\r\nX-Long: first\r\n\tsecond\r\n\r\n`,
    expect: 'refuse',
  },
  {
    name: 'bare LF line endings',
    bytes: `GET /lf HTTP/1.1\nHost: ${HOST}\n\n${SMUGGLED}`,
    expect: 'refuse',
  },
  {
    name: 'a bare LF hiding a Content-Length among CRLF lines',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nX-A: 1\nContent-Length: ${Buffer.byteLength(SMUGGLED)}\r\n\r\n${SMUGGLED}`,
    expect: 'refuse',
  },
  {
    name: 'a bare CR inside a header value',
    bytes: `GET /cr HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\rContent-Length: ${Buffer.byteLength(SMUGGLED)}\r\n\r\n${SMUGGLED}`,
    expect: 'refuse',
  },
  {
    name: 'a NUL inside a header value',
    bytes: `GET /nul HTTP/1.1\r\nHost: ${HOST}\r\nX-A: a\u0000b\r\n\r\n`,
    expect: 'refuse',
  },
  {
    name: 'a NUL in the request target',
    bytes: `GET /nul\u0000x HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`,
    expect: 'refuse',
  },
  {
    name: 'a chunk size that is not hex',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    expect: 'refuse-late',
  },
  {
    name: 'a negative chunk size',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n${SMUGGLED}\r\n0\r\n\r\n`,
    expect: 'refuse-late',
  },
  {
    name: 'a 0x-prefixed chunk size',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n`,
    expect: 'refuse-late',
  },
  {
    name: 'a chunk size that overflows 64 bits',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n`,
    expect: 'refuse-late',
  },
  {
    name: 'chunk data longer than its size',
    bytes: `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nhello\r\n0\r\n\r\n${SMUGGLED}`,
    expect: 'refuse-late',
  },
  {
    name: 'HTTP/1.0 with Transfer-Encoding: chunked',
    bytes: `POST /submit HTTP/1.0\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedSmuggle}`,
    expect: 'either',
    body: '',
  },
]

/** Requests the upstream received whose target is the smuggled one. */
const smuggledSeen = () => upstream.requests.filter((r) => r.url.includes('smuggled')).length

for (const attempt of ATTEMPTS) {
  t.test(attempt.name, async (t) => {
    const before = upstream.requests.length
    const result: Exchange = await exchange(gateway.port, attempt.bytes)
    const refused = isRefusal(result, 400)
    // A victim on another connection right after: it must get its own answer, from its own request.
    const victim = await fetch(`${gateway.url}/victim?after=${encodeURIComponent(attempt.name)}`)
    t.equal(victim.status, 200)
    t.match(await victim.json(), { method: 'GET', url: `/victim?after=${encodeURIComponent(attempt.name)}` }, 'the next client gets its own answer')
    const forwarded: RecordedRequest[] = upstream.requests.slice(before).filter((r) => !r.url.startsWith('/victim'))
    t.equal(smuggledSeen(), 0, 'the smuggled request never reaches the upstream')
    t.equal(upstream.requests.slice(before).filter((r) => r.url.startsWith('/victim')).length, 1, 'exactly one victim request upstream')

    if (attempt.expect === 'refuse') {
      t.ok(refused, `refused with a 400 problem or a closed connection (got ${JSON.stringify(result.raw.slice(0, 120))})`)
      t.equal(forwarded.length, 0, 'nothing was forwarded')
    } else if (attempt.expect === 'refuse-late') {
      t.ok(result.responses.every((r) => r.status !== 200), `never answered as a success (got ${JSON.stringify(result.raw.slice(0, 120))})`)
      t.ok(result.closed, 'the connection is closed')
      t.ok(forwarded.length <= 1, 'at most the one request head went upstream')
      t.equal(forwarded.filter((r) => r.complete).length, 0, 'the upstream never received a complete request')
    } else {
      t.ok(forwarded.length <= 1, 'at most one request went upstream')
      if (!refused) {
        t.equal(forwarded.length, 1, 'forwarded once')
        t.ok(forwarded[0]!.complete, 'as a complete request')
        t.equal(forwarded[0]!.body.toString(), attempt.body, 'with the body the client framed')
        t.equal(result.responses.length, 1, 'one answer')
        t.equal(result.responses[0]!.status, 200)
        // The gateway frames the body itself: a single Content-Length or chunked, never both.
        const framing = forwarded[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
          .filter((n) => n === 'content-length' || n === 'transfer-encoding')
        t.equal(framing.length, 1, `one framing header upstream (got ${framing.join(', ')})`)
      }
    }
  })
}

t.test('a smuggled request inside a well-formed body stays body', async (t) => {
  // Not an attack on the gateway's parser but on the upstream's: the body is data and must arrive as data.
  const before = upstream.requests.length
  const body = `${SMUGGLED}${SMUGGLED}`
  const result = await exchange(gateway.port, `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  t.equal(result.responses[0]?.status, 200)
  const forwarded = upstream.requests.slice(before)
  t.equal(forwarded.length, 1)
  t.equal(forwarded[0]!.body.toString(), body, 'byte for byte, as the body')
  t.equal(smuggledSeen(), 0)
})

t.test('pipelined requests on one connection are answered in order, each forwarded once', async (t) => {
  const before = upstream.requests.length
  const one = `GET /pipelined/1 HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`
  const two = `POST /submit HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 3\r\n\r\nabc`
  const three = `GET /pipelined/3 HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`
  const result = await exchange(gateway.port, one + two + three)
  t.same(result.responses.map((r) => r.status), [200, 200, 200])
  t.same(result.responses.map((r) => (JSON.parse(r.body) as { url: string }).url), ['/pipelined/1', '/submit', '/pipelined/3'])
  t.same(upstream.requests.slice(before).map((r) => r.url).sort(), ['/pipelined/1', '/pipelined/3', '/submit'])
})
