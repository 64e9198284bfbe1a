// A memo for hot paths (cache-key digests, scrubbed texts): a plain Map forgotten all at once when it holds
// `limit` entries. Cheaper per hit than an LRU's bookkeeping; a flood of distinct keys costs what computing
// them costs, never more memory.
export class Memo<V> {
  readonly #values = new Map<string, V>()
  readonly #limit: number

  constructor(limit: number) {
    this.#limit = limit
  }

  get(key: string): V | undefined {
    return this.#values.get(key)
  }

  /** Remembers the value and returns it. */
  set(key: string, value: V): V {
    if (this.#values.size >= this.#limit) this.#values.clear()
    this.#values.set(key, value)
    return value
  }
}
