// Cache poisoning and cache deception against a real gateway with a real upstream that behaves like a
// careless framework: it reflects request headers that are not part of the cache key into cacheable bodies,
// reads bodies of GET requests, resolves paths leniently, and marks personal answers `public`. An attacker's
// request may do what it likes to its own answer; the next, clean client must get the clean answer, and
// nobody may ever get someone else's personal data.
import t, { type Test } from 'tap'
import type { ServerResponse } from 'node:http'
import { SignJWT } from 'jose'
import { startGateway } from '../helpers/gateway.ts'
import { asLenientUpstreamSeesIt, exchange, startRecordingUpstream, type RecordedRequest } from '../helpers/raw-http.ts'

const SECRET = 'hostile-cache-secret'
const token = (sub: string) => new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('1h')
  .sign(new TextEncoder().encode(SECRET))
const alice = await token('alice')
const bob = await token('bob')

/** The bearer's subject, unverified: the upstream trusts the gateway in front of it (not for the gateway's own use). */
const subjectOf = (req: RecordedRequest) => {
  const jwt = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1]
  if (!jwt) return null
  try { return (JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { sub?: string }).sub ?? null } catch { return null }
}

const upstream = await startRecordingUpstream((req: RecordedRequest, res: ServerResponse) => {
  const { method, path } = asLenientUpstreamSeesIt(req)
  const send = (status: number, body: unknown, cacheControl?: string) => {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(cacheControl ? { 'cache-control': cacheControl } : {}) })
    res.end(text)
  }
  const lead = /^\/api\/leads\/(\d+)(\/.*)?$/.exec(path)
  if (lead) {
    // A personal answer wrongly marked public, as a CDN rule for ".css" would: only the gateway's scope protects it.
    const owner = subjectOf(req)
    if (!owner) return send(401, { error: 'login required' })
    return send(200, { lead: lead[1], owner, secret: `${owner}'s pipeline` }, 'public, max-age=60')
  }
  // Everything else reflects what a careless framework would use to build its page.
  const query = new URL(req.url, 'http://x').searchParams
  send(200, {
    path,
    method,
    host: req.headers.host,
    forwardedHost: req.headers['x-forwarded-host'],
    forwardedProto: req.headers['x-forwarded-proto'],
    forwardedScheme: req.headers['x-forwarded-scheme'],
    forwarded: req.headers.forwarded,
    originalUrl: req.headers['x-original-url'],
    rewriteUrl: req.headers['x-rewrite-url'],
    requestBody: req.body.toString(),
    lang: query.getAll('lang').at(-1) ?? null,
  }, 'public, max-age=60')
}, '127.0.0.1')

const gateway = await startGateway(`
listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
log: { requests: false }
identity: { jwt: { secret: ${SECRET} } }
routes:
  - { name: page, match: GET /page, cache: { ttl: 1m } }
  - { name: lead, match: GET /api/leads/:id, cache: { ttl: 1m, scope: user, tags: ["lead:{id}"] } }
  - { name: assets, match: GET /assets/*, cache: { ttl: 1h, scope: public } }
`)
t.teardown(async () => { await gateway.stop(); await upstream.close() })

const HOST = `127.0.0.1:${gateway.port}`
interface Page { path: string; method: string; host: string; forwardedHost?: string; forwardedProto?: string; forwardedScheme?: string
  forwarded?: string; originalUrl?: string; rewriteUrl?: string; requestBody: string; lang: string | null }

