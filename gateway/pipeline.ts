// THE request story. Each phase is one function in one module; it either lets the request continue
// (returns undefined) or answers it (returns a Reply). The order is fixed:
//
//   route → admit → identify → limit → lookup ──────────▶ forward (→ upstream) → invalidate → decorate → send
//   404     400/413             429      200/304 hit, stale  502/504, stored     (2xx writes)
//   fail: any thrown error → problem+json (or a stale entry within stale-if-error)    log: always, exactly once
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Plan, Route } from './config/compile.ts'
import type { Services } from './services.ts'
import type { Client } from './routing/client.ts'
import type { LimitDecision } from './ratelimit/decision.ts'
import type { CacheOutcome } from './cache/status.ts'
import type { CacheState } from './cache/proxy-cache.ts'
import { ERROR_CODES, GatewayError, problemDocument, toGatewayError } from './errors.ts'
import { route } from './routing/route.ts'
import { admit } from './admit.ts'
import { identify } from './routing/client.ts'
import { limit } from './ratelimit/limit.ts'
import { rateLimitHeaders } from './ratelimit/decision.ts'
import { forwardCached, invalidateAfterWrite, lookup } from './cache/proxy-cache.ts'
import { cacheStatusHeaders } from './cache/status.ts'
import { serveTunnel } from './observability/tunnel.ts'
import { forward } from './upstream/forward.ts'
import { publishRequest } from './observability/events.ts'

/** A string body is the body's bytes as latin1 text (as L1 keeps small bodies, ready for endWith). */
export interface Reply { status: number; headers: OutgoingHttpHeaders; body?: Buffer | string | Readable }
/** undefined = continue with the next phase. */
export type Verdict = Reply | undefined

/** Everything one request's phases read and write; one per request. */
export interface Ctx {
  readonly id: string
  /** performance.now() when the request arrived. */
  readonly t0: number
  readonly req: IncomingMessage
  readonly plan: Plan
  readonly services: Services
  /** The real client: the socket peer, or the first untrusted X-Forwarded-For hop behind trusted proxies. */
  readonly clientIp: string
  readonly peerAddress: string
  /** Read when a response is decorated: once draining, responses close their connection. */
  readonly lifecycle: { readonly draining: boolean }
  route: Route | undefined
  params: Record<string, string> | undefined
  client: Client | undefined
  /** Every limit's decision and the binding (strictest) one. */
  limit: { decisions: readonly LimitDecision[]; binding: LimitDecision } | undefined
  /** What the cache did: Cache-Status, X-Cache, the log field. */
  cache: CacheOutcome | undefined
  /** Set by lookup when the request goes upstream through the cache. */
  cacheState: CacheState | undefined
  upstreamResponse: { status: number; headersMs: number } | undefined
  /** performance.now() after the limit and lookup phases, for trace spans. */
  marks: { limited: number; lookedUp: number }
  status: number | undefined
  bytesOut: number
  error: GatewayError | undefined
  /**
   * The tracing subscriber's own state for this request (observability/sentry.ts: the sampling decision and
   * trace ids), kept here rather than in a WeakMap beside it, which cost a hash insert and ephemeron upkeep
   * per request. Nothing else reads it; undefined while Sentry is off.
   */
  tracing: unknown
}

export async function handle(ctx: Ctx, res: ServerResponse): Promise<void> {
  try {
    // Phases answer synchronously when they can (an L1 hit never waits for a promise); await only then.
    const gated = gate(ctx)
    let reply = gated instanceof Promise ? await gated : gated
    ctx.marks.limited = performance.now()
    if (!reply && ctx.route?.tunnel) return await serveTunnel(ctx, res)
    if (!reply) { const step = lookup(ctx); reply = step instanceof Promise ? await step : step }
    ctx.marks.lookedUp = performance.now()
    if (reply) return send(ctx, res, reply)
    if (ctx.cacheState) await forwardCached(ctx, res)
    else await forward(ctx, res, { onHead: (status) => invalidateAfterWrite(ctx, status) })
  } catch (err) {
    send(ctx, res, fail(ctx, toGatewayError(err)))
  } finally {
    ctx.cacheState?.release?.()
    // Once end() has taken the whole body (always so for a Buffer), the answer is the socket's to deliver:
    // log now rather than keep a 'close' listener per request. Streams still being piped log when done.
    if (res.writableEnded || res.destroyed) log(ctx)
    else res.once('close', () => log(ctx))
  }
}

