// Pure RFC 9111 decisions, the clock passed in. Whether the upstream's answer may be stored and for how
// long comes from http-cache-semantics (storable(), maxAge(): Cache-Control, Expires, Date, Age, status
// codes); what is ours is the route's say: its ttl for silent APIs, scope, force, Set-Cookie, SWR/SIE.
import CachePolicy from 'http-cache-semantics'
import type { RouteCache } from '../config/compile.ts'
import type { Entry } from './store.ts'
import { single } from '../upstream/headers.ts'

export type NoStoreReason =
  | 'method' | 'status' | 'no-store' | 'private' | 'set-cookie' | 'vary-star' | 'too-large' | 'not-storable'
  | 'authenticated' | 'unverified' | 'request-no-store' | 'request-body'

type Headers = Record<string, string | string[] | undefined>

export interface StoreInput {
  route: RouteCache
  /** true for public scope: "private" answers are not for a shared cache. User scope is a private cache. */
  shared: boolean
  method: string
  requestHeaders: Headers
  status: number
  responseHeaders: Headers
  now: number
}

export type StoreDecision =
  | { store: true; freshUntil: number; staleWhileRevalidateUntil: number; staleIfErrorUntil: number; initialAgeS: number }
  | { store: false; reason: NoStoreReason }

export function storeDecision(input: StoreInput): StoreDecision {
  const { route, shared, status, responseHeaders: res, now } = input
  if (input.method !== 'GET') return { store: false, reason: 'method' }
  if (cacheControl(input.requestHeaders)['no-store']) return { store: false, reason: 'request-no-store' }
  // A GET's body has no meaning (RFC 9110 §9.3.1) and is not part of the key; an upstream that reads it
  // anyway ("fat GET") would let one client's body decide what everyone else is served.
  if (hasBody(input.requestHeaders)) return { store: false, reason: 'request-body' }
  if (res['set-cookie'] && !route.storeSetCookie) return { store: false, reason: 'set-cookie' }
  const vary = single(res.vary)
  if (vary && vary.split(',').some((name) => name.trim() === '*')) return { store: false, reason: 'vary-star' }
  const cc = cacheControl(res)
  const initialAgeS = Math.max(0, Number(single(res.age)) || 0)
  let lifetimeMs = route.ttlMs
  let mustRevalidate = false
  if (!route.force) {
    if (cc['no-store']) return { store: false, reason: 'no-store' }
    if (shared && cc.private) return { store: false, reason: 'private' }
    // The scope already decided whose entry this is, so the request's credentials are not the policy's business.
    const { authorization: _a, cookie: _c, ...requestHeaders } = input.requestHeaders
    // A route that stores Set-Cookie answers has decided; the library would give them no lifetime.
    const { 'set-cookie': _s, ...withoutCookies } = res
    const policy = new CachePolicy({ method: 'GET', url: '/', headers: requestHeaders as CachePolicy.Headers },
      { status, headers: (route.storeSetCookie ? withoutCookies : res) as CachePolicy.Headers }, { shared, cacheHeuristic: 0, immutableMinTimeToLive: 0 })
    if (!policy.storable()) return { store: false, reason: status >= 200 && status < 400 ? 'not-storable' : 'status' }
    const explicit = cc['max-age'] !== undefined || (shared && cc['s-maxage'] !== undefined) || res.expires !== undefined
    if (explicit) lifetimeMs = Math.max(0, policy.maxAge() - initialAgeS) * 1000
    if (cc['no-cache']) lifetimeMs = 0
    mustRevalidate = Boolean(cc['must-revalidate'] || (shared && cc['proxy-revalidate']) || cc['no-cache'])
  } else if (!CACHEABLE_BY_DEFAULT.has(status)) {
    return { store: false, reason: 'status' }
  }
  const freshUntil = now + lifetimeMs
  const swrMs = mustRevalidate ? 0 : Math.max(route.staleWhileRevalidateMs, seconds(cc['stale-while-revalidate']))
  const sieMs = mustRevalidate ? 0 : Math.max(route.staleIfErrorMs, seconds(cc['stale-if-error']))
  if (lifetimeMs <= 0 && !swrMs && !sieMs && !res.etag && !res['last-modified']) return { store: false, reason: 'not-storable' }
  return { store: true, freshUntil, staleWhileRevalidateUntil: freshUntil + swrMs, staleIfErrorUntil: freshUntil + sieMs, initialAgeS }
}

