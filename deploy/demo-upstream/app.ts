// Demo upstream: a small SalesFlow-like REST API (FastAPI-style responses) that
// the demo, the gateway's tests and the benchmarks put behind the gateway.
// By default all data is in memory and generated from a seeded PRNG, so runs are repeatable; given a
// `store` (postgres-store.ts, what server.ts uses when DATABASE_URL is set) the leads live there instead.
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT, jwtVerify } from 'jose'
import { PAGE_PATHS, pageConfig, sendPage, sendScript } from './web/page.ts'

export const LEAD_STATUSES = ['new', 'contacted', 'qualified', 'won', 'lost'] as const
export type LeadStatus = (typeof LEAD_STATUSES)[number]

export interface Lead {
  id: number
  user_id: string
  name: string
  email: string | null
  status: LeadStatus
  p_score: number
  created_at: string
}

export type LeadFields = Omit<Lead, 'id' | 'user_id' | 'created_at'>

type Awaitable<T> = T | Promise<T>

/** Where the leads live. Every method sees only `user`'s leads. In memory the answers are synchronous. */
export interface LeadStore {
  list(user: string, query: { status: LeadStatus | undefined; limit: number; offset: number }): Awaitable<{ items: Lead[]; total: number }>
  get(user: string, id: number): Awaitable<Lead | undefined>
  create(user: string, fields: LeadFields): Awaitable<Lead>
  /** The updated lead, or undefined if the user has no such lead. */
  update(user: string, id: number, fields: Partial<LeadFields>): Awaitable<Lead | undefined>
  remove(user: string, id: number): Awaitable<void>
  countByStatus(user: string): Awaitable<Record<LeadStatus, number>>
  /** Served as GET /internal/pool when present (the Postgres store's connection pool). */
  stats?(): unknown
}

export interface DemoOptions {
  /** Default: in memory, `leadsPerUser` leads for each demo user generated from `seed`. */
  store?: LeadStore
  jwtSecret?: string
  latencyMs?: number
  leadsPerUser?: number
  seed?: number
  /**
   * The demo page's browser SDK DSN (default: env DEMO_FRONTEND_DSN). Without one the page runs without Sentry.
   * The page (GET / for browsers, GET /app.js) posts its envelopes to the gateway's tunnel at `frontendTunnel`.
   */
  frontendDsn?: string
  frontendTunnel?: string
  /** The page's tracesSampleRate (default: env DEMO_FRONTEND_TRACES_SAMPLE_RATE, else 1). */
  frontendTracesSampleRate?: number
  /** Called with every request as it arrives, before it is answered (tests record what the API received). */
  onRequest?: (req: IncomingMessage) => void
}

export interface DemoApp {
  handler: (req: IncomingMessage, res: ServerResponse) => void
}

export interface StartedDemoUpstream {
  server: Server
  port: number
  url: string
  close(): Promise<void>
}

export const DEFAULT_JWT_SECRET = 'demo-secret'
// Demo credentials; not secrets.
export const DEMO_USERS: ReadonlyMap<string, string> = new Map([
  ['alice', 'demo'],
  ['bob', 'demo'],
])
export const MAX_BODY_BYTES = 1024 * 1024
const MAX_LIMIT = 500
const DEFAULT_LIMIT = 50
const TOKEN_TTL_SECONDS = 3600

/** Signs a token the demo upstream accepts (same shape as POST /auth/login issues). */
export async function signDemoToken(
  sub: string,
  secret: string | CryptoKey = DEFAULT_JWT_SECRET,
  expiresIn: string | number = TOKEN_TTL_SECONDS,
): Promise<string> {
  const exp = typeof expiresIn === 'number' ? Math.floor(Date.now() / 1000) + expiresIn : expiresIn
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(typeof secret === 'string' ? new TextEncoder().encode(secret) : secret)
}

// mulberry32: tiny, fast and good enough for demo data.
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const FIRST = ['Ada', 'Ben', 'Chloe', 'Dev', 'Elena', 'Farid', 'Grace', 'Hiro', 'Ines', 'Jonas', 'Kira', 'Luca', 'Maya', 'Nils', 'Olga', 'Priya']
const LAST = ['Adams', 'Brooks', 'Costa', 'Dubois', 'Evans', 'Fischer', 'Garcia', 'Hansen', 'Ito', 'Jensen', 'Kowalski', 'Lopez', 'Moreau', 'Novak', 'Okafor', 'Patel']

