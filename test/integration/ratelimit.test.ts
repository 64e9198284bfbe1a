// Rate limiting through real gateway processes, a real redis-server and the demo API.
import t from 'tap'
import { Redis } from 'ioredis'
import { startDemoUpstream, signDemoToken } from '../../deploy/demo-upstream/app.ts'
import { configFor, startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { startRedis } from '../helpers/redis.ts'

const demo = await startDemoUpstream()
const redis = await startRedis()
t.teardown(async () => { await demo.close(); await redis.stop() })

const LIMITS = `
identity: { jwt: { secret: demo-secret } }
rateLimits:
  default: { key: ip, limit: 1000/min }
routes:
  - name: login
    match: POST /auth/login
    rateLimit: { key: ip, limit: 5/min, block: 15m }
  - name: leads
    match: GET /api/leads
    rateLimit: { key: user, limit: 3/min }
  - name: lead
    match: GET /api/leads/:id
    rateLimit: { key: header:x-api-key, limit: 2/min }
  - name: dashboard
    match: GET /api/dashboard
    rateLimit: { key: ip, limit: 5/2s, burst: 5/1m }
`

const login = (gw: RunningGateway, headers: Record<string, string> = {}) => fetch(`${gw.url}/auth/login`, {
  method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: 'username=alice&password=wrong',
})

/** Upstream requests the gateway made for a route, from its log lines (upstreamStatus is null on 429). */
const upstreamCalls = (gw: RunningGateway, route: string) => gw.logs.filter((l) => l.msg === 'request' && l.route === route && l.upstreamStatus !== null).length

for (const shared of [false, true]) {
  t.test(`the original plan's check (${shared ? 'Redis' : 'in-process'}): 20 logins, the 6th and later get 429`, async (t) => {
    const gw = await startGateway(configFor(demo.url, `redis: { url: "${shared ? redis.url : ''}" }\n${LIMITS}`))
    t.teardown(() => gw.stop())
    const statuses: number[] = []
    let last: Response | undefined
    for (let i = 0; i < 20; i++) {
      last = await login(gw)
      statuses.push(last.status)
      if (last.status !== 429) await last.arrayBuffer()
    }
    t.same(statuses.slice(0, 5), [401, 401, 401, 401, 401], 'the first 5 reach the upstream')
    t.ok(statuses.slice(5).every((s) => s === 429), 'the rest are refused')
    t.equal(upstreamCalls(gw, 'login'), 5, 'the upstream saw exactly 5')
    t.equal(last!.headers.get('content-type'), 'application/problem+json')
    const retryAfter = Number(last!.headers.get('retry-after'))
    t.ok(retryAfter > 14 * 60 && retryAfter <= 15 * 60, `blocked for 15 minutes (Retry-After ${retryAfter})`)
    t.match(last!.headers.get('ratelimit'), /^"login";r=0;t=\d+$/)
    t.match(await last!.json(), { status: 429, code: 'rate_limited' })
  })
}

t.test('allowed responses carry RateLimit-Policy and RateLimit (and the legacy trio when asked)', async (t) => {
  const gw = await startGateway(configFor(demo.url, `rateLimiting: { legacyHeaders: true }\n${LIMITS}`))
  t.teardown(() => gw.stop())
  const res = await login(gw)
  t.equal(res.status, 401)
  t.equal(res.headers.get('ratelimit-policy'), '"default";q=1000;w=60, "login";q=5;w=60')
  t.match(res.headers.get('ratelimit'), /^"login";r=4;t=(60|59)$/, 'the strictest limit is reported')
  t.equal(res.headers.get('x-ratelimit-limit'), '5')
  t.equal(res.headers.get('x-ratelimit-remaining'), '4')
  t.equal(res.headers.get('retry-after'), null)
})

t.test('two gateways sharing Redis enforce one combined budget; a restart loses nothing', async (t) => {
  const config = configFor(demo.url, `redis: { url: "${redis.url}", keyPrefix: "combined:" }\n${LIMITS}`)
  const a = await startGateway(config)
  const b = await startGateway(config)
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await login(a)).status, (await login(b)).status)
  t.same(statuses.filter((s) => s === 401).length, 5, 'five tries in all, across both replicas')
  await a.stop()
  const again = await startGateway(config)
  t.teardown(async () => { await again.stop(); await b.stop() })
  t.equal((await login(again)).status, 429, 'the restarted replica remembers the spent budget')
})

t.test('X-Forwarded-For moves the key only when the peer is a trusted proxy', async (t) => {
  const untrusted = await startGateway(configFor(demo.url, LIMITS))
  const trusted = await startGateway(configFor(demo.url, `trustedProxies: [loopback]\n${LIMITS}`))
  t.teardown(async () => { await untrusted.stop(); await trusted.stop() })
  const spoofed: number[] = []
  for (let i = 0; i < 7; i++) spoofed.push((await login(untrusted, { 'x-forwarded-for': `198.51.100.${i}` })).status)
  t.same(spoofed.filter((s) => s === 429).length, 2, 'a spoofed header from an untrusted peer does not buy fresh budgets')
  const behindProxy: number[] = []
  for (let i = 0; i < 7; i++) behindProxy.push((await login(trusted, { 'x-forwarded-for': `198.51.100.${i}` })).status)
  t.notOk(behindProxy.includes(429), 'behind a trusted proxy every client has its own budget')
})

