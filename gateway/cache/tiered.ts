// L1 in front of L2: a lookup tries memory, then Redis (promoting what it finds), and says which tier
// answered. Memory hits return synchronously: no promise on the hot path.
import type { MemoryTier } from './l1.ts'
import type { RedisTier } from './l2.ts'
import type { Entry, Variants } from './store.ts'
import { varyMatches } from './keys.ts'

export interface Found { variants: Variants; tier: 'l1' | 'l2' }

/** Variants kept per URI and scope; more Vary combinations than this evict the oldest. */
const MAX_VARIANTS = 8

export class TieredStore {
  readonly l1: MemoryTier
  readonly l2: RedisTier | null

  constructor(l1: MemoryTier, l2: RedisTier | null) {
    this.l1 = l1
    this.l2 = l2
  }

  get(primary: string): Found | undefined | Promise<Found | undefined> {
    const inMemory = this.l1.get(primary)
    if (inMemory) return { variants: inMemory, tier: 'l1' }
    if (!this.l2) return undefined
    return this.l2.get(primary).then((variants) => {
      if (!variants) return undefined
      this.l1.set(primary, variants)
      return { variants, tier: 'l2' as const }
    })
  }

  /** Adds or replaces the entry's variant. L1 is written at once; the L2 write is not waited for. */
  set(primary: string, entry: Entry): void {
    const others = (this.l1.get(primary)?.entries ?? []).filter((e) => !sameVary(e, entry))
    const variants = { entries: [entry, ...others].slice(0, MAX_VARIANTS) }
    this.l1.set(primary, variants)
    void this.l2?.set(primary, variants)
  }
}

export function pickVariant(variants: Variants, headers: Record<string, string | string[] | undefined>): Entry | undefined {
  return variants.entries.find((entry) => varyMatches(entry.vary, headers))
}

function sameVary(a: Entry, b: Entry): boolean {
  const names = Object.keys(a.vary)
  return names.length === Object.keys(b.vary).length && names.every((name) => a.vary[name] === b.vary[name])
}