// Newest-first order; id breaks ties so the order is total and stable.
function newerFirst(a: Lead, b: Lead): number {
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? 1 : -1
  return b.id - a.id
}

class MemoryLeadStore implements LeadStore {
  readonly byId = new Map<number, Lead>()
  // Each user's leads, kept sorted newest first so listing never sorts.
  readonly byUser = new Map<string, Lead[]>()
  private nextId = 1

  constructor(users: readonly string[], perUser: number, seed: number) {
    const rand = prng(seed)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
    // Fixed base time (not "now") keeps the data identical across runs.
    const base = Date.UTC(2025, 0, 1)
    const yearMs = 365 * 24 * 3600 * 1000
    for (const user of users) {
      const list: Lead[] = []
      for (let i = 0; i < perUser; i++) {
        const first = pick(FIRST)
        const last = pick(LAST)
        const id = this.nextId++
        const lead: Lead = {
          id,
          user_id: user,
          name: `${first} ${last}`,
          email: rand() < 0.1 ? null : `${first}.${last}${id}@example.com`.toLowerCase(),
          status: pick(LEAD_STATUSES),
          p_score: Math.round(rand() * 1000) / 10,
          created_at: new Date(base - Math.floor(rand() * yearMs / 1000) * 1000).toISOString(),
        }
        list.push(lead)
        this.byId.set(id, lead)
      }
      this.byUser.set(user, list.sort(newerFirst))
    }
  }

  leadsOf(user: string): Lead[] {
    return this.byUser.get(user) ?? []
  }

  list(user: string, query: { status: LeadStatus | undefined; limit: number; offset: number }): { items: Lead[]; total: number } {
    const all = this.leadsOf(user)
    const matching = query.status ? all.filter((l) => l.status === query.status) : all
    return { items: matching.slice(query.offset, query.offset + query.limit), total: matching.length }
  }

  get(user: string, id: number): Lead | undefined {
    const lead = this.byId.get(id)
    return lead && lead.user_id === user ? lead : undefined
  }

  countByStatus(user: string): Record<LeadStatus, number> {
    const byStatus = Object.fromEntries(LEAD_STATUSES.map((s) => [s, 0])) as Record<LeadStatus, number>
    for (const lead of this.leadsOf(user)) byStatus[lead.status]++
    return byStatus
  }

  update(user: string, id: number, fields: Partial<LeadFields>): Lead | undefined {
    const lead = this.get(user, id)
    if (lead) Object.assign(lead, fields)
    return lead
  }

  create(user: string, fields: LeadFields): Lead {
    const lead: Lead = { id: this.nextId++, user_id: user, ...fields, created_at: new Date().toISOString() }
    this.byId.set(lead.id, lead)
    let list = this.byUser.get(user)
    if (!list) this.byUser.set(user, (list = []))
    // Binary search for the insert position (almost always 0, but the clock may be odd).
    let lo = 0
    let hi = list.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (newerFirst(list[mid] as Lead, lead) < 0) lo = mid + 1
      else hi = mid
    }
    list.splice(lo, 0, lead)
    return lead
  }

  remove(user: string, id: number): void {
    const lead = this.get(user, id)
    if (!lead) return
    this.byId.delete(lead.id)
    const list = this.byUser.get(lead.user_id)
    const i = list ? list.indexOf(lead) : -1
    if (list && i >= 0) list.splice(i, 1)
  }
}

// FastAPI-style validation error item.
interface FieldError {
  type: string
  loc: (string | number)[]
  msg: string
}

class HttpError extends Error {
  readonly status: number
  readonly detail: unknown
  readonly headers: Record<string, string>
  constructor(status: number, detail: unknown, headers: Record<string, string> = {}) {
    super(typeof detail === 'string' ? detail : `HTTP ${status}`)
    this.status = status
    this.detail = detail
    this.headers = headers
  }
}

