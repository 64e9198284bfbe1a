// The configs the benchmark writes: gateway YAML for each scenario (the SalesFlow ones derived from
// config/gateway.yaml), and nginx's. Gateway YAML uses ${PORT} and ${ADMIN_PORT}; startGateway sets them.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { ROOT } from './procs.ts'

export interface GatewayOptions {
  upstream: string
  redis?: string
  /** Keeps each gateway's keys (counters, L2 entries) apart in the one bench Redis. */
  keyPrefix?: string
  /** Top-level `workers:` (node:cluster), only when the comparison asks for it. */
  workers?: number
  /** false: `admin.metrics: false` (no Prometheus metrics kept). */
  metrics?: boolean
}

/**
 * Rate limits are multiplied by this in the benchmark configs: a load generator on one IP would trip
 * SalesFlow's real limits (100/min per IP) within a second, and a 429 measures something else. The
 * limiter still does all its work; it just never says no.
 */
export const LIMIT_SCALE = 1_000_000

/** No cache, no limits, no access log (metrics kept unless `metrics: false`): what a proxy costs. */
export function passThroughYaml(options: GatewayOptions, extra = ''): string {
  const lines = [
    'listen: { host: 127.0.0.1, port: ${PORT} }',
    `admin: { host: 127.0.0.1, port: \${ADMIN_PORT}${options.metrics === false ? ', metrics: false' : ''} }`,
    'log: { requests: false }',
    `upstream: { url: "${options.upstream}", connections: 64 }`,
  ]
  if (options.workers) lines.push(`workers: ${options.workers}`)
  if (options.redis) lines.push(`redis: { url: "${options.redis}"${options.keyPrefix ? `, keyPrefix: "${options.keyPrefix}"` : ''} }`)
  return `${lines.join('\n')}\n${extra}`
}

/** The two cached routes of the synthetic scenarios: /api/leads/:id is stored; /nostore/ answers no-store. */
export const CACHED_ROUTES = [
  'routes:',
  '  - { name: lead, match: GET /api/leads/:id, cache: { ttl: 10m } }',
  '  - { name: nostore, match: GET /nostore/:id, cache: { ttl: 10m } }',
  '',
].join('\n')

/** L1 of one byte: nothing fits, so every lookup goes to Redis (L2). */
export function l2OnlyYaml(upstream: string, redis: string): string {
  return passThroughYaml({ upstream }, `redis: { url: "${redis}", keyPrefix: "bench-l2:" }\ncache: { memory: 1 }\n${CACHED_ROUTES}`)
}

export function sentryYaml(upstream: string, dsn: string, tracesSampleRate: number): string {
  return passThroughYaml({ upstream }, `sentry: { dsn: "${dsn}", tracesSampleRate: ${tracesSampleRate} }\n`)
}

type Tree = Record<string, unknown>

function salesFlow(): Tree {
  return parse(readFileSync(join(ROOT, 'config/gateway.yaml'), 'utf8')) as Tree
}

/** Every `limit`/`burst` rate ("100/min", "30/10s") in the tree, multiplied by LIMIT_SCALE. */
function scaleLimits(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(scaleLimits)
  if (!node || typeof node !== 'object') return
  const tree = node as Tree
  for (const [key, value] of Object.entries(tree)) {
    const rate = typeof value === 'string' ? /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(value) : null
    if ((key === 'limit' || key === 'burst') && rate) tree[key] = `${Number(rate[1]) * LIMIT_SCALE}/${rate[2]}`
    else scaleLimits(value)
  }
}

/**
 * Pass-through with SalesFlow's rate limits (config/gateway.yaml's rateLimits and the routes' own
 * limits, scaled), without its cache rules: in process, or with counters in Redis.
 */
export function salesFlowLimitsYaml(options: GatewayOptions): string {
  const config = salesFlow()
  const routes = (config.routes as Tree[]).map((route) => {
    const { cache: _cache, invalidate: _invalidate, ...rest } = route
    return rest
  }).filter((route) => route.rateLimit)
  // identity: the user-keyed limits need verified tokens (none arrive here, so they key on nothing).
  const limits: Tree = { identity: config.identity, rateLimits: config.rateLimits, rateLimiting: config.rateLimiting, routes }
  scaleLimits(limits)
  return passThroughYaml(options, stringify(limits))
}

/**
 * config/gateway.yaml itself, with limits scaled and listeners on 127.0.0.1: rate limits, the cache
 * rules, JWT identity, Sentry (tracesSampleRate 0.1) and the access log. Upstream, Redis and the
 * Sentry DSN come from the environment, as in production (UPSTREAM_URL, REDIS_URL, SENTRY_DSN).
 */
export function salesFlowFullYaml(): string {
  const config = salesFlow()
  scaleLimits(config)
  ;(config.listen as Tree).host = '127.0.0.1'
  ;(config.admin as Tree).host = '127.0.0.1'
  return stringify(config)
}

/** nginx as a reverse proxy with 64 idle upstream keep-alive connections; with cache, proxy_cache for 10 minutes. */
export function nginxConf(o: { dir: string; port: number; upstream: string; cache: boolean }): string {
  const cache = o.cache
    ? `      proxy_cache bench;\n      proxy_cache_valid 200 10m;\n      proxy_cache_lock on;\n      add_header X-Cache-Status $upstream_cache_status;\n`
    : ''
  return `# written by test/bench (nginx ${o.cache ? 'proxy_cache' : 'proxy_pass'})
worker_processes 1;
worker_rlimit_nofile 20000;
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  client_body_temp_path ${o.dir}/client_body;
  proxy_temp_path ${o.dir}/proxy_temp;
  fastcgi_temp_path ${o.dir}/fastcgi_temp;
  uwsgi_temp_path ${o.dir}/uwsgi_temp;
  scgi_temp_path ${o.dir}/scgi_temp;
  proxy_cache_path ${o.dir}/cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=60m use_temp_path=off;
  upstream backend {
    server ${o.upstream};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${o.port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${cache}    }
  }
}
`
}
