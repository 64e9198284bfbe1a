// One rate-limiter-flexible limiter per limit policy. With Redis, counters are shared by every replica
// and an in-memory insurance limiter answers whenever Redis errs or is not ready; keys over their limit
// are remembered in memory, so refusing them costs no Redis round trip.
import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible'
import type { LimitPolicy, Plan } from '../config/compile.ts'
import type { SharedRedis } from '../redis.ts'
import type { LimiterResult } from './decision.ts'

export interface Limiter { consume(key: string, points: number): Promise<LimiterResult> }

export function createLimiters(plan: Plan, redis: SharedRedis | null): ReadonlyMap<string, Limiter> {
  const prefix = `${plan.config.redis.keyPrefix}rl:`
  return new Map([...plan.limitPolicies.values()].map((policy) => [policy.name, createLimiter(policy, redis, prefix)]))
}

/**
 * `limit` is the main counter; `burst`, when set, is a second counter consulted only once the main one
 * is spent (BurstyRateLimiter). `block` locks a key out for its duration once it goes over `limit`.
 */
function createLimiter(policy: LimitPolicy, redis: SharedRedis | null, prefix: string): Limiter {
  const main = counter(redis, `${prefix}${policy.name}`, policy.points, policy.windowS, policy.blockS)
  if (!policy.burst) return main
  return new BurstyRateLimiter(main, counter(redis, `${prefix}${policy.name}:burst`, policy.burst.points, policy.burst.windowS, 0))
}

function counter(redis: SharedRedis | null, keyPrefix: string, points: number, duration: number, blockDuration: number) {
  const memory = new RateLimiterMemory({ keyPrefix, points, duration, blockDuration })
  if (!redis) return memory
  return new ReportingRedisLimiter(redis, {
    storeClient: redis.client,
    keyPrefix,
    points,
    duration,
    blockDuration,
    insuranceLimiter: memory,
    rejectIfRedisNotReady: true,
    inMemoryBlockOnConsumed: points + 1,
    inMemoryBlockDuration: blockDuration,
  })
}

type UpsertFn = (...args: unknown[]) => Promise<unknown>
const redisUpsert = (RateLimiterRedis.prototype as unknown as { _upsert: UpsertFn })._upsert

/**
 * rate-limiter-flexible answers from the insurance limiter on any Redis error without telling anyone, so a
 * Redis that fails only for the limiters (slow, say) would silently turn shared limits into per-replica
 * ones. Its one store call reports to SharedRedis, which makes an outage episode of it (one log line,
 * one Sentry event) like every other Redis failure.
 */
class ReportingRedisLimiter extends RateLimiterRedis {
  readonly redis: SharedRedis
  constructor(redis: SharedRedis, options: ConstructorParameters<typeof RateLimiterRedis>[0]) {
    super(options)
    this.redis = redis
  }
  async _upsert(...args: unknown[]): Promise<unknown> {
    try {
      const result = await redisUpsert.apply(this, args)
      this.redis.reportSuccess()
      return result
    } catch (err) {
      this.redis.reportFailure(err)
      throw err
    }
  }
}
