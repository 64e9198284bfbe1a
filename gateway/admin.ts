// The admin listener, kept off the proxy port: /healthz (the process is alive), /readyz (it can serve:
// config loaded, not draining, upstream reachable, Redis connected when configured) and /metrics (Prometheus).
// Probes, scrapers and operators use it; clients never should.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { timingSafeEqual } from 'node:crypto'
import type { GatewayState } from './server.ts'
import { pathOf, urlTag } from './cache/keys.ts'
import { publishNotice } from './observability/events.ts'
import { createMetrics, type Metrics } from './observability/metrics.ts'
import { isWorker, metricsOfAllWorkers, shareMetrics } from './cluster.ts'

/**
 * The metrics live as long as the admin server: they are created here, so that whoever starts the admin
 * listener gets /metrics with nothing else to wire, and stop listening when it closes.
 */
export interface ReloadResult { ok: boolean; routes?: number; problems?: readonly string[] }

export interface AdminActions {
  /** Reload the config file (what SIGHUP does; with workers, every worker reloads). */
  reload(): ReloadResult | Promise<ReloadResult>
}

export function createAdminServer(state: GatewayState, actions: AdminActions): Server {
  // With admin.metrics off nothing subscribes to the request channel for metrics: they cost nothing.
  const metrics = state.plan.config.admin.metrics ? createMetrics(state) : undefined
  if (metrics) shareMetrics(metrics.registry)
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/cache/purge') return purge(state, req, res)
    if (path === '/reload') return reload(state, actions, req, res)
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' })
    if (path === '/healthz') return json(res, 200, { status: 'ok' })
    if (path === '/metrics' && metrics) return scrape(metrics, res)
    if (path === '/readyz') {
      const checks = {
        config: { ok: true, file: state.plan.file },
        draining: { ok: !state.draining },
        upstream: await probeUpstream(state),
        // Shown, but not required: without Redis the gateway serves on its in-process fallback, and taking
        // every replica out of the load balancer at once would turn a Redis outage into a full outage.
        ...(state.services.redis ? { redis: { ok: state.services.redis.isUp(), required: false } } : {}),
      }
      const ready = Object.values(checks).every((check) => check.ok || ('required' in check && !check.required))
      return json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks })
    }
    json(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz', ...(metrics ? ['/metrics'] : []), 'POST /cache/purge', 'POST /reload'] })
  })
  server.once('close', () => metrics?.close())
  return server
}

/** GET /metrics: the Prometheus text format. */
async function scrape(metrics: Metrics, res: ServerResponse): Promise<void> {
  let text: string
  try {
    text = isWorker ? await metricsOfAllWorkers() : await metrics.render()
  } catch (err) {
    publishNotice({ level: 'error', msg: 'metrics could not be rendered', err })
    return json(res, 500, { error: 'metrics unavailable' })
  }
  res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

/**
 * POST /cache/purge {"tags": ["lead:5"], "urls": ["/api/leads/5"]} with `Authorization: Bearer <admin.token>`:
 * drops those entries on every replica. Disabled (403) while admin.token is empty.
 */
async function purge(state: GatewayState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!authorized(state, req, res)) return
  let body: { tags?: unknown; urls?: unknown }
  try {
    body = JSON.parse(await readSmallBody(req, 64 * 1024)) as typeof body
  } catch {
    return json(res, 400, { error: 'expected a JSON body like {"tags": [...], "urls": [...]}' })
  }
  const strings = (value: unknown) => (Array.isArray(value) && value.every((v) => typeof v === 'string') ? value as string[] : null)
  const tags = strings(body.tags ?? [])
  const urls = strings(body.urls ?? [])
  if (!tags || !urls || !(tags.length + urls.length)) return json(res, 400, { error: 'tags and urls must be lists of strings, not both empty' })
  const cache = state.services.cache
  if (!cache) return json(res, 200, { purged: { local: 0, shared: 0 }, note: 'no route caches' })
  const purged = await cache.invalidation.invalidate([...tags, ...urls.map((url) => urlTag(pathOf(url)))])
  publishNotice({ level: 'info', msg: 'cache purged', tags, urls, ...purged })
  json(res, 200, { purged })
}

/**
 * POST /reload with `Authorization: Bearer <admin.token>`: what SIGHUP does, for operators without a
 * shell on the host. 200 with the route count, or 422 with every problem (the old config keeps serving).
 */
async function reload(state: GatewayState, actions: AdminActions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!authorized(state, req, res)) return
  req.resume()
  const result = await actions.reload()
  json(res, result.ok ? 200 : 422, result)
}

/** Admin actions need POST and the admin token; without a token configured they are disabled (403). */
function authorized(state: GatewayState, req: IncomingMessage, res: ServerResponse): boolean {
  const token = state.plan.config.admin.token
  const presented = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '')
  const expected = Buffer.from(token)
  let refusal: [number, string] | null = null
  if (req.method !== 'POST') refusal = [405, 'use POST']
  else if (!token) refusal = [403, 'admin actions are disabled: set admin.token']
  else if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) refusal = [401, 'a valid admin token is required']
  if (refusal) json(res, refusal[0], { error: refusal[1] })
  return refusal === null
}

function readSmallBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => {
      text += chunk
      if (text.length > limit) req.destroy(new Error('too large'))
    })
    req.on('end', () => resolve(text))
    req.on('error', reject)
  })
}

/** A TCP connect to the upstream, bounded by its connect timeout (at most 1s, so probes stay quick). */
function probeUpstream(state: GatewayState): Promise<{ ok: boolean; url: string; error?: string }> {
  const url = new URL(state.services.upstream.origin)
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port })
    const done = (error?: string) => {
      socket.destroy()
      resolve({ ok: !error, url: url.origin, ...(error ? { error } : {}) })
    }
    socket.setTimeout(Math.min(state.services.upstream.settings.timeouts.connect, 1000), () => done('connect timeout'))
    socket.once('connect', () => done())
    socket.once('error', (err: Error & { code?: string }) => done(err.code ?? err.message))
  })
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}
