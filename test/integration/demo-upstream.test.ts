import t from 'tap'
import { request as httpRequest, Agent } from 'node:http'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { SignJWT, jwtVerify, decodeProtectedHeader } from 'jose'
import { LEAD_STATUSES, MAX_BODY_BYTES, signDemoToken, startDemoUpstream } from '../../deploy/demo-upstream/app.ts'
import type { Lead } from '../../deploy/demo-upstream/app.ts'

const up = await startDemoUpstream()
t.teardown(() => up.close())

interface Reply {
  status: number
  headers: Headers
  body: any
}

// Every JSON reply must say so; 204 has no body at all.
async function call(path: string, init: RequestInit & { token?: string; json?: unknown } = {}, base = up.url): Promise<Reply> {
  const headers = new Headers(init.headers)
  if (init.token) headers.set('authorization', `Bearer ${init.token}`)
  let body = init.body
  if (init.json !== undefined) {
    headers.set('content-type', 'application/json')
    body = JSON.stringify(init.json)
  }
  const res = await fetch(base + path, { ...init, headers, body })
  const text = await res.text()
  if (res.status === 204) return { status: 204, headers: res.headers, body: text }
  if (res.headers.get('content-type') !== 'application/json') throw new Error(`not JSON: ${res.headers.get('content-type')}`)
  return { status: res.status, headers: res.headers, body: JSON.parse(text) }
}

async function loginAs(user: string, base = up.url): Promise<string> {
  const r = await call('/auth/login', { method: 'POST', json: { username: user, password: 'demo' } }, base)
  if (r.status !== 200) throw new Error(`login failed: ${r.status}`)
  return r.body.access_token as string
}

const alice = await loginAs('alice')
const bob = await loginAs('bob')

async function allLeads(token: string): Promise<Lead[]> {
  const out: Lead[] = []
  for (let offset = 0; ; offset += 500) {
    const r = await call(`/api/leads?limit=500&offset=${offset}`, { token })
    out.push(...(r.body.items as Lead[]))
    if (out.length >= r.body.total) return out
  }
}

t.test('healthz', async (t) => {
  const r = await call('/healthz')
  t.equal(r.status, 200)
  t.same(r.body, { status: 'ok' })
})

t.test('login', async (t) => {
  t.test('JSON body issues an HS256 token for the user, valid one hour', async (t) => {
    const r = await call('/auth/login', { method: 'POST', json: { username: 'alice', password: 'demo' } })
    t.equal(r.status, 200)
    t.equal(r.body.token_type, 'bearer')
    t.equal(decodeProtectedHeader(r.body.access_token).alg, 'HS256')
    const { payload } = await jwtVerify(r.body.access_token, new TextEncoder().encode('demo-secret'))
    t.equal(payload.sub, 'alice')
    t.type(payload.iat, 'number')
    t.equal((payload.exp as number) - (payload.iat as number), 3600)
  })
  t.test('form body', async (t) => {
    const r = await call('/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'username=bob&password=demo',
    })
    t.equal(r.status, 200)
    const { payload } = await jwtVerify(r.body.access_token, new TextEncoder().encode('demo-secret'))
    t.equal(payload.sub, 'bob')
  })
  t.test('wrong credentials are 401', async (t) => {
    for (const json of [{ username: 'alice', password: 'nope' }, { username: 'mallory', password: 'demo' }]) {
      const r = await call('/auth/login', { method: 'POST', json })
      t.equal(r.status, 401)
      t.same(r.body, { detail: 'Incorrect username or password' })
    }
  })
  t.test('malformed bodies are 422 with a FastAPI-style detail', async (t) => {
    const bad: RequestInit[] = [
      { headers: { 'content-type': 'application/json' }, body: '{not json' },
      { headers: { 'content-type': 'application/json' }, body: '["alice","demo"]' },
      { headers: { 'content-type': 'application/json' }, body: '{"username":"alice"}' },
      { headers: { 'content-type': 'application/json' }, body: '{"username":"alice","password":1}' },
      { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=alice' },
      {},
    ]
    for (const init of bad) {
      const r = await call('/auth/login', { method: 'POST', ...init })
      t.equal(r.status, 422, String(init.body))
      t.ok(Array.isArray(r.body.detail) && r.body.detail.length > 0)
    }
    const r = await call('/auth/login', { method: 'POST', json: {} })
    t.same(r.body.detail.map((e: { loc: string[] }) => e.loc), [['body', 'username'], ['body', 'password']])
  })
})

