// Phase `route`: finds the route for the request; unmatched requests are forwarded or refused (404).
import type { Ctx, Verdict } from '../pipeline.ts'
import { GatewayError } from '../errors.ts'
import { withoutQuery } from './router.ts'

export function route(ctx: Ctx): Verdict {
  const { req, plan } = ctx
  const match = plan.router.find(req.method ?? 'GET', req.headers.host, req.url ?? '/')
  if (match) {
    ctx.route = match.route
    ctx.params = match.params
    return undefined
  }
  if (plan.config.unmatched === 'reject') throw new GatewayError('route_not_found', { detail: `no route matches ${req.method} ${withoutQuery(req.url ?? '/')}` })
  return undefined
}
