// The config file's shape: every key typed, defaulted and described once. The same schema validates
// the YAML, generates config/gateway.schema.json for editors, and feeds the README's reference table.
import { z } from 'zod'
import proxyAddr from 'proxy-addr'
import { parseDuration, parseRate, parseSize } from './units.ts'

const DURATION_MESSAGE = 'expected a duration like 250ms, 30s, 5m, 1h'
const SIZE_MESSAGE = 'expected a size like 16KiB, 10MiB or a number of bytes'

const duration = z.string({ error: DURATION_MESSAGE })
  .regex(/^\s*\d+(\.\d+)?(ms|s|m|h|d)\s*$/, DURATION_MESSAGE)
  .transform((text) => parseDuration(text)!)

const size = z.union([
  z.int({ error: SIZE_MESSAGE }).min(0, SIZE_MESSAGE),
  z.string({ error: SIZE_MESSAGE }).regex(/^\s*\d+(\.\d+)?\s*([KMG]i?)?B\s*$/i, SIZE_MESSAGE),
], { error: SIZE_MESSAGE }).transform((value) => parseSize(value)!)

const RATE_MESSAGE = 'expected a rate like 100/min, 10/s or 30/10s'
const rate = z.string({ error: RATE_MESSAGE })
  .regex(/^\s*\d+\s*\/\s*\S+\s*$/, RATE_MESSAGE)
  .refine((text) => parseRate(text) !== undefined, RATE_MESSAGE)
  .refine((text) => (parseRate(text)?.windowMs ?? 0) % 1000 === 0, 'the window must be whole seconds (counters keep seconds)')
  .transform((text) => parseRate(text)!)

const port = z.int({ error: 'expected a port number' }).min(0).max(65535)

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const
const MATCH_MESSAGE = 'expected "METHOD /path" like "GET /api/leads/:id", "GET,HEAD /x" or "/any-method"'
/** "GET /api/leads/:id", "GET,HEAD /path", "* /path" or "/path" (any method). */
export const MATCH_PATTERN = /^\s*(?:((?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)(?:\s*,\s*(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS))*|\*)\s+)?(\/\S*)\s*$/

const matchString = z.string({ error: MATCH_MESSAGE }).regex(MATCH_PATTERN, MATCH_MESSAGE)
const matchObject = z.strictObject({
  methods: z.array(z.enum(METHODS)).min(1).optional()
    .describe('HTTP methods this route answers; absent means every method'),
  path: z.string().regex(/^\/\S*$/, 'expected a path starting with /')
    .describe('Path pattern: /literal, /:param, /prefix/* (find-my-way syntax)'),
  host: z.string().min(1).optional().describe('Only requests for this Host header (port ignored)'),
})
const match = z.union([matchString, z.array(matchString).min(1), matchObject], { error: MATCH_MESSAGE })

const KEY_MESSAGE = 'expected ip, user, route or header:<name>'
export const LimitSchema = z.strictObject({
  key: z.string({ error: KEY_MESSAGE }).regex(/^(ip|user|route|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+)$/, KEY_MESSAGE).default('ip')
    .describe('Whose budget a request spends: ip (client address), user (verified JWT sub, else ip), header:<name> (e.g. an API key, hashed), route (one shared budget)'),
  limit: rate.describe('Sustained rate: this many requests per window, counted per key'),
  burst: rate.optional().describe('Extra allowance spent only once `limit` is used up, refilled over its own window'),
  block: duration.optional().describe('Once over the limit, refuse the key for this long (brute-force lockout)'),
  cost: z.int().min(1).default(1).describe('Points one request spends from this limit'),
})

const TAG_MESSAGE = 'expected a tag like "lead:{id}" or "user:{user}"'
const tag = z.string({ error: TAG_MESSAGE }).regex(/^[^\s{}]*(\{[A-Za-z_][A-Za-z0-9_]*\}[^\s{}]*)*$/, TAG_MESSAGE).min(1)

