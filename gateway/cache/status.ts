// Pure: what the cache did, said once and used for Cache-Status (RFC 9211), X-Cache, the log and metrics.
import type { NoStoreReason } from './policy.ts'

export type CacheOutcome =
  | { kind: 'hit'; tier: 'l1' | 'l2'; ttlS: number; coalesced?: boolean }
  | { kind: 'stale'; tier: 'l1' | 'l2'; ttlS: number; why: 'stale-while-revalidate' | 'stale-if-error' }
  | { kind: 'revalidated'; stored: boolean }
  | { kind: 'miss'; stored: boolean; reason?: NoStoreReason }
  | { kind: 'bypass'; reason: NoStoreReason }

const NAME = 'gateway'

export function cacheStatusHeaders(outcome: CacheOutcome): { 'cache-status': string; 'x-cache': string } {
  switch (outcome.kind) {
    case 'hit':
      return { 'cache-status': `${NAME}; hit; ttl=${outcome.ttlS}${outcome.coalesced ? '; detail=coalesced' : `; detail=${outcome.tier}`}`, 'x-cache': 'HIT' }
    case 'stale':
      return { 'cache-status': `${NAME}; hit; ttl=${outcome.ttlS}; detail=${outcome.why}`, 'x-cache': 'STALE' }
    case 'revalidated':
      return { 'cache-status': `${NAME}; fwd=stale; fwd-status=304${outcome.stored ? '; stored' : ''}`, 'x-cache': 'MISS' }
    case 'miss':
      return { 'cache-status': `${NAME}; fwd=miss${outcome.stored ? '; stored' : ''}${outcome.reason ? `; detail=${outcome.reason}` : ''}`, 'x-cache': 'MISS' }
    case 'bypass':
      return { 'cache-status': `${NAME}; fwd=bypass; detail=${outcome.reason}`, 'x-cache': 'BYPASS' }
  }
}

/** One word for logs and metric labels. */
export function outcomeLabel(outcome: CacheOutcome | undefined): string {
  return outcome ? outcome.kind : 'none'
}