const get = async (path: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${gateway.url}${path}`, { headers })
  return { status: res.status, xCache: res.headers.get('x-cache'), text: await res.text() }
}
/** A raw GET (for what fetch will not send: bodies on GET, odd paths, Host games). */
const rawGet = async (target: string, extra = '', body = '') => {
  const result = await exchange(gateway.port, `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\n${extra}Connection: close\r\n\r\n${body}`)
  const first = result.responses[0]
  return { status: first?.status ?? 0, xCache: first?.headers['x-cache'] ?? null, text: first?.body ?? '' }
}

/** What a clean client must see on /page: only what it sent and what the gateway adds. */
const assertClean = (t: Test, text: string) => {
  t.notMatch(text, /evil|DELETE|admin/i, 'nothing of the attacker\'s request')
  t.match(JSON.parse(text) as Page, { path: '/page', method: 'GET', host: HOST, forwardedHost: HOST, forwardedProto: 'http', requestBody: '' })
}

t.test('control: a clean answer is cached (so the tests below would see a poisoned one)', async (t) => {
  const first = await get('/page?case=control')
  const second = await get('/page?case=control')
  t.equal(first.xCache, 'MISS')
  t.equal(second.xCache, 'HIT')
  t.equal(upstream.requests.filter((r) => r.url === '/page?case=control').length, 1)
  assertClean(t, second.text)
})

const UNKEYED: Array<[string, string]> = [
  ['X-Forwarded-Host', 'evil.example'],
  ['X-Forwarded-Scheme', 'evil'],
  ['X-Forwarded-Proto', 'evil'],
  ['Forwarded', 'host=evil.example;proto=evil'],
  ['X-Original-URL', '/admin/evil'],
  ['X-Rewrite-URL', '/admin/evil'],
  ['X-HTTP-Method-Override', 'DELETE'],
  ['X-HTTP-Method', 'DELETE'],
  ['X-Method-Override', 'DELETE'],
]

for (const [name, value] of UNKEYED) {
  t.test(`${name} from a client cannot poison the cached answer`, async (t) => {
    const path = `/page?case=${name}`
    const before = upstream.requests.length
    await get(path, { [name]: value })
    const victim = await get(path)
    assertClean(t, victim.text)
    t.ok(upstream.requests.length > before, 'the attack reached the upstream (the test is live)')
  })
}

t.test('a Host header naming another site is keyed: it cannot poison the real host\'s entry', async (t) => {
  const attack = await exchange(gateway.port, `GET /page?case=host-attack HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`)
  t.match(attack.responses[0]?.body, /evil\.example/, 'the attacker gets an answer for the host it named')
  assertClean(t, (await get('/page?case=host-attack')).text)
})

t.test('a body on a GET ("fat GET") cannot poison the cached answer', async (t) => {
  await rawGet('/page?case=fat', 'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\n', 'lang=evil123')
  assertClean(t, (await get('/page?case=fat')).text)
  await rawGet('/page?case=fat-chunked', 'Transfer-Encoding: chunked\r\n', 'c\r\nlang=evil123\r\n0\r\n\r\n')
  assertClean(t, (await get('/page?case=fat-chunked')).text)
})

t.test('a HEAD request does not store an empty body for GET', async (t) => {
  const head = await fetch(`${gateway.url}/page?case=head`, { method: 'HEAD' })
  t.equal(head.status, 200)
  const victim = await get('/page?case=head')
  assertClean(t, victim.text)
})

t.test('duplicate query parameters: reordering them cannot poison another order\'s entry', async (t) => {
  // The upstream takes the last `lang`; the cache must not treat ?lang=en&lang=evil and ?lang=evil&lang=en as one.
  await get('/page?case=dup&lang=en&lang=evil')
  const victim = await get('/page?case=dup&lang=evil&lang=en')
  t.equal((JSON.parse(victim.text) as Page).lang, 'en')
})

t.test('cache deception: a personal answer under a static-looking or odd path is never served to someone else', async (t) => {
  const deceptive = [
    '/api/leads/1/x.css', '/api/leads/1;x.css', '/api/leads/1%2fx.css', '/api/leads/1%2Fx.css', '/api/leads/1/..;/1/x.css',
    '/assets/../api/leads/1', '/assets/%2e%2e/api/leads/1', '/assets/..%2fapi/leads/1', '/assets/..;/api/leads/1',
    '/assets/x/..%2f..%2fapi/leads/1', '/api/leads/1?x.css', '/API/leads/1/style.css',
  ]
  for (const target of deceptive) {
    const victim = await rawGet(target, `Authorization: Bearer ${alice}\r\n`)
    t.equal(victim.status, 200, `${target}: the upstream answers alice with her lead (the lure works upstream)`)
    t.match(victim.text, /alice's pipeline/)
    const anonymous = await rawGet(target)
    t.notMatch(anonymous.text, /alice/, `${target}: an anonymous client never gets alice's data`)
    t.equal(anonymous.status, 401, `${target}: the anonymous request went to the upstream, which refused it`)
    const other = await rawGet(target, `Authorization: Bearer ${bob}\r\n`)
    t.notMatch(other.text, /alice/, `${target}: bob never gets alice's data`)
    t.match(other.text, /bob's pipeline/)
  }
})

t.test('a forged token cannot read what the verified user stored', async (t) => {
  await get('/api/leads/7', { authorization: `Bearer ${alice}` })
  const [header, payload] = alice.split('.')
  const forged = `${header}.${payload}.${Buffer.from('not the signature').toString('base64url')}`
  const res = await get('/api/leads/7', { authorization: `Bearer ${forged}` })
  t.not(res.xCache, 'HIT', 'not answered from alice\'s entry')
})