export const RouteCacheSchema = z.strictObject({
  ttl: duration.describe('Freshness when the upstream sends none (no max-age, s-maxage or Expires)'),
  scope: z.enum(['user', 'public']).optional()
    .describe('Whose entry a response is: user (keyed by the verified user) or public (shared). Authenticated requests are never stored without one'),
  tags: z.array(tag).default([]).describe('Tags an entry carries, for invalidation: {param} and {user} are filled in'),
  staleWhileRevalidate: duration.optional().describe('After ttl, serve the stale entry this long while one background request refreshes it'),
  staleIfError: duration.optional().describe('After ttl, serve the stale entry this long when the upstream fails or times out'),
  storeSetCookie: z.boolean().default(false).describe('Store responses that set cookies (never by default)'),
  force: z.boolean().default(false).describe('Cache for ttl even when the upstream says no-store, private or no-cache'),
})

export const RouteSchema = z.strictObject({
  name: z.string({ error: 'expected a route name' }).min(1)
    .describe('Unique name: shown in logs, metrics and errors'),
  match: match.describe('What the route matches: "GET /api/leads/:id", a list of those, or { methods, path, host }'),
  maxBodySize: size.optional().describe('Largest request body accepted on this route (413 above); default listen.maxBodySize'),
  rateLimit: z.union([z.string().min(1), LimitSchema], { error: 'expected the name of a rateLimits entry or { key, limit, … }' }).optional()
    .describe('This route\'s limit, inline or by name from rateLimits; applies on top of rateLimits.default'),
  cache: RouteCacheSchema.optional().describe('Cache GET/HEAD answers of this route'),
  invalidate: z.array(tag).optional()
    .describe('Tags a successful (2xx) write on this route invalidates; its own URL and parent collection always are'),
})

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

