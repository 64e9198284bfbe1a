// Many replicas on the other Redis topologies: real gateway processes against a real 3-master Redis
// Cluster (redis.cluster) and a real Redis Sentinel (redis.sentinels + name). Each proves what the
// single-Redis tests prove for redis.url: the replicas spend one budget, share L2, and a write through
// one replica drops what it made stale on the others, with the keys spread over the cluster's nodes.
import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Cluster } from 'ioredis'
import { hash } from '../../gateway/cache/keys.ts'
import { configFor, startGateway, type RunningGateway } from '../helpers/gateway.ts'
import { startCountingUpstream } from '../helpers/counting-upstream.ts'
import { httpRequest } from '../helpers/http.ts'
import { startRedisCluster } from '../helpers/redis-cluster.ts'
import { run } from '../helpers/run.ts'
import { until } from '../helpers/wait.ts'
import { startRedisSentinel } from '../helpers/redis-sentinel.ts'

// An upstream with versioned items: PATCH /items/:id bumps the item's version.
const versions = new Map<string, number>()
const json = (res: ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
const upstream = await startCountingUpstream((req: IncomingMessage, res: ServerResponse) => {
  const path = (req.url ?? '/').split('?')[0]!
  const item = /^\/(items|other)\/(\w+)$/.exec(path)
  if (req.method === 'POST' && path.startsWith('/login')) return json(res, 401, { error: 'wrong password' })
  if (req.method === 'PATCH' && item) {
    versions.set(path, (versions.get(path) ?? 1) + 1)
    return json(res, 200, { path, version: versions.get(path) })
  }
  if (req.method === 'GET') return json(res, 200, { path, version: versions.get(path) ?? 1 })
  json(res, 404, {})
})
t.teardown(() => upstream.close())

const ROUTES = `
rateLimits:
  default: { key: ip, limit: 1000/min }
routes:
  - { name: login, match: POST /login, rateLimit: { key: ip, limit: 5/min } }
  - { name: bursty, match: POST /login/bursty, rateLimit: { key: ip, limit: 2/min, burst: 2/min } }
  - { name: outage, match: POST /login/outage, rateLimit: { key: ip, limit: 3/min } }
  - { name: item, match: GET /items/:id, cache: { ttl: 5m, scope: public, tags: ["item:{id}", "catalog"] } }
  - { name: items, match: GET /items, cache: { ttl: 5m, scope: public, tags: ["catalog"] } }
  - { name: other, match: GET /other/:id, cache: { ttl: 5m, scope: public, tags: ["other:{id}"] } }
  - { name: item writes, match: PATCH /items/:id, invalidate: ["item:{id}", "catalog"] }
`

// Both topologies get redis.timeout 500ms (default 100ms): this file is about where keys go, and on two
// shared cores a slow moment must not send a command to the in-process fallback.

// The cache key includes Host: behind a load balancer every replica sees the same one.
const HOST = 'shop.example.test'
const get = async (gw: RunningGateway, path: string) => {
  const res = await httpRequest(`${gw.url}${path}`, { headers: { host: HOST } })
  return { status: res.status, body: res.body, xCache: res.headers['x-cache'], cacheStatus: String(res.headers['cache-status'] ?? '') }
}
const post = async (gw: RunningGateway, path: string) => (await httpRequest(`${gw.url}${path}`, { method: 'POST', body: '' })).status

/** Alternates requests between the replicas; returns the statuses in order. */
async function alternate(replicas: RunningGateway[], n: number, path: string): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < n; i++) statuses.push(await post(replicas[i % replicas.length]!, path))
  return statuses
}

