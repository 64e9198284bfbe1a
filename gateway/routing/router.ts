// Route matching: method + path pattern + optional host, backed by find-my-way's radix tree.
import FindMyWay from 'find-my-way'

export interface RouteMatchSpec { methods: readonly string[]; path: string; host?: string }
export interface RouteMatch<R> { route: R; params: Record<string, string> }
export interface Router<R> { find(method: string, host: string | undefined, url: string): RouteMatch<R> | null }

export const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

export class RouteConflict extends Error {
  readonly routeIndex: number
  constructor(routeIndex: number, message: string) {
    super(message)
    this.name = 'RouteConflict'
    this.routeIndex = routeIndex
  }
}

/**
 * Builds the matcher. GET routes also answer HEAD (HEAD is GET without a body) unless some route
 * claims HEAD for the same path itself. Two routes claiming the same method and path shape conflict.
 */
export function createRouter<R>(routes: ReadonlyArray<{ route: R; specs: readonly RouteMatchSpec[] }>): Router<R> {
  // Case and a trailing "/" do not pick a different route: an upstream that ignores them (many frameworks
  // do) must not let "/API/auth/login" or "/api/auth/login/" dodge the login route's limit. Params keep
  // their case. See pathForMatching for the rest.
  const router = FindMyWay({ caseSensitive: false, ignoreTrailingSlash: true, maxParamLength: 500 })
  const claimed = new Map<string, number>()
  const implicitHeads: Array<{ spec: RouteMatchSpec; route: R }> = []
  routes.forEach(({ route, specs }, index) => {
    for (const spec of specs) {
      for (const method of spec.methods) {
        const claim = `${method} ${spec.path.replace(/:[^/]+/g, ':').toLowerCase().replace(/(.)\/$/, '$1')} ${spec.host ?? '*'}`
        const owner = claimed.get(claim)
        if (owner !== undefined) throw new RouteConflict(index, `${method} ${spec.path} is already matched by routes[${owner}]`)
        claimed.set(claim, index)
        register(router, method, spec, route)
      }
      if (spec.methods.includes('GET') && !spec.methods.includes('HEAD')) implicitHeads.push({ spec, route })
    }
  })
  for (const { spec, route } of implicitHeads) {
    if (!router.hasRoute('HEAD', spec.path, spec.host ? { host: spec.host } : {})) register(router, 'HEAD', spec, route)
  }
  // Clients ask for the same few paths again and again: remember recent answers, per method, keyed by the
  // path (and the host, when some route names one). The key cannot be ambiguous: a request target holds no
  // space. The memo is emptied when full, and rebuilt with the router on reload.
  const hostAware = routes.some(({ specs }) => specs.some((spec) => spec.host !== undefined))
  const recent = new Map<string, Map<string, RouteMatch<R> | null>>()
  let remembered = 0
  return {
    find(method, host, url) {
      const path = withoutQuery(url)
      const key = hostAware ? `${path} ${host ?? ''}` : path
      let byPath = recent.get(method)
      let match = byPath?.get(key)
      if (match !== undefined) return match
      const found = router.find(method as FindMyWay.HTTPMethod, pathForMatching(path), host ? { host: stripPort(host) } : {})
      match = found ? { route: found.store as R, params: Object.freeze(found.params) as Record<string, string> } : null
      if (remembered >= RECENT_MATCHES) { recent.clear(); remembered = 0; byPath = undefined }
      if (!byPath) recent.set(method, byPath = new Map())
      byPath.set(key, match)
      remembered++
      return match
    },
  }
}

const RECENT_MATCHES = 10_000

function register<R>(router: FindMyWay.Instance<FindMyWay.HTTPVersion.V1>, method: string, spec: RouteMatchSpec, route: R): void {
  const options = spec.host ? { constraints: { host: spec.host } } : {}
  router.on(method as FindMyWay.HTTPMethod, spec.path, options, () => {}, route)
}

/** "/a/b?x=1" → "/a/b": the path a route, a log line or an error message speaks of. */
export function withoutQuery(url: string): string {
  const queryAt = url.indexOf('?')
  return queryAt === -1 ? url : url.slice(0, queryAt)
}

/**
 * The path as routes see it, so that spellings an upstream may resolve to the same path cannot pick a
 * laxer route (or none): percent-escapes of unreserved characters and of "/" decoded, ";params" cut from
 * each segment (Tomcat and Spring ignore them, so "/assets/..;/api/leads/1" is a lead there), runs of "/"
 * merged, "." and ".." segments removed (RFC 3986 §5.2.4), as nginx does before matching a location.
 * Only matching uses it: the upstream gets the target as the client sent it.
 */
export function pathForMatching(path: string): string {
  if (!path.includes('%') && !path.includes('//') && !path.includes('/.') && !path.includes(';')) return path
  const decoded = path.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16))
    return /[A-Za-z0-9\-._~/]/.test(char) ? char : escape
  })
  const segments: string[] = []
  for (const part of decoded.split('/').slice(1)) {
    const param = part.indexOf(';')
    const segment = param === -1 ? part : part.slice(0, param)
    if (segment === '..') segments.pop()
    else if (segment !== '.' && segment !== '') segments.push(segment)
  }
  const last = decoded.slice(decoded.lastIndexOf('/') + 1).split(';')[0]
  const trailing = (last === '' || last === '.' || last === '..') && segments.length ? '/' : ''
  return `/${segments.join('/')}${trailing}`
}

function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1)
  const colon = host.indexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}
