import t from 'tap'
import { cacheStatusHeaders } from '../../../gateway/cache/status.ts'

t.test('Cache-Status (RFC 9211) and X-Cache for every outcome', async (t) => {
  t.same(cacheStatusHeaders({ kind: 'hit', tier: 'l1', ttlS: 42 }), { 'cache-status': 'gateway; hit; ttl=42; detail=l1', 'x-cache': 'HIT' })
  t.same(cacheStatusHeaders({ kind: 'hit', tier: 'l1', ttlS: 9, coalesced: true }), { 'cache-status': 'gateway; hit; ttl=9; detail=coalesced', 'x-cache': 'HIT' })
  t.same(cacheStatusHeaders({ kind: 'stale', tier: 'l2', ttlS: -3, why: 'stale-if-error' }), { 'cache-status': 'gateway; hit; ttl=-3; detail=stale-if-error', 'x-cache': 'STALE' })
  t.same(cacheStatusHeaders({ kind: 'revalidated', stored: true }), { 'cache-status': 'gateway; fwd=stale; fwd-status=304; stored', 'x-cache': 'MISS' })
  t.same(cacheStatusHeaders({ kind: 'miss', stored: true }), { 'cache-status': 'gateway; fwd=miss; stored', 'x-cache': 'MISS' })
  t.same(cacheStatusHeaders({ kind: 'miss', stored: false, reason: 'no-store' }), { 'cache-status': 'gateway; fwd=miss; detail=no-store', 'x-cache': 'MISS' })
  t.same(cacheStatusHeaders({ kind: 'bypass', reason: 'authenticated' }), { 'cache-status': 'gateway; fwd=bypass; detail=authenticated', 'x-cache': 'BYPASS' })
})