t.test('Redis Cluster (3 masters)', async (t) => {
  const servers = await startRedisCluster()
  t.teardown(() => servers.stop())
  // A client of our own, to see where keys went (slots and the nodes serving them).
  const probe = new Cluster(servers.nodes, { enableOfflineQueue: true })
  probe.on('error', () => {}) // while the cluster is killed below
  t.teardown(() => probe.disconnect())
  await new Promise((resolve) => probe.once('ready', resolve))
  const nodeOf = async (key: string) => {
    const slot = Number(await probe.call('CLUSTER', 'KEYSLOT', key))
    return { slot, node: probe.slots[slot]![0]! }
  }
  const keyCounts = (pattern: string) => Promise.all(probe.nodes('master').map(async (node) => (await node.keys(pattern)).length))
  /** On how many nodes keys matching the pattern live. */
  const keysByNode = async (pattern: string) => (await keyCounts(pattern)).filter((count) => count > 0).length
  /** A stores into L2 after answering: wait until the cluster holds `n` entries before asking B. */
  const entriesStored = (n: number) => until(async () => (await keyCounts('topo:c:*')).reduce((sum, count) => sum + count, 0) >= n, 2000)

  // The cluster as a list of "host:port" strings, as an operator would write it.
  const config = configFor(upstream.url, `redis: { cluster: [${servers.addresses.map((a) => `"${a}"`).join(', ')}], keyPrefix: "topo:", timeout: 500ms }\n${ROUTES}`)
  const a = await startGateway(config)
  t.teardown(() => a.stop())
  const b = await startGateway(config)
  t.teardown(() => b.stop())
  const readiness = await Promise.all([a, b].map(async (gw) => (await (await fetch(`${gw.adminUrl}/readyz`)).json()) as { checks: { redis?: unknown } }))
  t.match(readiness.map((r) => r.checks.redis), [{ ok: true }, { ok: true }], 'both replicas are connected to the cluster')

  t.test('two replicas spend one rate-limit budget', async (t) => {
    const statuses = await alternate([a, b], 8, '/login')
    t.same(statuses, [401, 401, 401, 401, 401, 429, 429, 429], 'five tries in all, across both replicas')
    t.equal(upstream.count('/login', 'POST'), 5, 'the upstream saw exactly five')
    const bursty = await alternate([a, b], 6, '/login/bursty')
    t.same(bursty, [401, 401, 401, 401, 429, 429], 'limit and burst (two counters, two keys) are shared too')
    t.ok(await keysByNode('topo:rl:*') >= 1, 'the counters live in the cluster')
  })

  t.test('L2 is shared: stored through A, a hit on B', async (t) => {
    const first = await get(a, '/items/1')
    t.equal(first.xCache, 'MISS')
    t.ok(await entriesStored(1), 'A wrote the entry to the cluster')
    const onB = await get(b, '/items/1')
    t.equal(onB.xCache, 'HIT', 'B hits on an entry it never fetched')
    t.match(onB.cacheStatus, /detail=l2/, 'from L2')
    t.equal(onB.body, first.body)
    t.match((await get(b, '/items/1')).cacheStatus, /detail=l1/, 'then from its own L1')
    t.equal(upstream.count('/items/1'), 1, 'one upstream request for both replicas')
  })

  t.test('a write through A drops the entries on B (L1 and L2), tags spanning slots and nodes', async (t) => {
    // Fill both replicas' L1 (and L2) with entries under several tags.
    const paths = ['/items/1', '/items/2', '/items', '/other/1']
    for (const [i, path] of paths.entries()) {
      await get(a, path)
      t.ok(await entriesStored(i + 1), `${path} is in L2`)
      t.equal((await get(b, path)).xCache, 'HIT', `${path} is cached on B`)
      t.equal((await get(b, path)).xCache, 'HIT')
      t.equal((await get(a, path)).xCache, 'HIT')
    }
    t.same(paths.map((p) => upstream.count(p)), [1, 1, 1, 1], 'each fetched once')

    // The tags PATCH /items/1 invalidates: its URL, its parent collection and the route's tags.
    const tags = ['url:/items/1', 'url:/items', 'item:1', 'catalog']
    const placed = await Promise.all(tags.map((tag) => nodeOf(`topo:t:${hash(tag)}`)))
    t.ok(new Set(placed.map((p) => p.slot)).size === tags.length, `the tag sets are in ${tags.length} different slots`)
    t.ok(new Set(placed.map((p) => p.node)).size >= 2, `on ${new Set(placed.map((p) => p.node)).size} different nodes`)
    t.ok(await keysByNode('topo:c:*') >= 2, 'the entries are spread over several nodes too')

    const members = await Promise.all(tags.map((tag) => probe.scard(`topo:t:${hash(tag)}`)))
    t.same(members, [1, 1, 1, 3], 'each tag set lists its entries (catalog: /items/1, /items/2 and /items)')

    const written = await httpRequest(`${a.url}/items/1`, { method: 'PATCH', headers: { host: HOST, 'content-type': 'application/json' }, body: '{}' })
    t.equal(written.status, 200)
    t.equal(written.body, JSON.stringify({ path: '/items/1', version: 2 }))
    const left = await Promise.all(tags.map((tag) => probe.exists(`topo:t:${hash(tag)}`)))
    t.same(left, [0, 0, 0, 0], 'A deleted the tag sets before answering the write')

    // A dropped them before answering; B hears of it through pub/sub within milliseconds.
    let item = await get(b, '/items/1')
    const reached = item.xCache === 'MISS' || await until(async () => (item = await get(b, '/items/1')).xCache === 'MISS', 2000)
    t.ok(reached, `B no longer serves its L1 copy (last: ${item.xCache})`)
    t.equal(JSON.parse(item.body).version, 2, 'and fetched the new version: L2 was dropped too (an L2 hit would be version 1)')
    t.equal((await get(b, '/items')).xCache, 'MISS', 'the parent collection was dropped (url tag of the parent)')
    t.equal((await get(b, '/items/2')).xCache, 'MISS', 'an entry sharing only the route tag "catalog" was dropped')
    t.equal((await get(b, '/other/1')).xCache, 'HIT', 'an unrelated entry stayed')
    t.ok(await entriesStored(4), 'B stored its refetches in L2')
    t.equal((await get(a, '/items/2')).xCache, 'HIT', 'A finds B\'s fresh copy of /items/2 in L2')
    t.same(paths.map((p) => upstream.count(p)), [2, 2, 2, 1], 'one refetch each, none for /other/1')
  })

  t.test('every answer came from the cluster, not from the in-process fallback', async (t) => {
    for (const gw of [a, b]) t.notOk(gw.logs.find((l) => l.event === 'redis_outage'), 'no Redis command failed or timed out')
  })

  t.test('the whole cluster down: no 5xx, limits per replica, one outage notice; back: shared again', async (t) => {
    await servers.kill()
    const during = [...await alternate([a], 5, '/login/outage'), (await get(a, '/other/1')).status, (await get(a, '/other/2')).status]
    t.same(during, [401, 401, 401, 429, 429, 200, 200], 'the insurance limiter holds the limit; L1 and the upstream serve')
    await a.waitForLog((l) => l.event === 'redis_outage')
    t.equal(a.logs.filter((l) => l.event === 'redis_outage').length, 1, 'the outage is reported once, not per request')
    const readyz = await (await fetch(`${a.adminUrl}/readyz`)).json() as { checks: { redis: { ok: boolean } } }
    t.equal(readyz.checks.redis.ok, false, '/readyz shows Redis down')
    await servers.restart()
    await Promise.all([a, b].map((gw) => gw.waitForLog((l) => l.event === 'redis_recovered', 20_000)))
    t.pass('both replicas reconnected to the restarted cluster')
    t.same(await alternate([a, b], 4, '/login/outage'), [401, 401, 401, 429], 'one shared budget again (the restarted cluster is empty)')
  })
})