t.test('password reset', async (t) => {
  const r = await call('/auth/password-reset', { method: 'POST', json: { email: 'nobody@example.com' } })
  t.equal(r.status, 202)
  t.same(r.body, { detail: 'If the address exists, a reset link was sent' })
  t.equal((await call('/auth/password-reset', { method: 'POST', json: {} })).status, 422)
})

t.test('/api requires a valid bearer token', async (t) => {
  const secret = new TextEncoder().encode('demo-secret')
  const now = Math.floor(Date.now() / 1000)
  const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice')
    .setIssuedAt(now - 7200).setExpirationTime(now - 3600).sign(secret)
  const hs512 = await new SignJWT({}).setProtectedHeader({ alg: 'HS512' }).setSubject('alice')
    .setExpirationTime('1h').sign(new Uint8Array(64).fill(7))
  const noSub = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(secret)
  const cases: [string, Record<string, string>][] = [
    ['missing', {}],
    ['garbage', { authorization: 'Bearer not.a.jwt' }],
    ['other scheme', { authorization: `Basic ${alice}` }],
    ['other secret', { authorization: `Bearer ${await signDemoToken('alice', 'other-secret')}` }],
    ['expired', { authorization: `Bearer ${expired}` }],
    ['wrong alg', { authorization: `Bearer ${hs512}` }],
    ['no sub', { authorization: `Bearer ${noSub}` }],
  ]
  for (const [name, headers] of cases) {
    for (const path of ['/api/leads', '/api/leads/1', '/api/dashboard', '/api/nope']) {
      const r = await call(path, { headers })
      t.equal(r.status, 401, `${name} ${path}`)
      t.same(r.body, { detail: 'Not authenticated' })
      t.equal(r.headers.get('www-authenticate'), 'Bearer')
    }
  }
  t.equal((await call('/api/dashboard', { headers: { authorization: `bearer ${alice}` } })).status, 200, 'scheme is case-insensitive')
})

t.test('listing leads', async (t) => {
  const r = await call('/api/leads', { token: alice })
  t.equal(r.status, 200)
  t.equal(r.body.total, 2000)
  t.equal(r.body.items.length, 50, 'default limit')
  const lead = r.body.items[0] as Lead
  t.same(Object.keys(lead).sort(), ['created_at', 'email', 'id', 'name', 'p_score', 'status', 'user_id'])
  t.type(lead.id, 'number')
  t.equal(lead.user_id, 'alice')

  const all = await allLeads(alice)
  t.equal(all.length, 2000)
  t.ok(all.every((l) => l.user_id === 'alice'))
  t.ok(all.every((l) => LEAD_STATUSES.includes(l.status)))
  t.ok(all.every((l) => typeof l.p_score === 'number' && l.p_score >= 0 && l.p_score <= 100))
  t.ok(all.every((l) => new Date(l.created_at).toISOString() === l.created_at))
  t.ok(all.every((l, i) => i === 0 || (all[i - 1] as Lead).created_at >= l.created_at), 'created_at desc')
  t.ok(all.some((l) => l.email === null) && all.some((l) => typeof l.email === 'string'), 'some emails null')

  const bobs = await allLeads(bob)
  const ids = new Set([...all, ...bobs].map((l) => l.id))
  t.equal(ids.size, 4000, 'ids unique across users')

  t.test('paging', async (t) => {
    const page2 = await call('/api/leads?limit=10&offset=10', { token: alice })
    t.same(page2.body.items, all.slice(10, 20))
    t.equal(page2.body.total, 2000)
    const max = await call('/api/leads?limit=500', { token: alice })
    t.equal(max.body.items.length, 500)
    const past = await call('/api/leads?offset=5000', { token: alice })
    t.same(past.body, { items: [], total: 2000 })
  })
  t.test('status filter counts before paging', async (t) => {
    const dash = await call('/api/dashboard', { token: alice })
    for (const status of LEAD_STATUSES) {
      const f = await call(`/api/leads?status=${status}&limit=5`, { token: alice })
      t.equal(f.body.total, dash.body.by_status[status], status)
      t.ok(f.body.items.every((l: Lead) => l.status === status))
      t.same(f.body.items, all.filter((l) => l.status === status).slice(0, 5))
    }
  })
  t.test('invalid query parameters are 422', async (t) => {
    for (const q of ['status=open', 'status=', 'limit=0', 'limit=501', 'limit=abc', 'limit=1.5', 'limit=-1', 'offset=-1', 'offset=x']) {
      const bad = await call(`/api/leads?${q}`, { token: alice })
      t.equal(bad.status, 422, q)
      t.ok(Array.isArray(bad.body.detail))
    }
  })
})