t.test('per-user limits: alice spending hers leaves bob\'s alone; a forged token counts against its IP', async (t) => {
  const gw = await startGateway(configFor(demo.url, `redis: { url: "${redis.url}", keyPrefix: "users:" }\n${LIMITS}`))
  t.teardown(() => gw.stop())
  const as = async (token: string) => (await fetch(`${gw.url}/api/leads?limit=1`, { headers: { authorization: `Bearer ${token}` } })).status
  const alice = await signDemoToken('alice')
  const bob = await signDemoToken('bob')
  const forged = await signDemoToken('bob', 'not-the-secret')
  t.same([await as(alice), await as(alice), await as(alice), await as(alice)], [200, 200, 200, 429])
  t.equal(await as(bob), 200, 'bob still has his budget')
  t.same([await as(forged), await as(forged), await as(forged)], [401, 401, 401], 'the forged token reaches the upstream, which refuses it')
  t.equal(await as(forged), 429, 'and it spent the IP budget, not bob\'s')
  t.equal(await as(bob), 200, 'bob is unaffected by the forgery')
  const client = new Redis(redis.url)
  const keys = await client.keys('users:*')
  client.disconnect()
  t.ok(keys.some((k) => k.endsWith(':user:alice')), 'alice has her own counter')
  t.notOk(keys.some((k) => k.includes('eyJ')), 'no raw token in any key')
})

t.test('API-key limits are keyed by a hash of the key', async (t) => {
  const gw = await startGateway(configFor(demo.url, `redis: { url: "${redis.url}", keyPrefix: "apikeys:" }\n${LIMITS}`))
  t.teardown(() => gw.stop())
  const token = await signDemoToken('alice')
  const get = async (key: string) => (await fetch(`${gw.url}/api/leads/1`, { headers: { authorization: `Bearer ${token}`, 'x-api-key': key } })).status
  t.same([await get('key-one-secret'), await get('key-one-secret'), await get('key-one-secret')], [200, 200, 429])
  t.equal(await get('key-two-secret'), 200, 'another key has its own budget')
  const client = new Redis(redis.url)
  const keys = await client.keys('apikeys:*')
  client.disconnect()
  t.ok(keys.length >= 2)
  t.notOk(keys.some((k) => k.includes('secret')), 'no raw API key in any Redis key')
})

t.test('burst: the allowance passes on top of the sustained rate, then the sustained rate applies', async (t) => {
  const gw = await startGateway(configFor(demo.url, LIMITS))
  t.teardown(() => gw.stop())
  const token = await signDemoToken('alice')
  const hit = async () => (await fetch(`${gw.url}/api/dashboard`, { headers: { authorization: `Bearer ${token}` } })).status
  const first: number[] = []
  for (let i = 0; i < 11; i++) first.push(await hit())
  t.same(first, [...Array(10).fill(200), 429], '5 sustained + 5 burst, then refused')
  await new Promise((resolve) => setTimeout(resolve, 2100))
  const next: number[] = []
  for (let i = 0; i < 6; i++) next.push(await hit())
  t.same(next, [200, 200, 200, 200, 200, 429], 'a new 2s window: the sustained 5 again, the burst is spent for the minute')
})

t.test('allowlisted addresses are never limited', async (t) => {
  const gw = await startGateway(configFor(demo.url, `rateLimiting: { allow: [127.0.0.0/8] }\n${LIMITS}`))
  t.teardown(() => gw.stop())
  const statuses: number[] = []
  for (let i = 0; i < 8; i++) statuses.push((await login(gw)).status)
  t.notOk(statuses.includes(429))
})

t.test('Redis killed mid-test: requests keep flowing within per-instance limits, no 5xx; back: shared again', async (t) => {
  const gw = await startGateway(configFor(demo.url, `redis: { url: "${redis.url}", keyPrefix: "outage:", timeout: 100ms }\n${LIMITS}`))
  t.teardown(() => gw.stop())
  t.equal((await login(gw)).status, 401)
  await redis.kill()
  const during: number[] = []
  for (let i = 0; i < 8; i++) during.push((await login(gw)).status)
  t.notOk(during.some((s) => s >= 500), `no 5xx during the outage (${during.join(',')})`)
  t.ok(during.includes(429), 'the in-memory insurance still enforces the limit')
  await gw.waitForLog((l) => l.event === 'redis_outage')
  t.equal(gw.logs.filter((l) => l.event === 'redis_outage').length, 1, 'the outage is reported once, not per request')
  const readyz = await fetch(`${gw.adminUrl}/readyz`)
  const ready = await readyz.json() as { checks: { redis: { ok: boolean } } }
  t.equal(ready.checks.redis.ok, false, '/readyz shows Redis down')
  t.equal(readyz.status, 200, 'but stays ready: the in-process fallback serves')
  await redis.restart()
  await gw.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('redis is back'), 15_000)
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const token = await signDemoToken('alice')
  await fetch(`${gw.url}/api/leads?limit=1`, { headers: { authorization: `Bearer ${token}` } })
  t.ok((await client.keys('outage:*')).length > 0, 'counters are written to Redis again')
})
