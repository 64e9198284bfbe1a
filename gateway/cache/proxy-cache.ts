// The cache's phases. `lookup` runs after the limiter: it answers fresh hits (200 or 304), stale ones
// within stale-while-revalidate, makes concurrent misses wait for the first, and otherwise lets the
// request go on. `forwardCached` is the forward for such requests: it revalidates, stores, or serves
// stale when the upstream fails. `invalidateAfterWrite` runs when a write succeeded.
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { RouteCache } from '../config/compile.ts'
import type { Ctx, Reply, Verdict } from '../pipeline.ts'
import { send } from '../pipeline.ts'
import { GatewayError } from '../errors.ts'
import { abortOnClientClose, relay, requestUpstream, toUpstreamError } from '../upstream/forward.ts'
import { clientResponseHeaders } from '../upstream/headers.ts'
import { publishNotice } from '../observability/events.ts'
import type { ResponseCache } from './service.ts'
import { pickVariant, type Found } from './tiered.ts'
import { usefulUntil, type Entry } from './store.ts'
import { fillTags, hash, parentPath, pathOf, primaryKey, urlTag, varyValues } from './keys.ts'
import {
  ageSeconds, cacheControl, clientWantsRevalidation, freshness, mergeNotModified, notModified, staleIfErrorAllowed,
  storeDecision, ttlSeconds, validators, type NoStoreReason, type StoreDecision,
} from './policy.ts'

/** What lookup found out, for the forward and store steps. */
export interface CacheState {
  readonly primary: string
  readonly route: RouteCache
  /** Public scope: the entry is shared by different people, so `private` answers are not stored. */
  readonly shared: boolean
  /** A stale entry: revalidated with its validators, or served if the upstream fails (stale-if-error). */
  stale?: Entry
  /** Set while this request is the one fetching a miss others wait for; call when done. */
  release?: () => void
}

export function lookup(ctx: Ctx): Verdict | Promise<Verdict> {
  const route = ctx.route?.cache
  const cache = ctx.services.cache
  const method = ctx.req.method
  if (!route || !cache || (method !== 'GET' && method !== 'HEAD')) return undefined
  const scope = scopeOf(ctx, route)
  if (typeof scope !== 'string') return void (ctx.cache = { kind: 'bypass', reason: scope.bypass })
  if (cacheControl(ctx.req.headers)['no-store']) return void (ctx.cache = { kind: 'bypass', reason: 'request-no-store' })
  const trusted = ctx.plan.isTrustedProxy(ctx.peerAddress, 0)
  const forwardedHost = trusted ? String(ctx.req.headers['x-forwarded-host'] ?? '') : ''
  const primary = primaryKey({
    scope,
    host: `${ctx.req.headers.host ?? ''}|${forwardedHost}`,
    proto: (trusted && String(ctx.req.headers['x-forwarded-proto'] ?? '')) || 'http',
    url: ctx.req.url ?? '/',
  })
  ctx.cacheState = { primary, route, shared: scope === 'public' }
  const found = cache.store.get(primary)
  return found instanceof Promise ? found.then((f) => answerFromStore(ctx, cache, f)) : answerFromStore(ctx, cache, found)
}

/**
 * Whose entry an answer is. Requests without credentials share "public" entries. With credentials, the
 * route must say: `public` (its author asserts nothing personal), or `user`: keyed by the verified user,
 * or by a hash of the credentials when no verification is configured. An unverifiable credential
 * (forged, expired) reads and writes nothing.
 */
function scopeOf(ctx: Ctx, route: RouteCache): string | { bypass: NoStoreReason } {
  const { authorization, cookie } = ctx.req.headers
  if (authorization === undefined && cookie === undefined) return 'public'
  if (route.scope === 'public') return 'public'
  if (route.scope !== 'user') return { bypass: 'authenticated' }
  if (ctx.client?.user) return `user:${ctx.client.user}`
  if (ctx.services.verifyToken) return { bypass: 'unverified' }
  return `cred:${hash(`${authorization ?? ''}\n${cookie ?? ''}`)}`
}