t.test('data is deterministic per seed', async (t) => {
  const a = await startDemoUpstream({ leadsPerUser: 20, seed: 7 })
  const b = await startDemoUpstream({ leadsPerUser: 20, seed: 7 })
  const c = await startDemoUpstream({ leadsPerUser: 20, seed: 8 })
  t.teardown(() => Promise.all([a.close(), b.close(), c.close()]))
  const list = async (u: typeof a) => (await call('/api/leads?limit=500', { token: alice }, u.url)).body
  const [la, lb, lc] = [await list(a), await list(b), await list(c)]
  t.equal(la.total, 20)
  t.same(la, lb)
  t.notSame(la, lc)
})

t.test('getting one lead', async (t) => {
  const mine = (await call('/api/leads?limit=1', { token: alice })).body.items[0] as Lead
  const theirs = (await call('/api/leads?limit=1', { token: bob })).body.items[0] as Lead
  const r = await call(`/api/leads/${mine.id}`, { token: alice })
  t.equal(r.status, 200)
  t.same(r.body, mine)
  for (const path of [`/api/leads/${theirs.id}`, '/api/leads/999999', '/api/leads/abc', '/api/leads/0']) {
    const nf = await call(path, { token: alice })
    t.equal(nf.status, 404, path)
    t.same(nf.body, { detail: 'Lead not found' })
  }
})

t.test('creating leads', async (t) => {
  const before = (await call('/api/dashboard', { token: alice })).body
  const r = await call('/api/leads', { method: 'POST', token: alice, json: { name: 'New Person', email: 'new@example.com', status: 'qualified', p_score: 88.5, id: 1, user_id: 'bob' } })
  t.equal(r.status, 201)
  const lead = r.body as Lead
  t.equal(r.headers.get('location'), `/api/leads/${lead.id}`)
  t.match(lead, { name: 'New Person', email: 'new@example.com', status: 'qualified', p_score: 88.5, user_id: 'alice' })
  t.not(lead.id, 1, 'client cannot choose the id')
  t.same((await call(`/api/leads/${lead.id}`, { token: alice })).body, lead)
  t.same((await call('/api/leads?limit=1', { token: alice })).body.items[0], lead, 'newest first')
  t.equal((await call('/api/dashboard', { token: alice })).body.total, before.total + 1)
  t.equal((await call(`/api/leads/${lead.id}`, { token: bob })).status, 404, 'owner only')

  const minimal = await call('/api/leads', { method: 'POST', token: alice, json: { name: 'Just A Name' } })
  t.equal(minimal.status, 201)
  t.match(minimal.body, { email: null, status: 'new', p_score: 0 })

  const invalid: unknown[] = [
    {}, { name: '' }, { name: 42 }, { name: 'x', status: 'open' }, { name: 'x', p_score: 101 },
    { name: 'x', p_score: -1 }, { name: 'x', p_score: '50' }, { name: 'x', email: 'not-an-email' }, ['x'], 'x',
  ]
  for (const json of invalid) {
    const bad = await call('/api/leads', { method: 'POST', token: alice, json })
    t.equal(bad.status, 422, JSON.stringify(json))
    t.ok(Array.isArray(bad.body.detail))
  }
  const broken = await call('/api/leads', { method: 'POST', token: alice, headers: { 'content-type': 'application/json' }, body: '{' })
  t.equal(broken.status, 422)
})

