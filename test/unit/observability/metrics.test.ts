// The metrics module in-process: the pure label helpers, histogram buckets, and createMetrics fed through
// the real diagnostics channels with hand-made Ctx objects and a stand-in GatewayState.
import t from 'tap'
import type { Ctx } from '../../../gateway/pipeline.ts'
import type { GatewayState } from '../../../gateway/server.ts'
import type { LimitPolicy } from '../../../gateway/config/compile.ts'
import { GatewayError } from '../../../gateway/errors.ts'
import { publishCacheEviction, publishNotice, publishRequest } from '../../../gateway/observability/events.ts'
import {
  cacheIndex, createMetrics, hitRatio, METHODS, methodIndex, observe, statusClassIndex, STATUS_CLASSES, type Count, type Timing,
} from '../../../gateway/observability/metrics.ts'

/** Sample name + labels (as written) → value, for the lines these tests look at. */
function samples(text: string): Map<string, number> {
  const map = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    map.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return map
}

const policy = (name: string, kind: 'ip' | 'user'): LimitPolicy =>
  ({ name, key: { kind }, points: 10, windowS: 60, burst: null, blockS: 0, cost: 1 })

interface FakeState {
  plan: { limitPolicies: Map<string, LimitPolicy> }
  services: {
    upstream: { pool: { stats: Record<string, number> } }
    redis: { isUp(): boolean } | null
    cache: { store: { l1: { lru: { size: number; calculatedSize: number } } } } | null
  }
  draining: boolean
}

function fakeState(): FakeState {
  return {
    plan: { limitPolicies: new Map([['default', policy('default', 'ip')], ['mine', policy('mine', 'user')]]) },
    services: {
      upstream: { pool: { stats: { connected: 3, free: 1, pending: 4, queued: 2, running: 2, size: 6 } } },
      redis: null,
      cache: null,
    },
    draining: false,
  }
}

function fakeCtx(state: FakeState, fields: Partial<Record<keyof Ctx, unknown>> & { method?: string; routeName?: string }): Ctx {
  const { method = 'GET', routeName, ...rest } = fields
  return {
    t0: performance.now() - 5,
    req: { method },
    plan: state.plan,
    route: routeName ? { name: routeName } : undefined,
    limit: undefined,
    cache: undefined,
    upstreamResponse: undefined,
    status: 200,
    error: undefined,
    ...rest,
  } as unknown as Ctx
}

t.test('status classes: a client that went away (or never got a status) is 4xx', async (t) => {
  const label = (status: number | undefined, closed = false) => STATUS_CLASSES[statusClassIndex(status, closed)]
  t.equal(label(200), '2xx')
  t.equal(label(304), '3xx')
  t.equal(label(429), '4xx')
  t.equal(label(504), '5xx')
  t.equal(label(undefined), '4xx')
  t.equal(label(200, true), '4xx', 'closed mid-body: 499, as in the log line')
  t.equal(label(799), '5xx', 'out-of-range statuses stay within the five classes')
})

t.test('methods: the standard ones by name, anything else OTHER', async (t) => {
  t.equal(METHODS[methodIndex('GET')], 'GET')
  t.equal(METHODS[methodIndex('PATCH')], 'PATCH')
  t.equal(METHODS[methodIndex('PROPFIND')], 'OTHER')
  t.equal(METHODS[methodIndex('get')], 'OTHER', 'node upper-cases methods; anything else is not standard')
  t.equal(METHODS[methodIndex(undefined)], 'OTHER')
})

t.test('cache outcomes and the hit ratio', async (t) => {
  t.equal(cacheIndex({ kind: 'hit', tier: 'l2', ttlS: 1 }), 1)
  t.equal(cacheIndex({ kind: 'stale', tier: 'l1', ttlS: -1, why: 'stale-if-error' }), 2)
  t.equal(cacheIndex({ kind: 'bypass', reason: 'authenticated' }), 6)
  const counts = (values: number[]): Count[] => values.map((value) => ({ labels: {}, value }))
  // hit l1, hit l2, stale l1, stale l2, revalidated, miss, bypass
  t.equal(hitRatio(counts([3, 1, 1, 0, 1, 4, 100])), 0.5, '(3 + 1 + 1) / 10: bypass is not a lookup')
  t.equal(hitRatio(counts([0, 0, 0, 0, 0, 0, 7])), undefined, 'only bypasses: no ratio')
  t.equal(hitRatio([]), undefined)
})

t.test('histogram buckets are upper-inclusive; beyond the last bound only +Inf counts', async (t) => {
  const timing: Timing = { labels: {}, count: 0, sum: 0, buckets: new Float64Array(15) }
  for (const seconds of [0.0005, 0.001, 0.0011, 30, 31]) observe(timing, seconds)
  t.equal(timing.count, 5)
  t.same([...timing.buckets.slice(0, 2)], [2, 1], '≤ 1 ms: two; ≤ 2.5 ms: one')
  t.equal(timing.buckets[13], 1, '≤ 30 s')
  t.equal(timing.buckets[14], 1, 'above every bound')
  t.ok(Math.abs(timing.sum - 61.0026) < 1e-9)
})

