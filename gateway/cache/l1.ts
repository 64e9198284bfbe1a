// L1: the in-process tier. lru-cache bounded by bytes (maxSize + the size we compute), entries expiring
// when they stop being useful; plus a tag → keys index so invalidation never scans.
import { LRUCache } from 'lru-cache'
import { usefulUntil, type CacheStore, type Variants } from './store.ts'
import { publishCacheEviction } from '../observability/events.ts'
import { oneWriteText } from '../pipeline.ts'

export class MemoryTier implements CacheStore {
  readonly lru: LRUCache<string, Variants>
  readonly #byTag = new Map<string, Set<string>>()
  readonly #now: () => number
  /** A cap on entry lifetime, e.g. while cross-replica invalidation is down; undefined = none. */
  readonly #ttlCap: () => number | undefined

  constructor(maxBytes: number, now: () => number, ttlCap: () => number | undefined = () => undefined) {
    this.#now = now
    this.#ttlCap = ttlCap
    this.lru = new LRUCache<string, Variants>({
      maxSize: maxBytes,
      maxEntrySize: maxBytes,
      ttlAutopurge: false,
      // lru-cache reads the clock once per ttlResolution and arms a timer to forget the reading: at the
      // default 1 ms that was a timer every few hits. Freshness is judged by the entries themselves; the
      // LRU's own TTL only drops entries once useless (or past the cap while pub/sub is down), where
      // 100 ms early or late changes nothing.
      ttlResolution: 100,
      allowStale: false,
      dispose: (variants, primary, reason) => {
        this.#unindex(primary, variants)
        if (reason === 'evict') publishCacheEviction(reason)
      },
    })
  }

  get(primary: string): Variants | undefined {
    return this.lru.get(primary)
  }

  set(primary: string, variants: Variants): void {
    const cap = this.#ttlCap()
    const ttl = Math.min(Math.max(...variants.entries.map(usefulUntil)) - this.#now(), cap ?? Infinity)
    if (ttl <= 0) return void this.lru.delete(primary)
    for (const entry of variants.entries) entry.text ??= oneWriteText(entry.body)
    this.lru.set(primary, variants, { ttl, size: sizeOf(primary, variants) })
    if (!this.lru.has(primary)) return // larger than the whole tier: not stored
    for (const entry of variants.entries) for (const tag of entry.tags) {
      let keys = this.#byTag.get(tag)
      if (!keys) this.#byTag.set(tag, keys = new Set())
      keys.add(primary)
    }
  }

  delete(primary: string): void {
    this.lru.delete(primary)
  }

  /** Drops every entry carrying the tag; returns how many keys went. */
  deleteTagged(tag: string): number {
    const keys = this.#byTag.get(tag)
    if (!keys) return 0
    const count = keys.size
    for (const primary of [...keys]) this.lru.delete(primary)
    this.#byTag.delete(tag)
    return count
  }

  clear(): void {
    this.lru.clear()
    this.#byTag.clear()
  }

  #unindex(primary: string, variants: Variants): void {
    for (const entry of variants.entries) for (const tag of entry.tags) {
      const keys = this.#byTag.get(tag)
      if (!keys) continue
      keys.delete(primary)
      if (!keys.size) this.#byTag.delete(tag)
    }
  }
}

/** Bytes an entry holds: bodies (and their text), header text and a fixed overhead for the objects around them. */
function sizeOf(primary: string, variants: Variants): number {
  let size = primary.length + 64
  for (const entry of variants.entries) {
    size += entry.body.length + (entry.text?.length ?? 0) + 256
    for (const name in entry.headers) size += name.length + String(entry.headers[name]).length
    for (const tag of entry.tags) size += tag.length + 32
  }
  return size
}
