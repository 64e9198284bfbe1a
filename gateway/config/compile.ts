// Turns a validated Config into the frozen Plan the hot path reads: the route table, per-route settings
// resolved once, and features a route does not use left as null (so a request only tests for null).
import { availableParallelism } from 'node:os'
import proxyAddr from 'proxy-addr'
import type { Config, LimitConfig, RouteConfig } from './schema.ts'
import { MATCH_PATTERN } from './schema.ts'
import { ALL_METHODS, createRouter, RouteConflict, type RouteMatchSpec, type Router } from '../routing/router.ts'

export type LimitKey = { kind: 'ip' } | { kind: 'user' } | { kind: 'route' } | { kind: 'header'; header: string }

/** One rate limit, resolved: `limit` points per window, optionally a burst allowance and a lockout. */
export interface LimitPolicy {
  /** Also the counter's namespace: routes naming the same limit share its counters. */
  readonly name: string
  readonly key: LimitKey
  readonly points: number
  readonly windowS: number
  readonly burst: { readonly points: number; readonly windowS: number } | null
  readonly blockS: number
  readonly cost: number
}

/** "lead:{id}" split once at load: literal text and the names to fill in ({user} or a path param). */
export interface TagTemplate { readonly text: string; readonly parts: ReadonlyArray<{ literal: string } | { param: string }> }

export interface RouteCache {
  readonly ttlMs: number
  readonly scope: 'user' | 'public' | null
  readonly tags: readonly TagTemplate[]
  readonly staleWhileRevalidateMs: number
  readonly staleIfErrorMs: number
  readonly storeSetCookie: boolean
  readonly force: boolean
}

export interface Route {
  readonly name: string
  readonly index: number
  readonly maxBodySize: number
  /** Caching of GET/HEAD answers; null when the route does not cache. */
  readonly cache: RouteCache | null
  /** Tags a 2xx write invalidates (besides its URL and parent collection); null for none. */
  readonly invalidate: readonly TagTemplate[] | null
  /** rateLimits.default and the route's own limit; null when no limit applies. */
  readonly rateLimits: readonly LimitPolicy[] | null
  /** Whether a phase needs the verified user (a `user` key), so the JWT is only checked when it matters. */
  readonly needsUser: boolean
  /** The Sentry tunnel: envelopes for these DSNs are forwarded to Sentry instead of the upstream. */
  readonly tunnel: { readonly allow: readonly string[] } | null
}

export interface Plan {
  readonly file: string
  readonly config: Config
  readonly routes: readonly Route[]
  readonly router: Router<Route>
  /** proxy-addr's trust function: is the peer at this hop a proxy whose X-Forwarded-* we believe? */
  readonly isTrustedProxy: (address: string, hop: number) => boolean
  /** What a request no route matches gets: the default limit only. */
  readonly unmatched: Route
  readonly limitPolicies: ReadonlyMap<string, LimitPolicy>
  /** rateLimiting.allow, split into an address matcher and a set of users. */
  readonly allow: { readonly address: (address: string) => boolean; readonly users: ReadonlySet<string> }
  /** Whether any route caches: when none does, writes skip invalidation entirely. */
  readonly caching: boolean
  /** Worker processes to run: `workers` resolved (auto: one per core, or 1 without Redis to share state). */
  readonly workers: number
}

export interface CompileProblem { path: PropertyKey[]; message: string }
export class CompileError extends Error {
  readonly problems: readonly CompileProblem[]
  constructor(problems: CompileProblem[]) {
    super(problems.map((p) => p.message).join('; '))
    this.name = 'CompileError'
    this.problems = problems
  }
}

