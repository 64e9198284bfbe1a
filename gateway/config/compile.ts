// Turns a validated Config into the frozen Plan the hot path reads: the route table, per-route settings
// resolved once, and features a route does not use left as null (so a request only tests for null).
import proxyAddr from 'proxy-addr'
import type { Config, RouteConfig } from './schema.ts'
import { MATCH_PATTERN } from './schema.ts'
import { ALL_METHODS, createRouter, RouteConflict, type RouteMatchSpec, type Router } from '../routing/router.ts'

export interface Route {
  readonly name: string
  readonly index: number
  readonly maxBodySize: number
}

export interface Plan {
  readonly file: string
  readonly config: Config
  readonly routes: readonly Route[]
  readonly router: Router<Route>
  /** proxy-addr's trust function: is the peer at this hop a proxy whose X-Forwarded-* we believe? */
  readonly isTrustedProxy: (address: string, hop: number) => boolean
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
  const routes = config.routes.map((route, index): Route => Object.freeze({
    name: route.name,
    index,
    maxBodySize: route.maxBodySize ?? config.listen.maxBodySize,
  }))
  let router: Router<Route>
  try {
    router = createRouter(routes.map((route, index) => ({ route, specs: matchSpecs(config.routes[index]!.match) })))
  } catch (err) {
    if (err instanceof RouteConflict) throw new CompileError([{ path: ['routes', err.routeIndex, 'match'], message: err.message }])
    throw new CompileError([{ path: ['routes'], message: (err as Error).message }])
  }
  return Object.freeze({
    file,
    config,
    routes: Object.freeze(routes),
    router,
    isTrustedProxy: proxyAddr.compile(config.trustedProxies),
  })
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
