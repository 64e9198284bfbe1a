// Tags → entries, across replicas. Each stored entry's key is added to a Redis set per tag (TTL'd with
// the entry); invalidating a tag deletes the entries in its set and publishes the keys, so every
// replica drops its L1 copies within milliseconds. No KEYS, no SCAN. While pub/sub is down, L1 entries
// live at most cache.l1TtlWithoutPubSub, and L1 is emptied when it comes back (messages may be lost).
//
// Redis Cluster: a tag set (<prefix>t:<hash of tag>) and the entries it lists (<prefix>c:<primary>) hash
// to slots of their own, spread over the nodes; no hash tags. Colocating them would take one slot for the
// whole cache (an entry carries several tags, a tag lists many entries), and nothing here needs two keys
// changed atomically: each set and each entry is valid alone, every key has a TTL, and invalidation is
// best effort (the same read, then delete, as on one Redis). So every command names one key, and several
// keys mean several commands, batched into one write per node by auto-pipelining. No SUNION, no DEL k1 k2,
// no pipeline across tags: on a cluster those fail with CROSSSLOT.
import { randomUUID } from 'node:crypto'
import type { SharedRedis, RedisClient } from '../redis.ts'
import { publishNotice } from '../observability/events.ts'
import type { MemoryTier } from './l1.ts'
import type { RedisTier } from './l2.ts'
import { hash } from './keys.ts'

interface Message { from: string; tags: string[]; primaries: string[] }

export class Invalidation {
  readonly #l1: MemoryTier
  readonly #l2: RedisTier | null
  readonly #redis: SharedRedis | null
  readonly #prefix: string
  readonly #channel: string
  readonly #instance = randomUUID()
  #subscriber: RedisClient | null = null
  #subscribed = false
  #everSubscribed = false

  constructor(l1: MemoryTier, l2: RedisTier | null, redis: SharedRedis | null, keyPrefix: string) {
    this.#l1 = l1
    this.#l2 = l2
    this.#redis = redis
    this.#prefix = `${keyPrefix}t:`
    this.#channel = `${keyPrefix}invalidate`
  }

  /** True when this replica would miss other replicas' invalidations (Redis configured, pub/sub down). */
  get deaf(): boolean {
    return this.#redis !== null && !this.#subscribed
  }

  listen(): void {
    if (!this.#redis || this.#subscriber) return
    const subscriber = this.#subscriber = this.#redis.duplicate()
    subscriber.on('error', () => {}) // the shared connection reports outages; this one only listens
    subscriber.on('ready', () => {
      void subscriber.subscribe(this.#channel).then(() => {
        // Messages sent while we were away are lost: what L1 holds may be stale, so start over.
        if (this.#everSubscribed) this.#l1.clear()
        this.#subscribed = this.#everSubscribed = true
      }, () => {})
    })
    subscriber.on('close', () => { this.#subscribed = false })
    // Cluster only: a node left (failover, removal). If it held our subscription, ioredis resubscribes on
    // another node by itself, without a 'close', and what was published meanwhile is lost: start over.
    subscriber.on('-node', () => { if (this.#subscribed) this.#l1.clear() })
    subscriber.on('messageBuffer', (_channel: Buffer, payload: Buffer) => {
      let message: Message
      try { message = JSON.parse(payload.toString()) as Message } catch { return }
      if (message.from === this.#instance) return
      for (const primary of message.primaries) this.#l1.delete(primary)
      for (const tag of message.tags) this.#l1.deleteTagged(tag)
    })
  }

  /** Records the entry's key under each of its tags in Redis (best effort; L1 indexes tags itself). */
  remember(primary: string, tags: readonly string[], ttlMs: number): void {
    if (!this.#redis?.isUp() || !tags.length || ttlMs <= 0) return
    const redis = this.#redis
    // One pipeline per tag: its three commands name one key (one slot), so they are valid on a cluster.
    for (const tag of tags) {
      const key = this.#prefix + hash(tag)
      redis.client.pipeline().sadd(key, primary).pexpire(key, Math.ceil(ttlMs), 'NX').pexpire(key, Math.ceil(ttlMs), 'GT')
        .exec().catch((err: unknown) => redis.reportFailure(err))
    }
  }

  /** Drops every entry with any of the tags, here, in Redis and on every other replica. */
  async invalidate(tags: readonly string[]): Promise<{ local: number; shared: number }> {
    let local = 0
    for (const tag of tags) local += this.#l1.deleteTagged(tag)
    if (!this.#redis?.isUp() || !tags.length) return { local, shared: 0 }
    try {
      const client = this.#redis.client
      const keys = tags.map((tag) => this.#prefix + hash(tag))
      // SMEMBERS per tag and a union here, not SUNION: the tag sets live in different slots.
      const members = [...new Set((await Promise.all(keys.map((key) => client.smembers(key)))).flat())]
      for (const primary of members) this.#l1.delete(primary)
      await this.#l2?.deleteMany(members)
      await Promise.all(keys.map((key) => client.del(key)))
      const message: Message = { from: this.#instance, tags: [...tags], primaries: members }
      await this.#redis.client.publish(this.#channel, JSON.stringify(message))
      return { local, shared: members.length }
    } catch (err) {
      this.#redis.reportFailure(err)
      publishNotice({ level: 'warn', msg: 'cache invalidation reached only this replica', tags, err })
      return { local, shared: 0 }
    }
  }

  async close(): Promise<void> {
    const subscriber = this.#subscriber
    this.#subscriber = null
    if (!subscriber) return
    await subscriber.quit().catch(() => {})
    // Also closes what QUIT leaves open: a sentinel client's failover-detector connections.
    subscriber.disconnect()
  }
}
