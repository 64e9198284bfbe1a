// L2: Redis, shared by every replica. One key per primary holding all its variants, with a TTL; every
// command is bounded by redis.timeout, skipped while Redis is down, and a failure means "not cached".
// Every command names one key, so on a Redis Cluster the entries spread over the nodes by their own slots.
import type { SharedRedis } from '../redis.ts'
import { usefulUntil, type CacheStore, type Entry, type Variants } from './store.ts'

export class RedisTier implements CacheStore {
  readonly #redis: SharedRedis
  readonly #prefix: string

  constructor(redis: SharedRedis, keyPrefix: string) {
    this.#redis = redis
    this.#prefix = `${keyPrefix}c:`
  }

  async get(primary: string): Promise<Variants | undefined> {
    if (!this.#redis.isUp()) return undefined
    try {
      const blob = await this.#redis.client.getBuffer(this.#prefix + primary)
      this.#redis.reportSuccess()
      return blob ? decodeVariants(blob) : undefined
    } catch (err) {
      this.#redis.reportFailure(err)
      return undefined
    }
  }

  async set(primary: string, variants: Variants): Promise<void> {
    const ttl = Math.max(...variants.entries.map(usefulUntil)) - Date.now()
    if (ttl <= 0 || !this.#redis.isUp()) return
    try {
      await this.#redis.client.set(this.#prefix + primary, encodeVariants(variants), 'PX', Math.ceil(ttl))
    } catch (err) {
      this.#redis.reportFailure(err)
    }
  }

  async delete(primary: string): Promise<void> {
    await this.deleteMany([primary])
  }

  async deleteMany(primaries: readonly string[]): Promise<void> {
    if (!primaries.length || !this.#redis.isUp()) return
    try {
      // One DEL per entry, not DEL k1 k2 …: entries hash to different slots of a cluster (CROSSSLOT), and
      // need not go together. Auto-pipelining still sends them in one write (per node).
      const client = this.#redis.client
      await Promise.all(primaries.map((p) => client.del(this.#prefix + p)))
    } catch (err) {
      this.#redis.reportFailure(err)
    }
  }
}

/** [4-byte length][JSON of the entries without bodies][bodies, in order]: no base64 inflation. */
export function encodeVariants(variants: Variants): Buffer {
  const meta = Buffer.from(JSON.stringify(variants.entries.map(({ body, text: _text, ...rest }) => ({ ...rest, bodyLength: body.length }))))
  const head = Buffer.alloc(4)
  head.writeUInt32BE(meta.length)
  return Buffer.concat([head, meta, ...variants.entries.map((e) => e.body)])
}

export function decodeVariants(blob: Buffer): Variants {
  const metaLength = blob.readUInt32BE(0)
  const meta = JSON.parse(blob.subarray(4, 4 + metaLength).toString()) as Array<Omit<Entry, 'body'> & { bodyLength: number }>
  let offset = 4 + metaLength
  const entries = meta.map(({ bodyLength, ...entry }) => {
    const body = blob.subarray(offset, offset + bodyLength)
    offset += bodyLength
    return { ...entry, body }
  })
  return { entries }
}