t.test('updating leads', async (t) => {
  const mine = (await call('/api/leads?limit=1&offset=3', { token: alice })).body.items[0] as Lead
  const theirs = (await call('/api/leads?limit=1', { token: bob })).body.items[0] as Lead
  const r = await call(`/api/leads/${mine.id}`, { method: 'PATCH', token: alice, json: { status: 'won', p_score: 99, email: null } })
  t.equal(r.status, 200)
  t.same(r.body, { ...mine, status: 'won', p_score: 99, email: null })
  t.same((await call(`/api/leads/${mine.id}`, { token: alice })).body, r.body, 'persisted')
  const renamed = await call(`/api/leads/${mine.id}`, { method: 'PATCH', token: alice, json: { name: 'Renamed' } })
  t.same(renamed.body, { ...r.body, name: 'Renamed' }, 'partial update keeps other fields')

  for (const json of [{ status: 'open' }, { name: null }, { p_score: 200 }, { status: null }, { email: 5 }, []]) {
    const bad = await call(`/api/leads/${mine.id}`, { method: 'PATCH', token: alice, json })
    t.equal(bad.status, 422, JSON.stringify(json))
  }
  t.same((await call(`/api/leads/${mine.id}`, { token: alice })).body, renamed.body, 'invalid patch changes nothing')

  t.equal((await call(`/api/leads/${theirs.id}`, { method: 'PATCH', token: alice, json: { status: 'lost' } })).status, 404)
  t.same((await call(`/api/leads/${theirs.id}`, { token: bob })).body, theirs, "other user's lead untouched")
  t.equal((await call('/api/leads/999999', { method: 'PATCH', token: alice, json: { status: 'lost' } })).status, 404)
})

t.test('deleting leads', async (t) => {
  const mine = (await call('/api/leads?limit=1&offset=7', { token: alice })).body.items[0] as Lead
  const theirs = (await call('/api/leads?limit=1', { token: bob })).body.items[0] as Lead
  const before = (await call('/api/leads?limit=1', { token: alice })).body.total
  const r = await call(`/api/leads/${mine.id}`, { method: 'DELETE', token: alice })
  t.equal(r.status, 204)
  t.equal(r.body, '')
  t.equal((await call(`/api/leads/${mine.id}`, { token: alice })).status, 404)
  t.equal((await call(`/api/leads/${mine.id}`, { method: 'DELETE', token: alice })).status, 404)
  t.equal((await call('/api/leads?limit=1', { token: alice })).body.total, before - 1)
  t.notOk((await allLeads(alice)).some((l) => l.id === mine.id), 'gone from the list')
  t.equal((await call(`/api/leads/${theirs.id}`, { method: 'DELETE', token: alice })).status, 404)
  t.equal((await call(`/api/leads/${theirs.id}`, { token: bob })).status, 200, "other user's lead still there")
})

t.test('dashboard', async (t) => {
  const r = await call('/api/dashboard', { token: bob })
  t.equal(r.status, 200)
  t.equal(r.body.user, 'bob')
  t.same(Object.keys(r.body.by_status).sort(), [...LEAD_STATUSES].sort())
  const sum = Object.values(r.body.by_status as Record<string, number>).reduce((a, b) => a + b, 0)
  t.equal(sum, r.body.total)
  t.equal(r.body.total, (await call('/api/leads?limit=1', { token: bob })).body.total)
})

t.test('unknown paths and methods', async (t) => {
  for (const path of ['/nope', '/auth', '/healthz/x']) {
    const r = await call(path)
    t.equal(r.status, 404, path)
    t.same(r.body, { detail: 'Not Found' })
  }
  for (const path of ['/api/nope', '/api/leads/1/notes', '/api']) {
    const r = await call(path, { token: alice })
    t.equal(r.status, 404, path)
    t.same(r.body, { detail: 'Not Found' })
  }
  const wrong: [string, string, string | undefined][] = [
    ['POST', '/healthz', undefined], ['GET', '/auth/login', undefined], ['GET', '/auth/password-reset', undefined],
    ['PUT', '/api/leads', alice], ['DELETE', '/api/leads', alice], ['POST', '/api/leads/1', alice], ['POST', '/api/dashboard', alice],
  ]
  for (const [method, path, token] of wrong) {
    const r = await call(path, { method, token })
    t.equal(r.status, 405, `${method} ${path}`)
    t.same(r.body, { detail: 'Method Not Allowed' })
    t.ok(r.headers.get('allow'))
  }
})