export const ConfigSchema = z.strictObject({
  listen: z.strictObject({
    host: z.string().default('0.0.0.0').describe('Address the proxy listens on'),
    port: port.default(8080).describe('Port the proxy listens on'),
    timeouts: z.strictObject({
      headers: duration.prefault('10s').describe('Time a client has to send the request head (slowloris guard)'),
      request: duration.prefault('5m').describe('Time a client has to send the whole request, body included'),
      keepAlive: duration.prefault('5s').describe('How long an idle client connection stays open'),
    }).prefault({}),
    maxHeaderSize: size.prefault('16KiB').describe('Largest request head accepted (431 above)'),
    maxBodySize: size.prefault('10MiB').describe('Largest request body accepted unless a route says otherwise (413 above)'),
  }).prefault({}).describe('The client-facing listener'),
  admin: z.strictObject({
    host: z.string().default('0.0.0.0').describe('Address of the admin listener (/healthz, /readyz)'),
    port: port.default(9090).describe('Port of the admin listener'),
    token: z.string().default('').describe('Bearer token for POST /cache/purge and POST /reload; empty disables them'),
    metrics: z.boolean().default(true).describe('Keep Prometheus metrics and serve them at /metrics; false: none are kept (no cost per request) and /metrics answers 404'),
  }).prefault({}).describe('The admin listener for probes'),
  upstream: z.strictObject({
    url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
      .describe('Origin of the API behind the gateway'),
    connections: z.int().min(1).max(10_000).default(64).describe('Keep-alive connections in the upstream pool'),
    maxQueue: z.int().min(0).max(1_000_000).default(1024)
      .describe('Requests waiting for a free upstream connection beyond this are shed: 503 with Retry-After'),
    timeouts: z.strictObject({
      connect: duration.prefault('2s').describe('Time to open a TCP/TLS connection to the upstream (504 above)'),
      headers: duration.prefault('15s').describe('Time for the upstream to send response headers (504 above)'),
      body: duration.prefault('30s').describe('Longest pause between two chunks of the upstream response body'),
      keepAlive: duration.prefault('4s').describe('How long an idle upstream connection is kept; keep it below the upstream\'s own'),
    }).prefault({}),
    host: z.enum(['preserve', 'upstream']).default('preserve')
      .describe('Host header sent upstream: the client\'s (preserve) or the upstream URL\'s host (upstream)'),
  }).describe('The API the gateway protects'),
  // One of url (a single Redis), sentinels + name (Redis Sentinel) or cluster (Redis Cluster); none of them
  // keeps everything in process. deploy/REDIS-TOPOLOGY.md has examples of each.
  redis: z.strictObject({
    url: z.string().refine((url) => url === '' || /^rediss?:\/\//.test(url), 'expected a redis:// or rediss:// URL, or empty')
      .default('').describe('redis:// URL of one Redis shared by replicas; empty (and no sentinels or cluster) keeps everything in process'),
    sentinels: z.array(z.strictObject({
      host: z.string().min(1).describe('Redis Sentinel (instead of url): a sentinel to ask for the current master of `name`; failovers are followed'),
      port: port.default(26379).describe('That sentinel\'s port'),
    })).default([]).describe('Redis Sentinel (instead of url): sentinels to ask for the current master of `name`; failovers are followed'),
    name: z.string().default('').describe('Master group name the sentinels monitor (`sentinel monitor <name> …`); required with sentinels'),
    cluster: z.array(z.union([
      z.strictObject({
        host: z.string().min(1).describe('Cluster node host name or address'),
        port: port.default(6379).describe('Cluster node port'),
      }),
      z.string().refine((text) => parseRedisNode(text) !== undefined).transform((text) => parseRedisNode(text)!),
    ], { error: 'expected { host, port }, host:port or redis://host:port (credentials go in redis.password)' })).prefault([])
      .describe('Redis Cluster (instead of url): some of its nodes, as { host, port }, "host:port" or "redis://host:port"; the rest are discovered'),
    username: z.string().default('').describe('ACL user for the Redis servers behind sentinels or cluster (with url, put it in the URL)'),
    password: z.string().default('').describe('Password of the Redis servers behind sentinels or cluster (with url, put it in the URL)'),
    sentinelPassword: z.string().default('').describe('Password of the sentinels themselves, when they require one'),
    timeout: duration.prefault('100ms').describe('Longest wait for one Redis command before the in-process fallback answers'),
    keyPrefix: z.string().default('gw:').describe('Prefix of every key the gateway writes'),
  }).superRefine(refuseMixedRedisTopologies).prefault({}),
  identity: z.strictObject({
    jwt: z.strictObject({
      secret: z.string().default('').describe('HS256/384/512 secret that signs the API\'s bearer tokens'),
      jwksUrl: z.union([z.literal(''), z.url({ protocol: /^https?$/ })]).default('').describe('JWKS URL for RS/ES/EdDSA-signed tokens (instead of secret)'),
      issuer: z.string().optional().describe('Required iss claim'),
      audience: z.string().optional().describe('Required aud claim'),
    }).prefault({}).describe('How `user` keys are verified: the sub claim of a valid bearer JWT'),
    ipv6Prefix: z.int().min(1).max(128).default(64).describe('IPv6 clients are grouped by this prefix for ip keys (one /64 is one subscriber)'),
  }).prefault({}),
  cache: z.strictObject({
    memory: size.prefault('64MiB').describe('Bound of the in-process cache (L1), in bytes of stored responses'),
    maxObjectSize: size.prefault('1MiB').describe('Larger responses are passed through uncached'),
    waitForLeader: duration.prefault('10s').describe('How long concurrent misses for one key wait for the first one\'s answer'),
    l1TtlWithoutPubSub: duration.prefault('5s').describe('When cross-replica invalidation is down, in-process entries live at most this long'),
  }).prefault({}).describe('The two-tier response cache (L1 in process, L2 in Redis when Redis is configured)'),
  sentry: z.strictObject({
    dsn: z.string().refine((dsn) => dsn === '' || /^https?:\/\/[^@\s]+@[^/\s]+\/.*\d+$/.test(dsn), 'expected a Sentry DSN like https://key@o1.ingest.sentry.io/123, or empty')
      .default('').describe('Where errors and traces go; empty turns Sentry off (and it then costs nothing)'),
    environment: z.string().default('production').describe('Sentry environment'),
    release: z.string().optional().describe('Sentry release'),
    tracesSampleRate: z.number().min(0).max(1).default(0.1).describe('Share of requests traced (a sampled incoming trace is always continued)'),
    cacheHitSampleRate: z.number().min(0).max(1).optional().describe('Share of cache hits traced; default a tenth of tracesSampleRate'),
    profilesSampleRate: z.number().min(0).max(1).default(0).describe('Accepted for the plan\'s config; profiling needs @sentry/profiling-node, which is not bundled'),
    reportUpstream5xx: z.boolean().default(true).describe('Send an event for upstream 5xx answers (they are always counted)'),
    tunnel: z.strictObject({
      path: z.string().regex(/^\/\S*$/, 'expected a path starting with /').describe('Where the browser SDK\'s `tunnel` option posts envelopes'),
      allow: z.array(z.string().min(1)).min(1).describe('DSNs whose envelopes are forwarded; any other DSN is refused (403)'),
      maxSize: size.prefault('1MiB').describe('Largest envelope accepted (413 above)'),
      limit: rate.prefault('60/min').describe('Envelopes per client IP'),
    }).optional().describe('A first-party endpoint for browser events, so ad blockers do not drop them'),
  }).prefault({}).describe('Error reporting and tracing'),
  rateLimits: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'limit names are letters, digits, _ . -'), LimitSchema).default({})
    .describe('Named limits; `default` applies to every request'),
  rateLimiting: z.strictObject({
    legacyHeaders: z.boolean().default(false).describe('Also send X-RateLimit-Limit/-Remaining/-Reset'),
    allow: z.array(z.string()).default([]).describe('Never limited: client IPs or CIDRs, or user:<sub>'),
  }).prefault({}),
  trustedProxies: z.array(z.string().refine(isProxyAddress, 'expected an IP address, a CIDR, or loopback/linklocal/uniquelocal'))
    .default([])
    .describe('Peers (IPs, CIDRs, or loopback/linklocal/uniquelocal) whose X-Forwarded-For is believed'),
  unmatched: z.enum(['forward', 'reject']).default('forward')
    .describe('Requests no route matches: forward them unchanged, or answer 404'),
  log: z.strictObject({
    level: z.enum(LOG_LEVELS).default('info').describe('pino log level (LOG_LEVEL overrides it)'),
    requests: z.boolean().default(true).describe('One line per request (the access log); false keeps only notices'),
  }).prefault({}),
  workers: z.union([z.literal('auto'), z.int().min(1).max(256)], { error: 'expected auto or a number of worker processes' }).default(1)
    .describe('Processes sharing the listen port (node:cluster); auto: one per core. More than one needs Redis, as replicas do'),
  shutdown: z.strictObject({
    drainTimeout: duration.prefault('10s').describe('On SIGTERM, how long in-flight requests may take before connections are cut'),
  }).prefault({}),
  routes: z.array(RouteSchema).default([]).superRefine(refuseDuplicateNames)
    .describe('Route rules, matched by method, path and host'),
})

