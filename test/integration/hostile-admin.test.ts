// The admin listener under attack: POST /cache/purge and POST /reload refuse without the admin token and
// with a wrong one, and a refused call changes nothing (the cached entry stays, the old config keeps
// serving); the listener binds only to admin.host, and the proxy port does not serve admin endpoints.
import t from 'tap'
import { connect } from 'node:net'
import { startGateway } from '../helpers/gateway.ts'
import { startRecordingUpstream } from '../helpers/raw-http.ts'
import { httpRequest } from '../helpers/http.ts'

const TOKEN = 'correct-horse-battery-staple'
const upstream = await startRecordingUpstream((req, res) => {
  const body = JSON.stringify({ url: req.url })
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'max-age=300' })
  res.end(body)
})
t.teardown(() => upstream.close())

const configText = (extra: string, admin: string) => `
listen: { port: \${PORT} }
admin: ${admin}
upstream: { url: ${upstream.url} }
log: { requests: false }
routes:
  - { name: page, match: GET /page, cache: { ttl: 5m } }
${extra}`

const ADMIN = `{ host: 127.0.0.2, port: \${ADMIN_PORT}, token: ${TOKEN} }`
const gateway = await startGateway(configText('', ADMIN))
t.teardown(() => gateway.stop())
const admin = `http://127.0.0.2:${gateway.adminPort}`

const noToken = await startGateway(configText('', '{ host: "::1", port: ${ADMIN_PORT} }'))
t.teardown(() => noToken.stop())

/** Requests for /page the upstream received. */
const pageFetches = () => upstream.requests.filter((r) => r.url === '/page').length

const REFUSED_CREDENTIALS: Array<[string, Record<string, string>]> = [
  ['no Authorization header', {}],
  ['an empty bearer token', { authorization: 'Bearer ' }],
  ['a wrong token of the same length', { authorization: `Bearer ${'x'.repeat(TOKEN.length)}` }],
  ['a wrong, shorter token', { authorization: 'Bearer correct' }],
  ['a longer token that starts with the right one', { authorization: `Bearer ${TOKEN}x` }],
  ['the token as Basic credentials', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
  ['the token in another header', { 'x-admin-token': TOKEN, 'x-api-key': TOKEN }],
]

t.test('POST /cache/purge refuses without the right token, and a refusal purges nothing', async (t) => {
  await fetch(`${gateway.url}/page`).then((r) => r.arrayBuffer())
  t.equal((await fetch(`${gateway.url}/page`)).headers.get('x-cache'), 'HIT', 'the entry is cached')
  const body = JSON.stringify({ urls: ['/page'] })
  for (const [what, headers] of REFUSED_CREDENTIALS) {
    const res = await httpRequest(`${admin}/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
    t.ok(res.status === 401 || res.status === 403, `${what}: ${res.status}`)
  }
  const inQuery = await httpRequest(`${admin}/cache/purge?token=${TOKEN}`, { method: 'POST', body })
  t.ok(inQuery.status === 401 || inQuery.status === 403, `the token in the query: ${inQuery.status}`)
  const asGet = await httpRequest(`${admin}/cache/purge`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.not(asGet.status, 200, 'GET does not purge')
  const before = pageFetches()
  t.equal((await fetch(`${gateway.url}/page`)).headers.get('x-cache'), 'HIT', 'the entry survived every refused purge')
  t.equal(pageFetches(), before)

  const done = await httpRequest(`${admin}/cache/purge`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body })
  t.equal(done.status, 200, 'the right token purges')
  t.equal((await fetch(`${gateway.url}/page`)).headers.get('x-cache'), 'MISS', 'and the entry is gone (the check above can fail)')
})

t.test('POST /reload refuses without the right token, and the old config keeps serving', async (t) => {
  // The file on disk now refuses unmatched requests; only a reload would make it so.
  gateway.writeConfig(configText('unmatched: reject\n', ADMIN))
  const unmatched = async () => (await fetch(`${gateway.url}/not-a-route`)).status
  t.equal(await unmatched(), 200, 'before: unmatched requests are forwarded')
  for (const [what, headers] of REFUSED_CREDENTIALS) {
    const res = await httpRequest(`${admin}/reload`, { method: 'POST', headers })
    t.ok(res.status === 401 || res.status === 403, `${what}: ${res.status}`)
  }
  const asGet = await httpRequest(`${admin}/reload`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.not(asGet.status, 200, 'GET does not reload')
  t.equal(await unmatched(), 200, 'no refused call reloaded the config')
  t.notOk(gateway.logs.some((l) => l.event === 'config_reloaded'), 'nothing was reloaded')

  const done = await httpRequest(`${admin}/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(done.status, 200, 'the right token reloads')
  t.equal(await unmatched(), 404, 'and the new config serves (the check above can fail)')

  gateway.writeConfig(configText('', ADMIN))
  t.equal((await httpRequest(`${admin}/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, 'back to the first config')
})

t.test('with no admin.token configured, purge and reload are disabled', async (t) => {
  const base = `http://[::1]:${noToken.adminPort}`
  for (const path of ['/cache/purge', '/reload']) {
    for (const authorization of [undefined, 'Bearer ', 'Bearer anything']) {
      const res = await httpRequest(`${base}${path}`, { method: 'POST', headers: authorization === undefined ? {} : { authorization }, body: '{"urls":["/page"]}' })
      t.equal(res.status, 403, `${path} with ${authorization ?? 'no Authorization'}`)
    }
  }
})

/** Whether a TCP connection to host:port is accepted. */
const reachable = (host: string, port: number) => new Promise<boolean>((resolve) => {
  const socket = connect({ host, port })
  socket.once('connect', () => { socket.destroy(); resolve(true) })
  socket.once('error', () => resolve(false))
})

t.test('the admin listener binds only to admin.host', async (t) => {
  t.ok(await reachable('127.0.0.2', gateway.adminPort), 'reachable on 127.0.0.2 (admin.host)')
  t.equal((await httpRequest(`${admin}/healthz`)).status, 200)
  t.notOk(await reachable('127.0.0.1', gateway.adminPort), 'not on 127.0.0.1')
  t.ok(await reachable('::1', noToken.adminPort), 'reachable on ::1 (admin.host)')
  t.notOk(await reachable('127.0.0.1', noToken.adminPort), 'not on 127.0.0.1')
  t.notOk(await reachable('127.0.0.2', noToken.adminPort), 'not on 127.0.0.2')
})

t.test('the proxy port does not serve admin endpoints', async (t) => {
  await fetch(`${gateway.url}/page`).then((r) => r.arrayBuffer())
  const before = upstream.requests.length
  for (const path of ['/cache/purge', '/reload']) {
    const res = await httpRequest(`${gateway.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
    t.equal(res.status, 200)
    t.same(JSON.parse(res.body), { url: path }, `${path} on the proxy port is the upstream's path`)
  }
  const metrics = await httpRequest(`${gateway.url}/metrics`)
  t.notMatch(metrics.body, /gateway_requests_total/, 'no gateway metrics on the proxy port')
  t.equal(upstream.requests.length - before, 3, 'all three went to the upstream')
  t.equal((await fetch(`${gateway.url}/page`)).headers.get('x-cache'), 'HIT', 'and nothing was purged')
})