/**
 * The gates every request passes before anything is served or tunnelled (WebSocket upgrades too): route,
 * admit, identify, limit. Synchronous unless identify or limit has to wait.
 */
export function gate(ctx: Ctx): Verdict | Promise<Verdict> {
  const reply = route(ctx) ?? admit(ctx)
  if (reply) return reply
  const identified = identify(ctx)
  if (identified instanceof Promise) return identified.then((verdict) => verdict ?? limit(ctx))
  return identified ?? limit(ctx)
}

/** The one place gateway headers are added to every response, local or proxied. */
export function decorate(ctx: Ctx, headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  headers['x-request-id'] = ctx.id
  if (ctx.limit) Object.assign(headers, rateLimitHeaders(ctx.limit.decisions, ctx.limit.binding, ctx.plan.config.rateLimiting.legacyHeaders))
  if (ctx.cache) Object.assign(headers, cacheStatusHeaders(ctx.cache))
  if (ctx.lifecycle.draining) headers.connection = 'close'
  return headers
}

/** Turns an error into the client's answer: a problem document with the request id, never a stack. */
export function fail(ctx: Ctx, err: GatewayError): Reply {
  ctx.error = err
  const body = Buffer.from(JSON.stringify(problemDocument(err, ctx.id)))
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/problem+json', 'content-length': body.length }
  const { retryAfterS } = ERROR_CODES[err.code] as { retryAfterS?: number }
  if (retryAfterS) headers['retry-after'] = String(retryAfterS)
  return { status: err.status, headers, body }
}

export function send(ctx: Ctx, res: ServerResponse, reply: Reply): void {
  if (res.headersSent || res.destroyed) {
    // Too late for a clean answer: cutting the connection is the only honest signal left.
    res.destroy()
    return
  }
  ctx.status = reply.status
  res.writeHead(reply.status, decorate(ctx, reply.headers))
  if (reply.body === undefined || typeof reply.body === 'string' || Buffer.isBuffer(reply.body)) {
    ctx.bytesOut += reply.body?.length ?? 0
    endWith(res, reply.body)
  } else {
    reply.body.on('data', (chunk: Buffer) => { ctx.bytesOut += chunk.length })
    reply.body.pipe(res)
  }
}

/**
 * Bodies up to this size are handed to node as a latin1 string (the same bytes): node then joins the head and
 * the body into one string and writes it at once, where a Buffer body goes out as a second chunk of a writev.
 * For small answers (cache hits, problem documents, small proxied answers) the single write cost 10–15% less
 * CPU per response in node:http on Node 24; from about 4 KiB copying the body into a string costs more than
 * it saves. L1 keeps such bodies as that text already (cache/l1.ts), so a hit converts nothing.
 */
export const ONE_WRITE_MAX = 2048

/** The latin1 text a body is handed to node as, for one write with the head; undefined when it is too large. */
export function oneWriteText(body: Buffer): string | undefined {
  return body.length <= ONE_WRITE_MAX ? body.toString('latin1') : undefined
}

/** Ends a response whose head is written, with its whole body (a string: its latin1 text). */
export function endWith(res: ServerResponse, body: Buffer | string | undefined): void {
  const text = typeof body === 'string' || body === undefined ? body : oneWriteText(body)
  if (text !== undefined) res.end(text, 'latin1')
  else res.end(body)
}

/** Hands the finished request to whoever listens (logs, metrics); exactly once, after the response. */
function log(ctx: Ctx): void {
  publishRequest(ctx)
}