function answerFromStore(ctx: Ctx, cache: ResponseCache, found: Found | undefined): Verdict | Promise<Verdict> {
  const state = ctx.cacheState!
  const now = Date.now()
  const entry = found && pickVariant(found.variants, ctx.req.headers)
  if (found && entry) {
    const checkRequested = clientWantsRevalidation(ctx.req.headers)
    const condition = freshness(entry, now)
    if (!checkRequested && condition === 'fresh') {
      ctx.cache = { kind: 'hit', tier: found.tier, ttlS: ttlSeconds(entry, now) }
      return replyFromEntry(ctx, entry, now)
    }
    if (!checkRequested && condition === 'stale-while-revalidate') {
      ctx.cache = { kind: 'stale', tier: found.tier, ttlS: ttlSeconds(entry, now), why: 'stale-while-revalidate' }
      refreshInBackground(ctx, cache, entry)
      return replyFromEntry(ctx, entry, now)
    }
    state.stale = entry
    // A client asking to revalidate goes upstream itself; others coalesce on one revalidation below.
    if (checkRequested) return undefined
  }
  const leader = cache.inflight.get(state.primary)
  if (leader) return followLeader(ctx, cache, leader)
  let finished!: () => void
  const done = new Promise<void>((resolve) => { finished = resolve })
  cache.inflight.set(state.primary, done)
  state.release = () => {
    if (cache.inflight.get(state.primary) === done) cache.inflight.delete(state.primary)
    finished()
  }
  return undefined
}

/** Coalescing: wait (bounded) for the request already fetching this key, then answer from what it stored. */
async function followLeader(ctx: Ctx, cache: ResponseCache, leader: Promise<void>): Promise<Verdict> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([leader, new Promise((resolve) => { timer = setTimeout(resolve, cache.settings.waitForLeader) })])
  clearTimeout(timer)
  const variants = cache.store.l1.get(ctx.cacheState!.primary)
  const entry = variants && pickVariant(variants, ctx.req.headers)
  const now = Date.now()
  if (!entry || freshness(entry, now) !== 'fresh') return undefined // not stored or already stale: fetch for ourselves
  ctx.cache = { kind: 'hit', tier: 'l1', ttlS: ttlSeconds(entry, now), coalesced: true }
  return replyFromEntry(ctx, entry, now)
}

/** A stored answer for this client: with its Age, or 304 when the client's validators match. */
export function replyFromEntry(ctx: Ctx, entry: Entry, now: number): Reply {
  const headers: Entry['headers'] = { ...entry.headers, age: String(ageSeconds(entry, now)) }
  if (entry.status === 200 && notModified(entry, ctx.req.headers)) {
    delete headers['content-length']
    return { status: 304, headers }
  }
  return { status: entry.status, headers, body: entry.text ?? entry.body }
}

