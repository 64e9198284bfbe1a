import t from 'tap'
import { clientResponseHeaders, upstreamRequestHeaders, VIA } from '../../../gateway/upstream/headers.ts'

const facts = { peerAddress: '10.0.0.5', peerTrusted: false, requestId: 'rid', host: 'api.example' }

t.test('hop-by-hop headers and those named in Connection are dropped', async (t) => {
  const out = upstreamRequestHeaders({
    connection: 'keep-alive, X-Hop', 'x-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers', 'transfer-encoding': 'chunked',
    upgrade: 'h2c', 'proxy-authorization': 'Basic x', expect: '100-continue', accept: 'application/json', cookie: 'a=1',
  }, facts)
  t.same(Object.keys(out).sort(), ['accept', 'cookie', 'host', 'via', 'x-forwarded-for', 'x-forwarded-proto', 'x-request-id'].sort())
})

t.test('from an untrusted peer, X-Forwarded-* are replaced', async (t) => {
  const out = upstreamRequestHeaders({ host: 'public.example', 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil',
    forwarded: 'for=6.6.6.6;host=evil', 'x-forwarded-port': '6666', 'x-forwarded-prefix': '/evil' }, facts)
  t.equal(out.forwarded, undefined, 'Forwarded (RFC 7239) is not believed either')
  t.equal(out['x-forwarded-port'], undefined)
  t.equal(out['x-forwarded-prefix'], undefined)
  t.equal(out['x-forwarded-for'], '10.0.0.5')
  t.equal(out['x-forwarded-proto'], 'http')
  t.equal(out['x-forwarded-host'], 'public.example')
  t.equal(out.host, 'api.example')
  t.equal(out['x-request-id'], 'rid')
})

t.test('from a trusted proxy, the peer is appended and its forwarded facts are kept', async (t) => {
  const out = upstreamRequestHeaders({ host: 'internal', 'x-forwarded-for': '1.2.3.4, 5.6.7.8', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example', via: '1.1 lb' },
    { ...facts, peerTrusted: true })
  t.equal(out['x-forwarded-for'], '1.2.3.4, 5.6.7.8, 10.0.0.5')
  t.equal(out['x-forwarded-proto'], 'https')
  t.equal(out['x-forwarded-host'], 'public.example')
  t.equal(out.via, `1.1 lb, ${VIA}`)
})

t.test('response headers keep every Set-Cookie and lose hop-by-hop ones', async (t) => {
  const out = clientResponseHeaders({ 'set-cookie': ['a=1', 'b=2'], connection: 'close', 'transfer-encoding': 'chunked', 'content-type': 'text/plain', 'keep-alive': 'timeout=4' })
  t.same(out, { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain', via: VIA })
})
