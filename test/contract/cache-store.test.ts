// One suite for every CacheStore: memory (L1) and Redis (L2: a real redis-server, and a real 3-master
// Redis Cluster), plus the tiering.
import t from 'tap'
import { MemoryTier } from '../../gateway/cache/l1.ts'
import { RedisTier } from '../../gateway/cache/l2.ts'
import { TieredStore } from '../../gateway/cache/tiered.ts'
import type { CacheStore, Entry } from '../../gateway/cache/store.ts'
import { openRedis } from '../../gateway/redis.ts'
import { startRedis } from '../helpers/redis.ts'
import { startRedisCluster } from '../helpers/redis-cluster.ts'

const entry = (body: string, over: Partial<Entry> = {}): Entry => {
  const now = Date.now()
  return {
    status: 200, headers: { 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] }, body: Buffer.from(body), storedAt: now,
    initialAgeS: 0, freshUntil: now + 60_000, staleWhileRevalidateUntil: now + 60_000, staleIfErrorUntil: now + 60_000,
    vary: { 'accept-language': 'de' }, tags: ['lead:1'], ...over,
  }
}

const redisServer = await startRedis()
const redis = openRedis({ url: redisServer.url, timeout: 200, keyPrefix: 'contract:' })!
await redis.waitUntilUp(5000)
t.teardown(async () => { await redis.close(); await redisServer.stop() })
const clusterServers = await startRedisCluster()
const cluster = openRedis({ cluster: clusterServers.nodes, timeout: 200 })!
t.teardown(async () => { await cluster.close(); await clusterServers.stop() })
t.ok(await cluster.waitUntilUp(10_000), 'the cluster client is ready')

function storeContract(name: string, make: () => CacheStore) {
  t.test(`${name}: the CacheStore contract`, async (t) => {
    const store = make()
    t.equal(await store.get('missing'), undefined)
    const stored = entry('héllo')
    await store.set('k1', { entries: [stored, entry('other', { vary: { 'accept-language': 'en' } })] })
    const back = await store.get('k1')
    t.equal(back?.entries.length, 2, 'every variant comes back')
    t.same(back!.entries[0], stored, 'headers (lists too), times, vary and tags survive')
    t.ok(Buffer.isBuffer(back!.entries[0]!.body) && back!.entries[0]!.body.equals(Buffer.from('héllo')), 'the body bytes too')
    await store.delete('k1')
    t.equal(await store.get('k1'), undefined, 'delete drops every variant')
    await store.set('gone', { entries: [entry('old', { freshUntil: 0, staleWhileRevalidateUntil: 0, staleIfErrorUntil: 0 })] })
    t.equal(await store.get('gone'), undefined, 'an entry of no further use is not kept')
    await store.set('short', { entries: [entry('short', { freshUntil: Date.now() + 150, staleWhileRevalidateUntil: 0, staleIfErrorUntil: 0 })] })
    t.ok(await store.get('short'))
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal(await store.get('short'), undefined, 'entries expire when they stop being useful')
  })
}

storeContract('L1 (memory)', () => new MemoryTier(1024 * 1024, Date.now))
storeContract('L2 (redis)', () => new RedisTier(redis, 'contract:'))
storeContract('L2 (redis cluster)', () => new RedisTier(cluster, 'contract:'))

for (const [name, shared] of [['redis', redis], ['redis cluster', cluster]] as const) {
  t.test(`L2 (${name}): deleteMany drops entries whatever slots they hash to`, async (t) => {
    const l2 = new RedisTier(shared, 'many:')
    const primaries = Array.from({ length: 20 }, (_, i) => `p${i}`)
    for (const p of primaries) await l2.set(p, { entries: [entry(p)] })
    if (name === 'redis cluster') {
      const slots = new Set(await Promise.all(primaries.map((p) => clusterServers.cli(['cluster', 'keyslot', `many:c:${p}`]))))
      t.ok(slots.size > 1, `the keys span ${slots.size} slots (one DEL with all of them would be CROSSSLOT)`)
    }
    await l2.deleteMany(primaries.slice(0, 15))
    t.same(await Promise.all(primaries.map(async (p) => (await l2.get(p)) !== undefined)), primaries.map((_, i) => i >= 15), 'exactly the named ones are gone')
  })
}

t.test('L1 stays within its byte bound and indexes tags', async (t) => {
  const l1 = new MemoryTier(64 * 1024, Date.now)
  for (let i = 0; i < 200; i++) l1.set(`k${i}`, { entries: [entry('x'.repeat(4096), { tags: [`t${i % 2}`] })] })
  t.ok(l1.lru.calculatedSize <= 64 * 1024, `calculated size ${l1.lru.calculatedSize}`)
  t.ok(l1.lru.size < 200, 'old entries were evicted')
  t.ok(l1.get('k199'))
  const remaining = l1.lru.size
  t.equal(l1.deleteTagged('t1'), Math.floor(remaining / 2), 'a tag removes exactly its entries')
  t.equal(l1.get('k199'), undefined)
  t.ok(l1.get('k198'))
})

t.test('tiered: L1 answers synchronously; an L2 hit is promoted', async (t) => {
  const l1 = new MemoryTier(1024 * 1024, Date.now)
  const l2 = new RedisTier(redis, 'tiered:')
  const tiered = new TieredStore(l1, l2)
  await l2.set('p', { entries: [entry('from redis')] })
  const first = tiered.get('p')
  t.ok(first instanceof Promise, 'a miss in memory asks Redis')
  t.equal((await first)?.tier, 'l2')
  const second = tiered.get('p')
  t.notOk(second instanceof Promise, 'now in memory: no promise on the hot path')
  t.equal((second as { tier: string }).tier, 'l1')
  tiered.set('p', entry('german'))
  tiered.set('p', entry('english', { vary: { 'accept-language': 'en' } }))
  tiered.set('p', entry('german v2'))
  const variants = l1.get('p')!.entries
  t.same(variants.map((e) => e.body.toString()).sort(), ['english', 'german v2'], 'a variant replaces its own kind only')
})