function hasBody(headers: Headers): boolean {
  const length = single(headers['content-length'])
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length.trim() !== '0')
}

// RFC 9110 §15.1: heuristically cacheable status codes (what `force` may store).
const CACHEABLE_BY_DEFAULT = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])

export type Freshness = 'fresh' | 'stale-while-revalidate' | 'stale'

export function freshness(entry: Entry, now: number): Freshness {
  if (now < entry.freshUntil) return 'fresh'
  if (now < entry.staleWhileRevalidateUntil) return 'stale-while-revalidate'
  return 'stale'
}

/** The client asked for an answer checked with the upstream (no-cache, max-age=0, Pragma: no-cache). */
export function clientWantsRevalidation(headers: Headers): boolean {
  const cc = cacheControl(headers)
  return Boolean(cc['no-cache'] || cc['max-age'] === '0' || (!headers['cache-control'] && single(headers.pragma)?.includes('no-cache')))
}

export function staleIfErrorAllowed(entry: Entry, now: number): boolean {
  return now < entry.staleIfErrorUntil
}

/** The Age header of a cached answer (RFC 9111 §4.2.3): the upstream's Age plus the time spent here. */
export function ageSeconds(entry: Entry, now: number): number {
  return entry.initialAgeS + Math.max(0, Math.floor((now - entry.storedAt) / 1000))
}

/** Seconds of freshness left (negative once stale), for Cache-Status ttl=. */
export function ttlSeconds(entry: Entry, now: number): number {
  return Math.floor((entry.freshUntil - now) / 1000)
}

/** Does the client's conditional request match the entry (RFC 9110 §13.1.2, §13.1.3)? Then 304. */
export function notModified(entry: Entry, request: Headers): boolean {
  const ifNoneMatch = single(request['if-none-match'])
  const etag = single(entry.headers.etag)
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() === '*') return true
    if (!etag) return false
    const ours = weak(etag)
    return ifNoneMatch.split(',').some((tag) => weak(tag.trim()) === ours)
  }
  const ifModifiedSince = single(request['if-modified-since'])
  if (ifModifiedSince === undefined) return false
  const since = Date.parse(ifModifiedSince)
  const modified = Date.parse(single(entry.headers['last-modified']) ?? '')
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since
}

/** Headers that let the upstream answer 304 for the entry. */
export function validators(entry: Entry): Record<string, string> {
  const out: Record<string, string> = {}
  const etag = single(entry.headers.etag)
  const modified = single(entry.headers['last-modified'])
  if (etag) out['if-none-match'] = etag
  if (modified) out['if-modified-since'] = modified
  return out
}

/** The stored headers updated by a 304's (RFC 9111 §4.3.4), for the refreshed entry. */
export function mergeNotModified(stored: Entry['headers'], update: Headers): Entry['headers'] {
  const merged = { ...stored }
  for (const [name, value] of Object.entries(update)) {
    if (value === undefined || name === 'content-length' || name === 'content-type' || name === 'transfer-encoding') continue
    merged[name] = value
  }
  return merged
}

/** Most requests send no Cache-Control: they share one empty, frozen answer. */
const NO_DIRECTIVES: Readonly<Record<string, string | true>> = Object.freeze({})

export function cacheControl(headers: Headers): Readonly<Record<string, string | true>> {
  const value = single(headers['cache-control'])
  if (!value) return NO_DIRECTIVES
  const directives: Record<string, string | true> = {}
  for (const part of value.split(',')) {
    const [name, argument] = part.split('=', 2) as [string, string | undefined]
    const key = name.trim().toLowerCase()
    if (key) directives[key] = argument === undefined ? true : argument.trim().replace(/^"|"$/g, '')
  }
  return directives
}

function seconds(value: string | true | undefined): number {
  const n = typeof value === 'string' ? Number(value) : 0
  return Number.isFinite(n) && n > 0 ? n * 1000 : 0
}

function weak(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag
}
