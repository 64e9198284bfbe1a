// Rate-limit evasion: a login route limited to 5 tries a minute per IP, attacked with spoofed client-address
// headers, every spelling of the path a lenient upstream framework would still treat as the login (case,
// slashes, escapes, dot segments, a method override), rotating IPv6 addresses within one /64, and a fake
// WebSocket upgrade. The upstream counts the login attempts it actually received: never more than 5.
import t from 'tap'
import type { ServerResponse } from 'node:http'
import { startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { asLenientUpstreamSeesIt, exchange, startRecordingUpstream, type RecordedRequest } from '../helpers/raw-http.ts'

const isLogin = (req: RecordedRequest) => {
  const seen = asLenientUpstreamSeesIt(req)
  return seen.method === 'POST' && seen.path === '/api/auth/login'
}

const upstream = await startRecordingUpstream((req, res: ServerResponse) => {
  const login = isLogin(req)
  const body = JSON.stringify(login ? { error: 'invalid credentials' } : { url: req.url, method: req.method })
  res.writeHead(login ? 401 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
})

const LIMITS = `
log: { requests: false }
rateLimits:
  default: { key: ip, limit: 1000/min }
routes:
  - name: login
    match: POST /api/auth/login
    rateLimit: { key: ip, limit: 5/min }
  - name: leads
    match: GET /api/leads
    rateLimit: { key: ip, limit: 3/min }
`
const config = (extra = '', listen = '{ port: ${PORT} }') =>
  `listen: ${listen}\nadmin: { port: \${ADMIN_PORT} }\nupstream: { url: ${upstream.url} }\n${LIMITS}${extra}`

/** Login attempts the upstream received since `from`. */
const loginsSince = (from: number) => upstream.requests.slice(from).filter(isLogin).length

const CREDENTIALS = 'username=alice&password=guess'

// One gateway trusting nobody (each test is its own client: its own 127.0.0.x address), one behind a
// trusted proxy (clients told apart by X-Forwarded-For), one listening on IPv6.
t.teardown(() => upstream.close())
const direct = await startGateway(config())
t.teardown(() => direct.stop())
const proxied = await startGateway(config('trustedProxies: [loopback]\n'))
t.teardown(() => proxied.stop())
const ipv6 = await startGateway(config('', '{ host: "::1", port: ${PORT} }'))
t.teardown(() => ipv6.stop())

interface Client { gw: RunningGateway; localAddress?: string; host?: string }

const rawLogin = (client: Client, target: string, headers: Record<string, string> = {}, method = 'POST') => exchange(client.gw.port,
  `${method} ${target} HTTP/1.1\r\nHost: localhost:${client.gw.port}\r\nContent-Type: application/x-www-form-urlencoded\r\n`
  + `Content-Length: ${CREDENTIALS.length}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}Connection: close\r\n\r\n${CREDENTIALS}`,
  { localAddress: client.localAddress, host: client.host })

/** Sends `count` logins and returns their statuses. */
async function logins(client: Client, count: number, headers: (i: number) => Record<string, string> = () => ({})): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < count; i++) statuses.push((await rawLogin(client, '/api/auth/login', headers(i))).responses[0]?.status ?? 0)
  return statuses
}

t.test('spoofed client-address headers from an untrusted client change nothing', async (t) => {
  const client = { gw: direct, localAddress: '127.0.0.11' }
  const from = upstream.requests.length
  const statuses = await logins(client, 10, (i) => ({
    'X-Forwarded-For': `203.0.113.${i}`, 'X-Real-IP': `198.51.100.${i}`, Forwarded: `for=192.0.2.${i};proto=https`,
    'True-Client-IP': `192.0.2.${100 + i}`, 'CF-Connecting-IP': `192.0.2.${200 + i}`, 'X-Client-IP': `192.0.2.${50 + i}`,
  }))
  t.same(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429])
  t.equal(loginsSince(from), 5, 'the upstream saw 5 tries')
  t.same(await logins({ gw: direct, localAddress: '127.0.0.12' }, 1), [401], 'another address has its own budget')
})