t.test('createMetrics: counters from the request channel, gauges from the state, notices', async (t) => {
  const state = fakeState()
  const metrics = createMetrics(state as unknown as GatewayState)
  t.teardown(() => metrics.close())

  const decisions = (allowed: boolean) => ({ decisions: [{ policy: 'default', allowed }, { policy: 'mine', allowed }], binding: {} })
  publishRequest(fakeCtx(state, { routeName: 'lead', cache: { kind: 'hit', tier: 'l1', ttlS: 9 }, limit: decisions(true) }))
  publishRequest(fakeCtx(state, { routeName: 'lead', cache: { kind: 'miss', stored: true }, limit: decisions(true), upstreamResponse: { status: 200, headersMs: 12 } }))
  publishRequest(fakeCtx(state, { routeName: 'lead', status: 429, limit: decisions(false), error: new GatewayError('rate_limited') }))
  // A reload compiles new LimitPolicy objects with the same names: the same series must continue.
  state.plan = { limitPolicies: new Map([['default', policy('default', 'ip')], ['mine', policy('mine', 'user')]]) }
  publishRequest(fakeCtx(state, { routeName: 'lead', cache: { kind: 'hit', tier: 'l2', ttlS: 9 }, limit: decisions(true) }))
  publishRequest(fakeCtx(state, { method: 'MKCOL', status: 502, error: new GatewayError('upstream_unreachable') }))
  publishRequest(fakeCtx(state, { routeName: 'lead', status: undefined, error: new GatewayError('client_closed') }))
  publishCacheEviction('evict')
  publishNotice({ level: 'info', msg: 'config reloaded', event: 'config_reloaded' })
  publishNotice({ level: 'error', msg: 'config reload failed', event: 'config_reload_failed' })
  publishNotice({ level: 'error', msg: 'redis unavailable', event: 'redis_outage' })
  publishNotice({ level: 'info', msg: 'cache purged' })

  let got = samples(await metrics.render())
  t.equal(got.get('gateway_requests_total{route="lead",method="GET",status_class="2xx"}'), 3)
  t.equal(got.get('gateway_requests_total{route="lead",method="GET",status_class="4xx"}'), 2, 'the 429 and the client that left')
  t.equal(got.get('gateway_requests_total{route="(unmatched)",method="OTHER",status_class="5xx"}'), 1)
  t.equal(got.get('gateway_request_duration_seconds_count{route="lead",method="GET",status_class="2xx"}'), 3)
  t.equal(got.get('gateway_request_duration_seconds_bucket{route="lead",method="GET",status_class="2xx",le="+Inf"}'), 3)
  t.equal(got.get('gateway_request_duration_seconds_bucket{route="lead",method="GET",status_class="2xx",le="0.001"}'), 0, 'each took 5 ms or more')
  t.equal(got.get('gateway_cache_lookups_total{route="lead",result="hit",tier="l1"}'), 1)
  t.equal(got.get('gateway_cache_lookups_total{route="lead",result="hit",tier="l2"}'), 1)
  t.equal(got.get('gateway_cache_lookups_total{route="lead",result="miss",tier="none"}'), 1)
  t.ok(Math.abs(got.get('gateway_cache_hit_ratio{route="lead"}')! - 2 / 3) < 1e-9)
  t.equal(got.get('gateway_ratelimit_decisions_total{route="lead",policy="default",key="ip",decision="allowed"}'), 3, 'one series across the reload')
  t.equal(got.get('gateway_ratelimit_decisions_total{route="lead",policy="mine",key="user",decision="limited"}'), 1)
  t.equal(got.get('gateway_upstream_errors_total{route="(unmatched)",code="upstream_unreachable"}'), 1)
  t.equal(got.get('gateway_upstream_errors_total{route="lead",code="client_closed"}'), undefined, 'a client leaving is not an upstream error')
  t.equal(got.get('gateway_upstream_response_seconds_sum{route="lead",status_class="2xx"}'), 0.012)
  t.equal(got.get('gateway_cache_evictions_total'), 1)
  t.equal(got.get('gateway_config_reloads_total{result="ok"}'), 1)
  t.equal(got.get('gateway_config_reloads_total{result="failed"}'), 1)
  t.equal(got.get('gateway_redis_outages_total'), 1)
  t.equal(got.get('gateway_upstream_pool{state="queued"}'), 2)
  t.equal(got.get('gateway_upstream_pool{state="running"}'), 2)
  t.equal(got.get('gateway_cache_l1_bytes'), 0, 'no cache: 0')
  t.equal(got.get('gateway_redis_up'), undefined, 'no redis: absent')

  let up = true
  state.services.redis = { isUp: () => up }
  state.services.cache = { store: { l1: { lru: { size: 2, calculatedSize: 4096 } } } }
  got = samples(await metrics.render())
  t.equal(got.get('gateway_redis_up'), 1)
  t.equal(got.get('gateway_cache_l1_bytes'), 4096)
  t.equal(got.get('gateway_cache_l1_entries'), 2)
  up = false
  got = samples(await metrics.render())
  t.equal(got.get('gateway_redis_up'), 0)
  t.equal(got.get('gateway_requests_total{route="lead",method="GET",status_class="2xx"}'), 3, 'scraping twice does not double the counters')
})

t.test('close() stops listening', async (t) => {
  const state = fakeState()
  const metrics = createMetrics(state as unknown as GatewayState)
  metrics.close()
  publishRequest(fakeCtx(state, { routeName: 'lead' }))
  t.notMatch(await metrics.render(), /gateway_requests_total/, 'the registry is empty and nothing was counted')
})