export function compilePlan(config: Config, file: string): Plan {
  const { timeouts } = config.listen
  if (timeouts.headers > timeouts.request) {
    throw new CompileError([{ path: ['listen', 'timeouts', 'headers'], message: 'must not be longer than listen.timeouts.request' }])
  }
  const problems: CompileProblem[] = []
  // Workers are replicas in one box: without Redis each would count limits and keep cache entries apart,
  // and a write would invalidate only its own worker's L1.
  const sharedRedis = Boolean(config.redis.url) || config.redis.sentinels.length > 0 || config.redis.cluster.length > 0
  if (typeof config.workers === 'number' && config.workers > 1 && !sharedRedis) {
    problems.push({ path: ['workers'], message: 'more than one worker shares rate limits and cache invalidation through Redis: set redis.url (or sentinels, cluster), or use workers: 1' })
  }
  const workers = config.workers === 'auto' ? (sharedRedis ? availableParallelism() : 1) : config.workers
  const jwtConfigured = Boolean(config.identity.jwt.secret || config.identity.jwt.jwksUrl)
  const policy = (name: string, limit: LimitConfig, path: PropertyKey[]): LimitPolicy => {
    const compiled = compileLimit(name, limit)
    if (compiled.key.kind === 'user' && !jwtConfigured) {
      problems.push({ path: [...path, 'key'], message: 'key "user" needs identity.jwt.secret or identity.jwt.jwksUrl to verify tokens' })
    }
    return compiled
  }
  const named = new Map(Object.entries(config.rateLimits).map(([name, limit]) => [name, policy(name, limit, ['rateLimits', name])]))
  const defaults = named.get('default')
  const withDefault = (own: LimitPolicy | undefined) => {
    // A route that names "default" itself must not spend from it twice.
    const list = [defaults, own === defaults ? undefined : own].filter((p) => p !== undefined)
    return list.length ? Object.freeze(list) : null
  }
  const routeOf = (name: string, index: number, maxBodySize: number, own: LimitPolicy | undefined,
    cache: RouteCache | null = null, invalidate: readonly TagTemplate[] | null = null): Route => {
    const rateLimits = withDefault(own)
    const needsUser = (rateLimits?.some((p) => p.key.kind === 'user') ?? false) || cache?.scope === 'user'
      || [...(cache?.tags ?? []), ...(invalidate ?? [])].some((t) => t.parts.some((part) => 'param' in part && part.param === 'user'))
    return Object.freeze({ name, index, maxBodySize, rateLimits, needsUser, cache, invalidate, tunnel: null })
  }
  const routes = config.routes.map((route, index): Route => {
    let own: LimitPolicy | undefined
    if (typeof route.rateLimit === 'string') {
      own = named.get(route.rateLimit)
      if (!own) problems.push({ path: ['routes', index, 'rateLimit'], message: `no limit named "${route.rateLimit}" in rateLimits` })
    } else if (route.rateLimit) {
      own = policy(route.name, route.rateLimit, ['routes', index, 'rateLimit'])
    }
    const params = new Set(['user', ...matchSpecs(route.match).flatMap((spec) => pathParams(spec.path))])
    const templates = (texts: readonly string[], path: PropertyKey[]) => texts.map((text, i) => {
      const template = compileTag(text)
      for (const part of template.parts) {
        if ('param' in part && !params.has(part.param)) {
          problems.push({ path: [...path, i], message: `{${part.param}} is neither {user} nor a parameter of this route's paths` })
        }
      }
      return template
    })
    const cache = route.cache ? Object.freeze({
      ttlMs: route.cache.ttl,
      scope: route.cache.scope ?? null,
      tags: templates(route.cache.tags, ['routes', index, 'cache', 'tags']),
      staleWhileRevalidateMs: route.cache.staleWhileRevalidate ?? 0,
      staleIfErrorMs: route.cache.staleIfError ?? 0,
      storeSetCookie: route.cache.storeSetCookie,
      force: route.cache.force,
    }) : null
    const invalidate = route.invalidate ? templates(route.invalidate, ['routes', index, 'invalidate']) : null
    return routeOf(route.name, index, route.maxBodySize ?? config.listen.maxBodySize, own, cache, invalidate)
  })
  const allowedAddresses: string[] = []
  const allowedUsers = new Set<string>()
  config.rateLimiting.allow.forEach((entry, index) => {
    if (entry.startsWith('user:')) allowedUsers.add(entry.slice('user:'.length))
    else if (isAddressOrCidr(entry)) allowedAddresses.push(entry)
    else problems.push({ path: ['rateLimiting', 'allow', index], message: 'expected an IP address, a CIDR or user:<sub>' })
  })
  if (problems.length) throw new CompileError(problems)
  const tunnel = tunnelRoute(config)
  let router: Router<Route>
  try {
    router = createRouter([
      ...routes.map((route, index) => ({ route, specs: matchSpecs(config.routes[index]!.match) })),
      ...(tunnel ? [{ route: tunnel, specs: [{ methods: ['POST'], path: config.sentry.tunnel!.path }] }] : []),
    ])
  } catch (err) {
    if (err instanceof RouteConflict) {
      const path = err.routeIndex === routes.length ? ['sentry', 'tunnel', 'path'] : ['routes', err.routeIndex, 'match']
      throw new CompileError([{ path, message: err.message }])
    }
    throw new CompileError([{ path: ['routes'], message: (err as Error).message }])
  }
  return Object.freeze({
    file,
    config,
    routes: Object.freeze(routes),
    router,
    isTrustedProxy: proxyAddr.compile(config.trustedProxies),
    unmatched: routeOf('(unmatched)', -1, config.listen.maxBodySize, undefined),
    limitPolicies: new Map([...named, ...[...routes, ...(tunnel ? [tunnel] : [])].flatMap((r) => r.rateLimits ?? []).map((p) => [p.name, p] as const)]),
    allow: { address: addressMatcher(allowedAddresses), users: allowedUsers },
    caching: routes.some((r) => r.cache !== null),
    workers,
  })
}

