// What a Plan needs at run time besides itself: the upstream pool, the limiters and the token verifier.
// Built at start and on every reload; the Redis connection is the process's and outlives reloads.
import type { Plan } from './config/compile.ts'
import type { SharedRedis } from './redis.ts'
import { closeUpstream, openUpstream, type Upstream } from './upstream/pool.ts'
import { createLimiters, type Limiter } from './ratelimit/limiters.ts'
import { createTokenVerifier, type TokenVerifier } from './routing/client.ts'
import { openResponseCache, type ResponseCache } from './cache/service.ts'

export interface Services {
  readonly upstream: Upstream
  readonly limiters: ReadonlyMap<string, Limiter>
  readonly verifyToken: TokenVerifier | null
  readonly redis: SharedRedis | null
  /** null when no route caches. */
  readonly cache: ResponseCache | null
}

export function openServices(plan: Plan, redis: SharedRedis | null, previous?: Services): Services {
  const sameUpstream = previous && JSON.stringify(previous.upstream.settings) === JSON.stringify(plan.config.upstream)
  const sameCache = previous?.cache && JSON.stringify(previous.cache.settings) === JSON.stringify(plan.config.cache)
  return {
    cache: !plan.caching ? null : sameCache ? previous!.cache : openResponseCache(plan.config, redis),
    upstream: sameUpstream ? previous.upstream : openUpstream(plan.config.upstream),
    limiters: createLimiters(plan, redis),
    verifyToken: createTokenVerifier(plan.config.identity.jwt),
    redis,
  }
}

/** After a reload: the old pool finishes its in-flight requests unless the new services kept it. */
export async function retireServices(old: Services, current: Services, graceMs: number): Promise<void> {
  if (old.cache && old.cache !== current.cache) await old.cache.close()
  if (old.upstream !== current.upstream) await closeUpstream(old.upstream, graceMs)
}