export async function forwardCached(ctx: Ctx, res: ServerResponse): Promise<void> {
  const cache = ctx.services.cache!
  const state = ctx.cacheState!
  const { stale } = state
  const abort = abortOnClientClose(res)
  // With the client's own validators the upstream's 304 is the client's answer; with ours it refreshes the entry.
  const revalidating = stale !== undefined && !hasConditionals(ctx.req.headers)
  let response: Dispatcher.ResponseData
  try {
    response = await requestUpstream(ctx, abort.signal, revalidating ? validators(stale) : undefined)
  } catch (err) {
    return serveStaleOrThrow(ctx, res, stale, err)
  }
  const now = Date.now()
  if (revalidating && response.statusCode === 304) {
    await response.body.dump()
    const refreshed = refreshEntry(ctx, cache, stale!, response.headers, now)
    ctx.cache = { kind: 'revalidated', stored: refreshed.stored }
    return send(ctx, res, replyFromEntry(ctx, refreshed.entry, now))
  }
  if (response.statusCode >= 500 && stale && staleIfErrorAllowed(stale, now)) {
    await response.body.dump()
    return serveStaleOnError(ctx, res, stale, new GatewayError('upstream_bad_response', { detail: `upstream answered ${response.statusCode}` }))
  }
  const decision = decide(ctx, response.statusCode, response.headers, now)
  const declared = Number(response.headers['content-length'] ?? 0)
  if (!decision.store || declared > cache.settings.maxObjectSize) {
    ctx.cache = { kind: 'miss', stored: false, reason: decision.store ? 'too-large' : decision.reason }
    state.release?.()
    return relay(ctx, res, response, abort.signal)
  }
  let body: Awaited<ReturnType<typeof readBounded>>
  try {
    body = await readBounded(response.body, cache.settings.maxObjectSize, abort.signal)
  } catch (err) {
    // The upstream failed mid-body (reset, stalled past timeouts.body): nothing is sent yet, so a stale
    // entry can still answer.
    return serveStaleOrThrow(ctx, res, stale, abort.signal.reason ?? err)
  }
  if (Array.isArray(body)) {
    ctx.cache = { kind: 'miss', stored: false, reason: 'too-large' }
    state.release?.()
    return relayRest(ctx, res, response, body, abort.signal)
  }
  const entry = buildEntry(ctx, response.statusCode, response.headers, body, decision, now)
  storeEntry(cache, state.primary, entry, now)
  ctx.cache = { kind: 'miss', stored: true }
  state.release?.()
  send(ctx, res, { status: entry.status, headers: { ...entry.headers, ...(entry.initialAgeS ? { age: String(entry.initialAgeS) } : {}) }, body })
}

/** stale-if-error: the stale entry answers an upstream failure when it may; otherwise the failure stands. */
function serveStaleOrThrow(ctx: Ctx, res: ServerResponse, stale: Entry | undefined, err: unknown): void {
  const failure = toUpstreamError(err)
  if (!stale || failure.code === 'client_closed' || !staleIfErrorAllowed(stale, Date.now())) throw failure
  serveStaleOnError(ctx, res, stale, failure)
}

function serveStaleOnError(ctx: Ctx, res: ServerResponse, stale: Entry, failure: GatewayError): void {
  const now = Date.now()
  ctx.error = failure
  ctx.cache = { kind: 'stale', tier: 'l1', ttlS: ttlSeconds(stale, now), why: 'stale-if-error' }
  send(ctx, res, replyFromEntry(ctx, stale, now))
}

/** stale-while-revalidate: one background request per key refreshes the entry; clients are not kept waiting. */
function refreshInBackground(ctx: Ctx, cache: ResponseCache, stale: Entry): void {
  const { primary } = ctx.cacheState!
  if (cache.refreshing.has(primary)) return
  cache.refreshing.add(primary)
  const { timeouts } = ctx.plan.config.upstream
  const signal = AbortSignal.timeout(timeouts.connect + timeouts.headers + timeouts.body)
  void requestUpstream(ctx, signal, validators(stale)).then(async (response) => {
    const now = Date.now()
    if (response.statusCode === 304) {
      await response.body.dump()
      return void refreshEntry(ctx, cache, stale, response.headers, now)
    }
    const decision = decide(ctx, response.statusCode, response.headers, now)
    if (!decision.store) return void await response.body.dump()
    const body = await readBounded(response.body, cache.settings.maxObjectSize, signal)
    if (Array.isArray(body)) return void response.body.destroy()
    storeEntry(cache, primary, buildEntry(ctx, response.statusCode, response.headers, body, decision, now), now)
  }).catch((err: unknown) => {
    publishNotice({ level: 'warn', msg: 'background refresh failed; the stale entry stays', route: ctx.route?.name, err: toUpstreamError(err).code })
  }).finally(() => cache.refreshing.delete(primary))
}

function decide(ctx: Ctx, status: number, headers: Record<string, string | string[] | undefined>, now: number): StoreDecision {
  const state = ctx.cacheState!
  return storeDecision({ route: state.route, shared: state.shared, method: ctx.req.method ?? 'GET', requestHeaders: ctx.req.headers, status, responseHeaders: headers, now })
}

