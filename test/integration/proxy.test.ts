// The gateway in front of the demo API: requests and responses cross it with proxy semantics intact.
import t from 'tap'
import { request } from 'node:http'
import { startDemoUpstream, signDemoToken } from '../../deploy/demo-upstream/app.ts'
import { configFor, startGateway } from '../helpers/gateway.ts'
import { startUpstream } from '../helpers/upstreams.ts'
import { httpRequest } from '../helpers/http.ts'

const demo = await startDemoUpstream()
const gateway = await startGateway(configFor(demo.url, `
routes:
  - { name: leads, match: GET /api/leads }
  - { name: lead, match: GET /api/leads/:id }
  - { name: login, match: POST /auth/login, maxBodySize: 64 }
`))
t.teardown(async () => { await gateway.stop(); await demo.close() })

const echo = async (headers: Record<string, string> = {}) => {
  const res = await fetch(`${gateway.url}/echo`, { headers })
  return { res, body: await res.json() as { headers: Record<string, string | string[]> } }
}

t.test('login and the caller\'s leads go through the gateway', async (t) => {
  const login = await fetch(`${gateway.url}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=alice&password=demo',
  })
  t.equal(login.status, 200)
  const { access_token: token } = await login.json() as { access_token: string }
  const leads = await fetch(`${gateway.url}/api/leads?limit=3`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(leads.status, 200)
  const body = await leads.json() as { items: Array<{ user_id: string }>; total: number }
  t.equal(body.items.length, 3)
  t.ok(body.items.every((lead) => lead.user_id === 'alice'))
  t.equal(leads.headers.get('via'), '1.1 gateway')
  const line = await gateway.waitForLog((l) => l.msg === 'request' && l.route === 'leads')
  t.match(line, { method: 'GET', path: '/api/leads', status: 200, upstreamStatus: 200, clientIp: '127.0.0.1' })
  t.type(line.durationMs, 'number')
  t.ok((line.bytesOut as number) > 0)
})

t.test('upstream statuses pass through unchanged', async (t) => {
  const bob = await signDemoToken('bob')
  const res = await fetch(`${gateway.url}/api/leads/1`, { headers: { authorization: `Bearer ${bob}` } })
  t.equal(res.status, 404, 'alice\'s lead is not bob\'s')
  t.equal((await fetch(`${gateway.url}/api/leads`)).status, 401)
})

t.test('X-Request-Id is generated, returned and forwarded, or passed through when well-formed', async (t) => {
  const generated = await echo()
  const id = generated.res.headers.get('x-request-id')
  t.match(id, /^[0-9a-f-]{36}$/)
  t.equal(generated.body.headers['x-request-id'], id)
  const passed = await echo({ 'x-request-id': 'abc-123' })
  t.equal(passed.res.headers.get('x-request-id'), 'abc-123')
  t.equal(passed.body.headers['x-request-id'], 'abc-123')
  const junk = await echo({ 'x-request-id': 'has spaces and <script>' })
  t.not(junk.res.headers.get('x-request-id'), 'has spaces and <script>')
})

t.test('hop-by-hop headers stop at the gateway; X-Forwarded-* and Via are set', async (t) => {
  const raw = await httpRequest(`${gateway.url}/echo`, {
    headers: { connection: 'keep-alive, x-private', 'x-private': 'secret', 'keep-alive': 'timeout=5', 'x-kept': 'yes' },
  })
  const body = JSON.parse(raw.body) as { headers: Record<string, string> }
  t.equal(body.headers['x-private'], undefined, 'a header named in Connection is hop-by-hop')
  t.equal(body.headers['keep-alive'], undefined)
  t.equal(body.headers['x-kept'], 'yes')
  t.equal(body.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(body.headers['x-forwarded-proto'], 'http')
  t.equal(body.headers['x-forwarded-host'], `127.0.0.1:${gateway.port}`)
  t.equal(body.headers.via, '1.1 gateway')
  t.equal(body.headers.host, `127.0.0.1:${gateway.port}`, 'Host is preserved by default')
})

t.test('a spoofed X-Forwarded-For from an untrusted peer is replaced, not believed', async (t) => {
  const { body } = await echo({ 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil.example' })
  t.equal(body.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(body.headers['x-forwarded-host'], `127.0.0.1:${gateway.port}`)
  const line = await gateway.waitForLog((l) => l.msg === 'request' && l.path === '/echo' && l.clientIp !== undefined)
  t.equal(line.clientIp, '127.0.0.1')
})

t.test('several Set-Cookie headers all reach the client', async (t) => {
  const cookies = await startUpstream((_req, res) => {
    res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly'])
    res.end('ok')
  })
  const gw = await startGateway(configFor(cookies.url))
  t.teardown(async () => { await gw.stop(); await cookies.close() })
  const res = await fetch(gw.url)
  t.same(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2; HttpOnly'])
})

t.test('answers reach the client byte for byte, every byte value, small (one write) and larger', async (t) => {
  const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  const bodies: Record<string, Buffer> = { '/small': every, '/larger': Buffer.concat(Array(40).fill(every)) }
  const bytes = await startUpstream((req, res) => {
    const body = bodies[req.url ?? '']!
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
    res.end(body)
  })
  const gw = await startGateway(configFor(bytes.url))
  t.teardown(async () => { await gw.stop(); await bytes.close() })
  for (const [path, body] of Object.entries(bodies)) {
    const res = await fetch(`${gw.url}${path}`)
    t.equal(res.headers.get('content-length'), String(body.length), `${path}: content-length`)
    t.ok(Buffer.from(await res.arrayBuffer()).equals(body), `${path}: the upstream's bytes`)
  }
})

t.test('bodies over the route limit get 413, by Content-Length and by counting a chunked body', async (t) => {
  const declared = await fetch(`${gateway.url}/auth/login`, { method: 'POST', body: 'x'.repeat(65) })
  t.equal(declared.status, 413)
  t.equal(declared.headers.get('content-type'), 'application/problem+json')
  t.match(await declared.json(), { status: 413, code: 'body_too_large', requestId: declared.headers.get('x-request-id') })
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${gateway.url}/auth/login`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume()
      resolve(res.statusCode!)
    })
    req.on('error', reject)
    req.write('x'.repeat(40))
    req.end('y'.repeat(40))
  })
  t.equal(status, 413)
})

t.test('a request head over listen.maxHeaderSize gets 431', async (t) => {
  const res = await fetch(`${gateway.url}/echo`, { headers: { 'x-big': 'a'.repeat(20_000) } })
  t.equal(res.status, 431)
  t.match(await res.json(), { code: 'headers_too_large' })
})
