// The cache a gateway process runs: tiers, invalidation, and the bookkeeping for coalescing and
// background refreshes. Built when some route caches; kept across reloads while cache.* is unchanged.
import type { Config } from '../config/schema.ts'
import type { SharedRedis } from '../redis.ts'
import { MemoryTier } from './l1.ts'
import { RedisTier } from './l2.ts'
import { TieredStore } from './tiered.ts'
import { Invalidation } from './invalidation.ts'

export interface ResponseCache {
  readonly settings: Config['cache']
  readonly store: TieredStore
  readonly invalidation: Invalidation
  /** Misses being fetched, by primary key: later misses wait for the first one (coalescing). */
  readonly inflight: Map<string, Promise<void>>
  /** Entries being refreshed in the background (stale-while-revalidate), at most once each. */
  readonly refreshing: Set<string>
  close(): Promise<void>
}

export function openResponseCache(config: Config, redis: SharedRedis | null): ResponseCache {
  const settings = config.cache
  let invalidation: Invalidation | undefined
  const l1 = new MemoryTier(settings.memory, Date.now, () => (invalidation?.deaf ? settings.l1TtlWithoutPubSub : undefined))
  const l2 = redis ? new RedisTier(redis, config.redis.keyPrefix) : null
  invalidation = new Invalidation(l1, l2, redis, config.redis.keyPrefix)
  invalidation.listen()
  return {
    settings,
    store: new TieredStore(l1, l2),
    invalidation,
    inflight: new Map(),
    refreshing: new Set(),
    close: () => invalidation.close(),
  }
}
