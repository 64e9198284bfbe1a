// Human units for the config file: durations (250ms, 30s, 5m, 1h), sizes (64MiB, 512KB)
// and rates (100/min, 30/10s). Pure functions: each returns undefined for text it does not accept,
// so the schema can turn that into one clear message with the key's location.

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const SIZE_UNITS_BYTES: Record<string, number> = {
  b: 1, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
}
const RATE_WINDOW_WORDS_MS: Record<string, number> = {
  s: 1000, sec: 1000, second: 1000, m: 60_000, min: 60_000, minute: 60_000, h: 3_600_000, hour: 3_600_000,
  d: 86_400_000, day: 86_400_000,
}

/** "250ms" | "30s" | "5m" | "1h" | "1d" → milliseconds. Bare numbers are refused: "30" could mean seconds or ms. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim())
  if (!match) return undefined
  return Math.round(Number(match[1]) * DURATION_UNITS_MS[match[2]!]!)
}

/** "64MiB" | "512KB" | "100B" → bytes; a bare non-negative integer is already bytes. */
export function parseSize(text: string | number): number | undefined {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : undefined
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)$/i.exec(text.trim())
  if (!match) return undefined
  return Math.floor(Number(match[1]) * SIZE_UNITS_BYTES[match[2]!.toLowerCase()]!)
}

export interface Rate { points: number; windowMs: number }

/** "100/min" | "10/s" | "30/10s" → points per window. The window is a unit word or a duration. */
export function parseRate(text: string): Rate | undefined {
  const match = /^(\d+)\s*\/\s*(\S+)$/.exec(text.trim())
  if (!match) return undefined
  const points = Number(match[1])
  const windowMs = RATE_WINDOW_WORDS_MS[match[2]!] ?? parseDuration(match[2]!)
  if (!points || !windowMs) return undefined
  return { points, windowMs }
}