/** The Sentry tunnel as a route of its own: its size cap and its own per-IP limit, no default limit. */
function tunnelRoute(config: Config): Route | null {
  const settings = config.sentry.tunnel
  if (!settings) return null
  const limit = compileLimit('sentry-tunnel', { key: 'ip', limit: settings.limit, cost: 1 })
  return Object.freeze({
    name: 'sentry-tunnel', index: -2, maxBodySize: settings.maxSize, rateLimits: Object.freeze([limit]), needsUser: false,
    cache: null, invalidate: null, tunnel: Object.freeze({ allow: Object.freeze([...settings.allow]) }),
  })
}

function compileTag(text: string): TagTemplate {
  const parts = text.split(/(\{[A-Za-z_][A-Za-z0-9_]*\})/).filter(Boolean)
    .map((part) => part.startsWith('{') ? { param: part.slice(1, -1) } : { literal: part })
  return Object.freeze({ text, parts })
}

/** ":id" segments of a find-my-way path (a trailing "*" is not a named parameter). */
function pathParams(path: string): string[] {
  return [...path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!)
}

function compileLimit(name: string, limit: LimitConfig): LimitPolicy {
  const key: LimitKey = limit.key.startsWith('header:') ? { kind: 'header', header: limit.key.slice(7).toLowerCase() }
    : { kind: limit.key as 'ip' | 'user' | 'route' }
  return Object.freeze({
    name,
    key,
    points: limit.limit.points,
    windowS: limit.limit.windowMs / 1000,
    burst: limit.burst ? { points: limit.burst.points, windowS: limit.burst.windowMs / 1000 } : null,
    blockS: limit.block ? Math.ceil(limit.block / 1000) : 0,
    cost: limit.cost,
  })
}

function addressMatcher(list: string[]): (address: string) => boolean {
  if (!list.length) return () => false
  const matches = proxyAddr.compile(list)
  return (address) => matches(address, 0)
}

function isAddressOrCidr(text: string): boolean {
  try {
    proxyAddr.compile(text)
    return /^[0-9a-fA-F:.]+(\/\d+)?$/.test(text)
  } catch {
    return false
  }
}

function matchSpecs(match: RouteConfig['match']): RouteMatchSpec[] {
  if (typeof match === 'string') return [parseMatchString(match)]
  if (Array.isArray(match)) return match.map(parseMatchString)
  return [{ methods: match.methods ?? ALL_METHODS, path: match.path, ...(match.host ? { host: match.host } : {}) }]
}

function parseMatchString(text: string): RouteMatchSpec {
  const [, methods, path] = MATCH_PATTERN.exec(text)!
  const list = !methods || methods === '*' ? ALL_METHODS : methods.split(',').map((m) => m.trim())
  return { methods: list, path: path! }
}
