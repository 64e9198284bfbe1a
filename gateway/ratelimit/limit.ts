// Phase `limit`: spends the request's points from every limit that applies (rateLimits.default and the
// route's own); the strictest decision wins. Over the limit → 429, and the upstream is never contacted.
// The RateLimit headers are added by `decorate`, on the 429 and on forwarded responses alike.
import { createHash } from 'node:crypto'
import type { LimitPolicy } from '../config/compile.ts'
import type { Ctx, Verdict } from '../pipeline.ts'
import { GatewayError } from '../errors.ts'
import { publishNotice } from '../observability/events.ts'
import { bindingDecision, decide } from './decision.ts'

export function limit(ctx: Ctx): Verdict | Promise<Verdict> {
  const policies = (ctx.route ?? ctx.plan.unmatched).rateLimits
  if (!policies || isAllowlisted(ctx)) return undefined
  return spend(ctx, policies)
}

async function spend(ctx: Ctx, policies: readonly LimitPolicy[]): Promise<Verdict> {  const decisions = await Promise.all(policies.map((policy) => decide(
    policy,
    ctx.services.limiters.get(policy.name)!.consume(counterKey(policy, ctx), policy.cost),
    (err) => publishNotice({ level: 'error', msg: 'rate limiter failed; request allowed', policy: policy.name, err }),
  )))
  const binding = bindingDecision(decisions)!
  ctx.limit = { decisions, binding }
  if (!binding.allowed) throw new GatewayError('rate_limited', { detail: `limit "${binding.policy}" exceeded; retry in ${Math.max(1, Math.ceil(binding.resetMs / 1000))}s` })
  return undefined
}

function isAllowlisted(ctx: Ctx): boolean {
  const { allow } = ctx.plan
  return allow.address(ctx.clientIp) || (ctx.client?.user != null && allow.users.has(ctx.client.user))
}

/** Whose counter the request spends from. Tokens and API keys are hashed: counters never hold secrets. */
export function counterKey(policy: LimitPolicy, ctx: Ctx): string {
  const client = ctx.client!
  switch (policy.key.kind) {
    case 'ip': return `ip:${client.ipKey}`
    case 'route': return 'route'
    case 'user': return client.user ? `user:${client.user}` : `ip:${client.ipKey}`
    case 'header': {
      const value = ctx.req.headers[policy.key.header]
      if (value === undefined || value === '') return `ip:${client.ipKey}`
      return `h:${createHash('sha256').update(String(value)).digest('base64url').slice(0, 32)}`
    }
  }
}
