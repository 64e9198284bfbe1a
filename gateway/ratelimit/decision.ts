// Pure: whatever a limiter resolved or rejected with becomes one LimitDecision; several decisions become
// the binding one and the response headers (draft-ietf-httpapi-ratelimit-headers-11, plus the legacy trio).
import type { OutgoingHttpHeaders } from 'node:http'
import type { LimitPolicy } from '../config/compile.ts'

export interface LimitDecision {
  allowed: boolean
  /** The limit's name, as in RateLimit-Policy. */
  policy: string
  limit: number
  remaining: number
  /** Until the window resets (or a lockout ends). */
  resetMs: number
  windowS: number
}

/** rate-limiter-flexible's result shape (RateLimiterRes), resolved (allowed) or rejected (limited). */
export interface LimiterResult { remainingPoints: number; msBeforeNext: number }

export function toDecision(policy: LimitPolicy, result: LimiterResult, allowed: boolean): LimitDecision {
  return {
    allowed,
    policy: policy.name,
    limit: policy.points,
    remaining: Math.max(0, result.remainingPoints),
    resetMs: Math.max(0, result.msBeforeNext),
    windowS: policy.windowS,
  }
}

/** The strictest decision: a refusal (the longest wait among refusals), else the least remaining. */
export function bindingDecision(decisions: readonly LimitDecision[]): LimitDecision | undefined {
  let binding: LimitDecision | undefined
  for (const decision of decisions) {
    if (!binding) binding = decision
    else if (decision.allowed !== binding.allowed) binding = decision.allowed ? binding : decision
    else if (!decision.allowed ? decision.resetMs > binding.resetMs : decision.remaining < binding.remaining) binding = decision
  }
  return binding
}

export function rateLimitHeaders(decisions: readonly LimitDecision[], binding: LimitDecision, legacy: boolean): OutgoingHttpHeaders {
  const resetS = Math.ceil(binding.resetMs / 1000)
  const headers: OutgoingHttpHeaders = {
    'ratelimit-policy': decisions.map((d) => `"${d.policy}";q=${d.limit};w=${d.windowS}`).join(', '),
    ratelimit: `"${binding.policy}";r=${binding.remaining};t=${resetS}`,
  }
  if (legacy) {
    headers['x-ratelimit-limit'] = String(binding.limit)
    headers['x-ratelimit-remaining'] = String(binding.remaining)
    headers['x-ratelimit-reset'] = String(resetS)
  }
  if (!binding.allowed) headers['retry-after'] = String(Math.max(1, resetS))
  return headers
}

/**
 * rate-limiter-flexible resolves with a result (allowed), rejects with a result (limited), or rejects with
 * an Error when its store and its insurance both failed. The last fails open: a broken counter must not
 * take the API down with it.
 */
export async function decide(policy: LimitPolicy, attempt: Promise<LimiterResult>, onError: (err: unknown) => void): Promise<LimitDecision> {
  try {
    return toDecision(policy, await attempt, true)
  } catch (rejection) {
    if (isLimiterResult(rejection)) return toDecision(policy, rejection, false)
    onError(rejection)
    return toDecision(policy, { remainingPoints: policy.points, msBeforeNext: 0 }, true)
  }
}

function isLimiterResult(value: unknown): value is LimiterResult {
  return typeof value === 'object' && value !== null && !(value instanceof Error)
    && typeof (value as LimiterResult).msBeforeNext === 'number'
}