function isProxyAddress(text: string): boolean {
  try { proxyAddr.compile(text); return true } catch { return false }
}

/** "host:port" or "redis://host:port" → { host, port }; anything else (a path, credentials, rediss://) → undefined. */
function parseRedisNode(text: string): { host: string; port: number } | undefined {
  let url: URL
  try { url = new URL(/^[a-z]+:\/\//i.test(text) ? text : `redis://${text}`) } catch { return undefined }
  if (url.protocol !== 'redis:' || url.username || url.password || (url.pathname !== '' && url.pathname !== '/') || url.search || !url.hostname) return undefined
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port ? Number(url.port) : 6379 }
}

/** url, sentinels and cluster are three ways to reach Redis: at most one may be set. */
function refuseMixedRedisTopologies(redis: { url: string; sentinels: unknown[]; name: string; cluster: unknown[]; username: string; password: string }, ctx: z.RefinementCtx): void {
  const set = (['url', 'sentinels', 'cluster'] as const).filter((key) => redis[key].length > 0)
  for (const key of set.slice(1)) {
    ctx.addIssue({ code: 'custom', path: [key], message: `cannot be combined with redis.${set[0]}: set one of url, sentinels or cluster` })
  }
  if (redis.sentinels.length && !redis.name) {
    ctx.addIssue({ code: 'custom', path: ['name'], message: 'required with redis.sentinels: the master group name the sentinels monitor' })
  }
  if (redis.url && (redis.username || redis.password)) {
    ctx.addIssue({ code: 'custom', path: [redis.password ? 'password' : 'username'], message: 'with redis.url, put the credentials in the URL (redis://user:secret@host:6379)' })
  }
}

function refuseDuplicateNames(routes: Array<{ name: string }>, ctx: z.RefinementCtx): void {
  const seen = new Map<string, number>()
  routes.forEach((route, index) => {
    const first = seen.get(route.name)
    if (first === undefined) seen.set(route.name, index)
    else ctx.addIssue({ code: 'custom', path: [index, 'name'], message: `route name "${route.name}" is already used by routes[${first}]` })
  })
}

export type Config = z.output<typeof ConfigSchema>
export type RouteConfig = z.output<typeof RouteSchema>
export type LimitConfig = z.output<typeof LimitSchema>
export type RouteCacheConfig = z.output<typeof RouteCacheSchema>

type JsonSchema = { [key: string]: unknown }

/** The JSON Schema editors validate the YAML with. Leaves also accept a "${VAR:-default}" placeholder. */
export function configJsonSchema(): JsonSchema {
  const schema = z.toJSONSchema(ConfigSchema, { io: 'input' }) as JsonSchema
  return { ...allowPlaceholders(schema), title: 'API gateway configuration' }
}

const PLACEHOLDER = { type: 'string', pattern: '\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}' }

function allowPlaceholders(node: JsonSchema): JsonSchema {
  if (node.type === 'object' && node.properties) {
    const properties = Object.fromEntries(Object.entries(node.properties as Record<string, JsonSchema>)
      .map(([key, child]) => [key, allowPlaceholders(child)]))
    return { ...node, properties }
  }
  if (node.type === 'array' && node.items) return { ...node, items: allowPlaceholders(node.items as JsonSchema) }
  if (node.anyOf) return { ...node, anyOf: [...(node.anyOf as JsonSchema[]).map(allowPlaceholders), PLACEHOLDER] }
  if (node.type === undefined && node.enum === undefined) return node
  const { description, default: fallback, ...leaf } = node
  return { ...(description ? { description } : {}), ...(fallback !== undefined ? { default: fallback } : {}), anyOf: [leaf, PLACEHOLDER] }
}

/** Rows of the README's config reference: key path, what it takes, default, description. */
export function configReference(): string {
  const rows = ['| key | value | default | what it does |', '|---|---|---|---|']
  const walk = (node: JsonSchema, path: string): void => {
    const properties = node.properties as Record<string, JsonSchema> | undefined
    if (properties && node.type === 'object') {
      for (const [key, child] of Object.entries(properties)) walk(child, path ? `${path}.${key}` : key)
      return
    }
    if (node.type === 'array' && (node.items as JsonSchema).type === 'object') {
      walk(node.items as JsonSchema, `${path}[]`)
      return
    }
    const shown = node.default === undefined ? '' : `\`${JSON.stringify(node.default)}\``
    rows.push(`| \`${path}\` | ${describeValue(node)} | ${shown} | ${node.description ?? ''} |`)
  }
  walk(z.toJSONSchema(ConfigSchema, { io: 'input' }) as JsonSchema, '')
  return rows.join('\n')
}

function describeValue(node: JsonSchema): string {
  if (node.enum) return (node.enum as unknown[]).map((v) => `\`${String(v)}\``).join(' \\| ')
  if (node.anyOf) return (node.anyOf as JsonSchema[]).map(describeValue).join(' or ')
  if (node.type === 'array') return `list of ${describeValue(node.items as JsonSchema)}`
  if (node.pattern && String(node.pattern).includes('ms|s|m|h')) return 'duration'
  if (node.pattern && String(node.pattern).includes('KMG')) return 'size'
  return String(node.type ?? 'object')
}