/** After a 304 to our validators: the entry with updated headers and a new freshness lifetime. */
function refreshEntry(ctx: Ctx, cache: ResponseCache, stale: Entry, update: Record<string, string | string[] | undefined>, now: number) {
  const headers = mergeNotModified(stale.headers, clientResponseHeaders(update) as Record<string, string | string[] | undefined>)
  const decision = decide(ctx, stale.status, headers, now)
  if (!decision.store) return { entry: stale, stored: false }
  const entry: Entry = { ...stale, headers, storedAt: now, initialAgeS: decision.initialAgeS, freshUntil: decision.freshUntil,
    staleWhileRevalidateUntil: decision.staleWhileRevalidateUntil, staleIfErrorUntil: decision.staleIfErrorUntil }
  storeEntry(cache, ctx.cacheState!.primary, entry, now)
  return { entry, stored: true }
}

function buildEntry(ctx: Ctx, status: number, upstreamHeaders: Record<string, string | string[] | undefined>, body: Buffer,
  decision: Extract<StoreDecision, { store: true }>, now: number): Entry {
  const headers = clientResponseHeaders(upstreamHeaders) as Record<string, string | string[]>
  delete headers.age
  headers['content-length'] = String(body.length)
  const varyNames = String(upstreamHeaders.vary ?? '').split(',').map((n) => n.trim().toLowerCase()).filter(Boolean)
  return {
    status, headers, body, storedAt: now, initialAgeS: decision.initialAgeS, freshUntil: decision.freshUntil,
    staleWhileRevalidateUntil: decision.staleWhileRevalidateUntil, staleIfErrorUntil: decision.staleIfErrorUntil,
    vary: varyValues(varyNames, ctx.req.headers), tags: entryTags(ctx),
  }
}

/** The route's tags, filled in, and the entry's path (so writes can invalidate URLs in every scope). */
function entryTags(ctx: Ctx): string[] {
  return [...fillTags(ctx.cacheState!.route.tags, ctx.params, ctx.client?.user), urlTag(pathOf(ctx.req.url ?? '/'))]
}

function storeEntry(cache: ResponseCache, primary: string, entry: Entry, now: number): void {
  cache.store.set(primary, entry)
  cache.invalidation.remember(primary, entry.tags, usefulUntil(entry) - now)
}

/** The whole body if it fits in `limit` bytes; otherwise the chunks read so far (the rest is still in `body`). */
async function readBounded(body: Readable, limit: number, signal: AbortSignal): Promise<Buffer | Buffer[]> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    // destroyOnReturn: false: on overflow the rest of the body must still be there to stream.
    for await (const chunk of body.iterator({ destroyOnReturn: false })) {
      chunks.push(chunk as Buffer)
      size += (chunk as Buffer).length
      if (size > limit) return chunks
    }
  } catch (err) {
    throw toUpstreamError(signal.reason ?? err)
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
}

/** A body that outgrew maxObjectSize while being read: what was read, then the rest, streamed. */
async function relayRest(ctx: Ctx, res: ServerResponse, response: Dispatcher.ResponseData, read: Buffer[], signal: AbortSignal): Promise<void> {
  const { body } = response
  body.unshift(Buffer.concat(read))
  return relay(ctx, res, { ...response, headers: { ...response.headers, 'content-length': undefined } }, signal)
}

function hasConditionals(headers: Record<string, string | string[] | undefined>): boolean {
  return headers['if-none-match'] !== undefined || headers['if-modified-since'] !== undefined
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

/**
 * Phase `invalidate`: a write the upstream accepted (2xx) drops what it made stale: its own URL, its parent
 * collection and the route's `invalidate` tags, on every replica, before the client hears back.
 */
export async function invalidateAfterWrite(ctx: Ctx, status: number): Promise<void> {
  const cache = ctx.services.cache
  if (!cache || status < 200 || status >= 300 || SAFE_METHODS.has(ctx.req.method ?? 'GET')) return
  const path = pathOf(ctx.req.url ?? '/')
  const parent = parentPath(path)
  const tags = [urlTag(path), ...(parent ? [urlTag(parent)] : []), ...fillTags(ctx.route?.invalidate ?? [], ctx.params, ctx.client?.user)]
  await cache.invalidation.invalidate(tags)
}
