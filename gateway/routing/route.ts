// Phase `route`: finds the route for the request; unmatched requests are forwarded or refused (404).
import type { Ctx, Verdict } from '../pipeline.ts'
import { GatewayError } from '../errors.ts'

export function route(ctx: Ctx): Verdict {
  const { req, plan } = ctx
  const match = plan.router.find(req.method ?? 'GET', req.headers.host, req.url ?? '/')
  if (match) {
    ctx.route = match.route
    ctx.params = match.params
    return undefined
  }
  if (plan.config.unmatched === 'reject') throw new GatewayError('route_not_found', { detail: `no route matches ${req.method} ${pathOf(req.url)}` })
  return undefined
}

function pathOf(url: string | undefined): string {
  const path = url ?? '/'
  const queryAt = path.indexOf('?')
  return queryAt === -1 ? path : path.slice(0, queryAt)
}