t.test('request bodies over 1 MiB are 413', async (t) => {
  const big = Buffer.alloc(MAX_BODY_BYTES + 1, 'a')
  for (const path of ['/auth/login', '/api/leads', '/echo']) {
    const r = await call(path, { method: 'POST', token: alice, headers: { 'content-type': 'application/json' }, body: big })
    t.equal(r.status, 413, path)
    t.ok(r.body.detail)
  }
  // Chunked upload (no content-length) is counted as it streams.
  const chunk = new Uint8Array(64 * 1024)
  let sent = 0
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent > MAX_BODY_BYTES) return c.close()
      sent += chunk.length
      c.enqueue(chunk)
    },
  })
  const chunked = await call('/echo', { method: 'POST', body: stream, duplex: 'half' } as RequestInit)
  t.equal(chunked.status, 413)
  const exact = await call('/echo', { method: 'POST', body: Buffer.alloc(MAX_BODY_BYTES) })
  t.equal(exact.status, 200, 'exactly 1 MiB is allowed')
  t.equal(exact.body.bodyBytes, MAX_BODY_BYTES)
})

t.test('echo describes the request it received', async (t) => {
  const plain = await call('/echo?x=1', { headers: { 'x-test': 'yes' } })
  t.equal(plain.status, 200)
  t.equal(plain.body.method, 'GET')
  t.equal(plain.body.url, '/echo?x=1')
  t.equal(plain.body.headers['x-test'], 'yes')
  t.notOk('bodyBytes' in plain.body, 'no body, no bodyBytes')

  const posted = await call('/echo/deeper', { method: 'POST', body: 'hello world' })
  t.equal(posted.body.method, 'POST')
  t.equal(posted.body.url, '/echo/deeper')
  t.equal(posted.body.bodyBytes, 11)

  // fetch merges repeated headers, so send raw duplicates with node:http.
  const raw = await new Promise<any>((resolve, reject) => {
    const req = httpRequest(`${up.url}/echo`, { headers: { 'X-Dup': ['one', 'two'], 'X-Forwarded-For': ['10.0.0.1', '10.0.0.2'] } }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(JSON.parse(text)))
    })
    req.on('error', reject).end()
  })
  t.same(raw.headers['x-dup'], ['one', 'two'])
  t.same(raw.headers['x-forwarded-for'], ['10.0.0.1', '10.0.0.2'])
  t.ok(Array.isArray(raw.rawHeaders) && raw.rawHeaders.includes('X-Dup'), 'raw header names keep their case')
})

t.test('latencyMs delays every response', async (t) => {
  const slow = await startDemoUpstream({ latencyMs: 150, leadsPerUser: 5 })
  t.teardown(() => slow.close())
  for (const path of ['/healthz', '/nope']) {
    const started = performance.now()
    await call(path, {}, slow.url)
    t.ok(performance.now() - started >= 140, path)
  }
})

t.test('jwtSecret option', async (t) => {
  const other = await startDemoUpstream({ jwtSecret: 's3cret', leadsPerUser: 5 })
  t.teardown(() => other.close())
  const token = await loginAs('alice', other.url)
  t.equal((await call('/api/dashboard', { token }, other.url)).status, 200)
  t.equal((await call('/api/dashboard', { token: alice }, other.url)).status, 401, 'default-secret token rejected')
  await jwtVerify(token, new TextEncoder().encode('s3cret'))
})

t.test('close() also drops keep-alive connections', async (t) => {
  const u = await startDemoUpstream({ leadsPerUser: 1 })
  const agent = new Agent({ keepAlive: true })
  t.teardown(() => agent.destroy())
  await new Promise<void>((resolve, reject) => {
    httpRequest(`${u.url}/healthz`, { agent }, (res) => res.resume().on('end', resolve)).on('error', reject).end()
  })
  const started = performance.now()
  await u.close()
  t.ok(performance.now() - started < 1000, 'did not wait for the idle socket to time out')
})

t.test('server.ts CLI', async (t) => {
  const entry = fileURLToPath(new URL('../../deploy/demo-upstream/server.ts', import.meta.url))
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, DEMO_PORT: '0', DEMO_HOST: '127.0.0.1', JWT_SECRET: 'cli-secret' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const [line] = (await once(child.stdout.setEncoding('utf8'), 'data')) as [string]
  const match = /^demo upstream listening on (http:\/\/127\.0\.0\.1:\d+)\n$/.exec(line)
  t.ok(match, line)
  const url = (match as RegExpExecArray)[1] as string
  const token = await loginAs('bob', url)
  await jwtVerify(token, new TextEncoder().encode('cli-secret'))
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0)
})

t.test('GET / is the SalesFlow page, whose script is bundled from the npm packages', async (t) => {
  const demo = await startDemoUpstream()
  t.teardown(() => demo.close())
  const page = await fetch(`${demo.url}/`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  t.match(await page.text(), /<script[^>]+app\.js/)
})