t.test('Redis Sentinel: the replicas follow the master the sentinel names, through a failover', async (t) => {
  const servers = await startRedisSentinel({ replica: true })
  t.teardown(() => servers.stop())
  const [sentinel] = servers.sentinels
  const config = configFor(upstream.url, `redis: { sentinels: [{ host: ${sentinel!.host}, port: ${sentinel!.port} }], name: ${servers.name}, keyPrefix: "sentinel:", timeout: 500ms }\n${ROUTES}`)
  const a = await startGateway(config)
  t.teardown(() => a.stop())
  const b = await startGateway(config)
  t.teardown(() => b.stop())
  const before = upstream.count('/login', 'POST')
  t.same(await alternate([a, b], 8, '/login'), [401, 401, 401, 401, 401, 429, 429, 429], 'five tries in all, across both replicas')
  t.equal(upstream.count('/login', 'POST') - before, 5)

  const oldMaster = await servers.masterPort()
  const newMaster = await servers.failover()
  t.not(newMaster, oldMaster, 'the sentinel promoted the replica')
  // Each replica drops its connection on the sentinel's +switch-master and reconnects to the new master.
  await Promise.all([a, b].map((gw) => gw.waitForLog((l) => l.event === 'redis_recovered', 10_000)))
  t.pass('both replicas reconnected')
  t.same(await alternate([a, b], 2, '/login'), [429, 429], 'the spent budget is still spent')
  t.same(await alternate([a, b], 6, '/login/bursty'), [401, 401, 401, 401, 429, 429], 'new counters are shared after the failover')
  const keys = (await run('redis-cli', ['-p', String(newMaster), '--scan', '--pattern', 'sentinel:rl:bursty*'])).stdout.trim().split('\n').filter(Boolean)
  t.ok(keys.length >= 1, `the new counters were written to the new master (${keys.join(', ')})`)
})