t.test('spellings of the login path a lenient upstream treats as the login share its limit', async (t) => {
  const client = { gw: direct, localAddress: '127.0.0.13' }
  const from = upstream.requests.length
  t.same(await logins(client, 5), [401, 401, 401, 401, 401])
  const variants = [
    '/API/auth/login', '/api/AUTH/Login', '//api/auth/login', '/api//auth/login', '/api/auth/login/', '/api/auth/login//',
    '/api/%61uth/login', '/api/auth/%6C%6F%67%69%6E', '/api/x/../auth/login', '/api/./auth/login', '/api/auth/login/.',
    '/api/%2e%2e/api/auth/login', '/x/%2e%2e/api/auth/login', '/api%2fauth%2flogin', '/api/auth/login?x=1', '/api/auth/login?',
    '/api/auth/login;jsessionid=1', '/api;x/auth/login', '/api/x/..;/auth/login', '/../api/auth/login',
  ]
  for (const target of variants) {
    const result = await rawLogin(client, target)
    t.equal(result.responses[0]?.status, 429, `${target} is limited as the login`)
  }
  t.equal(loginsSince(from), 5, 'the upstream never saw a sixth try, however spelt')
})

t.test('a method override cannot turn another route into a login', async (t) => {
  const client = { gw: direct, localAddress: '127.0.0.14' }
  const from = upstream.requests.length
  t.same(await logins(client, 5), [401, 401, 401, 401, 401])
  for (const header of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override']) {
    for (const method of ['GET', 'PUT']) await rawLogin(client, '/api/auth/login', { [header]: 'POST' }, method)
  }
  t.equal(loginsSince(from), 5, 'the upstream never saw a sixth try')
})

t.test('a fake WebSocket upgrade does not skip the limit', async (t) => {
  const localAddress = '127.0.0.15'
  const from = upstream.requests.length
  const leads = async (headers = 'Connection: close\r\n') => (await exchange(direct.port,
    `GET /api/leads HTTP/1.1\r\nHost: localhost:${direct.port}\r\n${headers}\r\n`, { localAddress, giveUpMs: 5000 })).responses[0]?.status
  t.same([await leads(), await leads(), await leads(), await leads()], [200, 200, 200, 429])
  const status = await leads('Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n')
  t.equal(status, 429, 'the upgrade attempt is limited like any other request')
  t.equal(upstream.requests.slice(from).filter((r) => r.url === '/api/leads').length, 3, 'the upstream served 3 reads, no more')
})

t.test('behind trusted proxies the real client is the right-most untrusted address', async (t) => {
  const client = { gw: proxied }
  const from = upstream.requests.length
  // The trusted proxy appends the address it saw; whatever the client wrote before it is the client's say-so.
  const statuses = await logins(client, 8, (i) => ({ 'X-Forwarded-For': `203.0.113.${i}, 198.51.100.7` }))
  t.same(statuses, [401, 401, 401, 401, 401, 429, 429, 429])
  t.same(await logins(client, 1, () => ({ 'X-Forwarded-For': '198.51.100.8' })), [401], 'another client has its own budget')
  t.same(await logins(client, 1, () => ({ 'X-Forwarded-For': '::ffff:198.51.100.7' })), [429], 'the IPv4-mapped spelling is the same client')
  t.same(await logins(client, 1, () => ({ 'X-Forwarded-For': '198.51.100.7', 'X-Real-IP': '198.51.100.9', Forwarded: 'for=198.51.100.9' })), [429],
    'X-Real-IP and Forwarded are not believed instead')
  t.equal(loginsSince(from), 6)
})

t.test('rotating IPv6 addresses within one /64 shares one budget', async (t) => {
  // Only ::1 exists on the machine, so the addresses come through the trusted proxy (loopback).
  const client = { gw: proxied }
  const from = upstream.requests.length
  const inOne64 = ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2:1234:5678:9abc:def0',
    '2001:0db8:0001:0002:0000:0000:0000:0003', '2001:DB8:1:2::4', '2001:db8:1:2:a::5', '2001:db8:1:2::6']
  const statuses = await logins(client, inOne64.length, (i) => ({ 'X-Forwarded-For': inOne64[i]! }))
  t.same(statuses, [401, 401, 401, 401, 401, 429, 429, 429])
  t.same(await logins(client, 1, () => ({ 'X-Forwarded-For': '2001:db8:1:3::1' })), [401], 'the next /64 is another subscriber')
  t.equal(loginsSince(from), 6)
})

t.test('over real IPv6 sockets the client is ::1, whatever X-Forwarded-For says', async (t) => {
  const client = { gw: ipv6, host: '::1' }
  const from = upstream.requests.length
  t.same(await logins(client, 6, (i) => ({ 'X-Forwarded-For': `2001:db8::${i}` })), [401, 401, 401, 401, 401, 429])
  t.equal(upstream.requests.at(-1)!.headers['x-forwarded-for'], '::1', 'the upstream is told the real peer')
  t.equal(loginsSince(from), 5)
})
