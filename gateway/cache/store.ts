// What the cache stores, and the small interface every tier implements (undici's CacheStore shape,
// bytes not streams: bodies are bounded by cache.maxObjectSize).

/** One stored response. Times are epoch milliseconds, so entries mean the same on every replica. */
export interface Entry {
  status: number
  headers: Record<string, string | string[]>
  body: Buffer
  /**
   * The body as latin1 text, for bodies small enough to leave in one write with the head (pipeline.ts,
   * ONE_WRITE_MAX). Made once when the entry enters L1, so that a hit hands node the text instead of
   * converting the Buffer every time (about 6% of an L1 hit's CPU); never sent to L2.
   */
  text?: string
  storedAt: number
  /** The Age the upstream reported when the entry was stored, in seconds. */
  initialAgeS: number
  freshUntil: number
  /** Until then a stale entry may be served while one background request refreshes it. */
  staleWhileRevalidateUntil: number
  /** Until then a stale entry may be served when the upstream fails. */
  staleIfErrorUntil: number
  /** The request header values this response varies on (its Vary names, lower case). */
  vary: Record<string, string>
  tags: readonly string[]
}

/** Every stored variant of one URI in one scope (primary key); variants differ by their Vary values. */
export interface Variants { entries: Entry[] }

export interface CacheStore {
  /** Synchronous for L1, so memory hits never wait for a promise. */
  get(primary: string): Variants | undefined | Promise<Variants | undefined>
  set(primary: string, variants: Variants): void | Promise<void>
  /** Drops every variant of the URI. */
  delete(primary: string): void | Promise<void>
}

/**
 * Entries with validators (ETag, Last-Modified) stay this long past their freshness, so that a stale one
 * is revalidated with a cheap 304 instead of being fetched again.
 */
export const REVALIDATION_GRACE_MS = 10 * 60_000

/** The last moment an entry is of any use; tiers expire it then. */
export function usefulUntil(entry: Entry): number {
  const revalidatable = entry.headers.etag !== undefined || entry.headers['last-modified'] !== undefined
  return Math.max(entry.freshUntil + (revalidatable ? REVALIDATION_GRACE_MS : 0), entry.staleWhileRevalidateUntil, entry.staleIfErrorUntil)
}