const invalid = (errors: FieldError[]): HttpError => new HttpError(422, errors)
const notFound = (): HttpError => new HttpError(404, 'Lead not found')
const unauthenticated = (): HttpError =>
  new HttpError(401, 'Not authenticated', { 'www-authenticate': 'Bearer' })

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body)
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(data),
  })
  res.end(data)
}

// Reads the whole body. Past the limit it keeps draining but stops buffering, so the
// 413 goes out on a healthy connection instead of racing the client's upload.
async function readBody(req: IncomingMessage): Promise<{ bytes: number; body: Buffer | null }> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length
    if (bytes <= MAX_BODY_BYTES) chunks.push(chunk)
  }
  return { bytes, body: bytes <= MAX_BODY_BYTES ? Buffer.concat(chunks) : null }
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0'
}

function parseJsonObject(body: Buffer): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch {
    throw invalid([{ type: 'json_invalid', loc: ['body'], msg: 'JSON decode error' }])
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid([{ type: 'model_attributes_type', loc: ['body'], msg: 'Input should be a valid dictionary or object' }])
  }
  return value as Record<string, unknown>
}

function isForm(req: IncomingMessage): boolean {
  return (req.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')
}

const EMAIL_RE = /^[^@\s]+@[^@\s]+$/

// Validates lead fields; `partial` is PATCH semantics (everything optional).
function validateLead(input: Record<string, unknown>, partial: boolean): Partial<Omit<Lead, 'id' | 'user_id' | 'created_at'>> {
  const errors: FieldError[] = []
  const out: Partial<Omit<Lead, 'id' | 'user_id' | 'created_at'>> = {}
  const err = (field: string, type: string, msg: string): void => {
    errors.push({ type, loc: ['body', field], msg })
  }
  if ('name' in input) {
    const v = input.name
    if (typeof v !== 'string' || v.trim() === '' || v.length > 200) err('name', 'string_type', 'name must be a non-empty string of at most 200 characters')
    else out.name = v
  } else if (!partial) err('name', 'missing', 'Field required')
  if ('email' in input) {
    const v = input.email
    if (v === null) out.email = null
    else if (typeof v !== 'string' || v.length > 254 || !EMAIL_RE.test(v)) err('email', 'value_error', 'email must be a valid email address or null')
    else out.email = v
  }
  if ('status' in input) {
    const v = input.status
    if (typeof v !== 'string' || !(LEAD_STATUSES as readonly string[]).includes(v)) err('status', 'enum', `status must be one of ${LEAD_STATUSES.join(', ')}`)
    else out.status = v as LeadStatus
  }
  if ('p_score' in input) {
    const v = input.p_score
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100) err('p_score', 'number_range', 'p_score must be a number between 0 and 100')
    else out.p_score = v
  }
  if (errors.length > 0) throw invalid(errors)
  return out
}

function parseQuery(search: URLSearchParams): { status: LeadStatus | undefined; limit: number; offset: number } {
  const errors: FieldError[] = []
  const status = search.get('status')
  const limit = search.get('limit')
  const offset = search.get('offset')
  if (status !== null && !(LEAD_STATUSES as readonly string[]).includes(status)) {
    errors.push({ type: 'enum', loc: ['query', 'status'], msg: `status must be one of ${LEAD_STATUSES.join(', ')}` })
  }
  if (limit !== null && (!/^[1-9]\d{0,8}$/.test(limit) || Number(limit) > MAX_LIMIT)) {
    errors.push({ type: 'less_than_equal', loc: ['query', 'limit'], msg: `limit must be an integer between 1 and ${MAX_LIMIT}` })
  }
  if (offset !== null && !/^\d{1,15}$/.test(offset)) {
    errors.push({ type: 'greater_than_equal', loc: ['query', 'offset'], msg: 'offset must be a non-negative integer' })
  }
  if (errors.length > 0) throw invalid(errors)
  return {
    status: (status ?? undefined) as LeadStatus | undefined,
    limit: limit === null ? DEFAULT_LIMIT : Number(limit),
    offset: offset === null ? 0 : Number(offset),
  }
}

function allow(method: string, allowed: readonly string[]): void {
  if (!allowed.includes(method)) throw new HttpError(405, 'Method Not Allowed', { allow: allowed.join(', ') })
}

