// Phase `admit`: refuses requests the gateway will not forward, before any work is done for them.
// Oversized heads (431) and malformed HTTP are refused earlier by node's parser (see server.ts).
import type { Ctx, Verdict } from './pipeline.ts'
import { GatewayError } from './errors.ts'

export function admit(ctx: Ctx): Verdict {
  const { req } = ctx
  // Only origin-form targets ("/path?query"): an absolute URL would let a client aim the proxy elsewhere.
  if (!req.url?.startsWith('/')) throw new GatewayError('bad_request', { detail: 'the request target must be a path starting with /' })
  // node keeps the first of several Host headers; another hop may keep the last. RFC 9112 §3.2: refuse.
  if (hostHeaders(req.rawHeaders) > 1) throw new GatewayError('bad_request', { detail: 'more than one Host header' })
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > maxBodySize(ctx)) {
    throw new GatewayError('body_too_large', { detail: `the body may be at most ${maxBodySize(ctx)} bytes` })
  }
  return undefined
}

function hostHeaders(raw: readonly string[]): number {
  let count = 0
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') count++
  return count
}

export function maxBodySize(ctx: Ctx): number {
  return ctx.route?.maxBodySize ?? ctx.plan.config.listen.maxBodySize
}