export function createDemoApp(options: DemoOptions = {}): DemoApp {
  // Importing the HMAC key once roughly doubles verify throughput versus passing raw bytes.
  const keyReady = crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(options.jwtSecret ?? DEFAULT_JWT_SECRET),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign', 'verify'],
  )
  const latencyMs = options.latencyMs ?? 0
  const store: LeadStore = options.store ?? new MemoryLeadStore([...DEMO_USERS.keys()], options.leadsPerUser ?? 2000, options.seed ?? 42)
  const page = pageConfig({ dsn: options.frontendDsn, tunnel: options.frontendTunnel, tracesSampleRate: options.frontendTracesSampleRate })
  const onRequest = options.onRequest

  async function authenticate(req: IncomingMessage): Promise<string> {
    const header = req.headers.authorization ?? ''
    const match = /^bearer\s+(\S+)\s*$/i.exec(header)
    if (!match) throw unauthenticated()
    try {
      const { payload } = await jwtVerify(match[1] as string, await keyReady, { algorithms: ['HS256'] })
      if (typeof payload.sub !== 'string' || payload.sub === '') throw unauthenticated()
      return payload.sub
    } catch {
      throw unauthenticated()
    }
  }

  async function login(req: IncomingMessage, body: Buffer): Promise<unknown> {
    let username: unknown
    let password: unknown
    if (isForm(req)) {
      const form = new URLSearchParams(body.toString('utf8'))
      username = form.get('username') ?? undefined
      password = form.get('password') ?? undefined
    } else {
      const json = parseJsonObject(body)
      username = json.username
      password = json.password
    }
    const errors: FieldError[] = []
    for (const [field, value] of [['username', username], ['password', password]] as const) {
      if (value === undefined) errors.push({ type: 'missing', loc: ['body', field], msg: 'Field required' })
      else if (typeof value !== 'string') errors.push({ type: 'string_type', loc: ['body', field], msg: 'Input should be a valid string' })
    }
    if (errors.length > 0) throw invalid(errors)
    // Plain comparison is fine: these are published demo credentials.
    if (typeof username !== 'string' || DEMO_USERS.get(username) !== password) {
      throw new HttpError(401, 'Incorrect username or password', { 'www-authenticate': 'Bearer' })
    }
    return { access_token: await signDemoToken(username, await keyReady), token_type: 'bearer' }
  }

  function echo(req: IncomingMessage, bytes: number | undefined): unknown {
    // One entry per header name; repeated headers keep every value as an array.
    const headers: Record<string, string | string[]> = {}
    for (const [name, values] of Object.entries(req.headersDistinct)) {
      if (values) headers[name] = values.length === 1 ? (values[0] as string) : values
    }
    const out: Record<string, unknown> = { method: req.method, url: req.url, headers, rawHeaders: req.rawHeaders }
    if (bytes !== undefined) out.bodyBytes = bytes
    return out
  }

  // Writes the response, or throws HttpError for the caller to render.
  async function route(req: IncomingMessage, res: ServerResponse, body: Buffer | null): Promise<void> {
    const method = req.method ?? 'GET'
    const rawUrl = req.url ?? '/'
    const q = rawUrl.indexOf('?')
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q)
    const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1))
    const buf = body ?? Buffer.alloc(0)

    // The demo page: GET / for browsers (Accept: text/html); API clients still get the JSON 404 below.
    if (path === '/' && (method === 'GET' || method === 'HEAD')) return sendPage(res, page)
    if (PAGE_PATHS.has(path)) {
      allow(method, ['GET', 'HEAD'])
      try {
        return await sendScript(res, path)
      } catch (err) {
        throw new HttpError(500, `the page script could not be bundled: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
    if (path === '/healthz') {
      allow(method, ['GET', 'HEAD'])
      return sendJson(res, 200, { status: 'ok' })
    }
    if (path === '/echo' || path.startsWith('/echo/')) {
      return sendJson(res, 200, echo(req, body === null ? undefined : body.length))
    }
    if (path === '/auth/login') {
      allow(method, ['POST'])
      return sendJson(res, 200, await login(req, buf))
    }
    if (path === '/auth/password-reset') {
      allow(method, ['POST'])
      const json = parseJsonObject(buf)
      if (typeof json.email !== 'string' || json.email === '') {
        throw invalid([{ type: 'missing', loc: ['body', 'email'], msg: 'Field required' }])
      }
      return sendJson(res, 202, { detail: 'If the address exists, a reset link was sent' })
    }
    if (path === '/internal/pool' && store.stats) {
      allow(method, ['GET', 'HEAD'])
      return sendJson(res, 200, store.stats())
    }
    if (path !== '/api' && !path.startsWith('/api/')) throw new HttpError(404, 'Not Found')

    // Everything under /api/ is authenticated before routing, so unknown API paths
    // do not reveal themselves to anonymous callers.
    const user = await authenticate(req)
    if (path === '/api/leads') {
      allow(method, ['GET', 'HEAD', 'POST'])
      if (method === 'POST') {
        const fields = validateLead(parseJsonObject(buf), false)
        const lead = await store.create(user, {
          name: fields.name as string,
          email: fields.email ?? null,
          status: fields.status ?? 'new',
          p_score: fields.p_score ?? 0,
        })
        return sendJson(res, 201, lead, { location: `/api/leads/${lead.id}` })
      }
      return sendJson(res, 200, await store.list(user, parseQuery(query)))
    }
    if (path.startsWith('/api/leads/')) {
      const idText = path.slice('/api/leads/'.length)
      if (idText.includes('/')) throw new HttpError(404, 'Not Found')
      allow(method, ['GET', 'HEAD', 'PATCH', 'DELETE'])
      // Non-numeric ids simply do not exist (rather than FastAPI's 422).
      const lead = /^[1-9]\d{0,14}$/.test(idText) ? await store.get(user, Number(idText)) : undefined
      if (!lead) throw notFound()
      if (method === 'DELETE') {
        await store.remove(user, lead.id)
        res.writeHead(204).end()
        return
      }
      if (method === 'PATCH') {
        const updated = await store.update(user, lead.id, validateLead(parseJsonObject(buf), true))
        if (!updated) throw notFound()
        return sendJson(res, 200, updated)
      }
      return sendJson(res, 200, lead)
    }
    if (path === '/api/dashboard') {
      allow(method, ['GET', 'HEAD'])
      const by_status = await store.countByStatus(user)
      const total = Object.values(by_status).reduce((sum, n) => sum + n, 0)
      return sendJson(res, 200, { user, total, by_status })
    }
    throw new HttpError(404, 'Not Found')
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: Buffer | null = null
    if (hasBody(req)) {
      const read = await readBody(req)
      if (read.body === null) {
        if (latencyMs > 0) await sleep(latencyMs)
        return sendJson(res, 413, { detail: 'Request Entity Too Large' })
      }
      body = read.body
    }
    // Simulated database latency applies to every response.
    if (latencyMs > 0) await sleep(latencyMs)
    try {
      await route(req, res, body)
    } catch (err) {
      if (!(err instanceof HttpError)) throw err
      sendJson(res, err.status, { detail: err.detail }, err.headers)
    }
  }

  return {
    handler(req, res) {
      onRequest?.(req)
      handle(req, res).catch((err: unknown) => {
        // Aborted uploads land here too; only answer if the socket is still usable.
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, { detail: 'Internal Server Error' })
        else res.destroy(err instanceof Error ? err : undefined)
      })
    },
  }
}

export function createDemoServer(options: DemoOptions = {}): Server {
  return createServer(createDemoApp(options).handler)
}

export function startDemoUpstream(options: DemoOptions & { port?: number; host?: string } = {}): Promise<StartedDemoUpstream> {
  const host = options.host ?? '127.0.0.1'
  const server = createDemoServer(options)
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      const port = (server.address() as AddressInfo).port
      // A wildcard bind is not a connectable address; hand out loopback instead.
      const shown = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
      const url = `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}`
      const close = (): Promise<void> =>
        new Promise((done) => {
          // Resolve even if already closed; closing twice is not an error for callers.
          server.close(() => done())
          server.closeAllConnections()
        })
      resolve({ server, port, url, close })
    })
  })
}
