// Pure: what identifies a cached response. The primary key is scope + the normalised URL as the upstream
// would see it (host and forwarded proto included, query sorted), hashed before it reaches any store.
// Request headers are keyed only through Vary: nothing else a client sends can change a cached body.
import { hash as digest } from 'node:crypto'
import { withoutQuery } from '../routing/router.ts'
import { Memo } from '../memo.ts'

export interface KeyInput {
  /** "public", "anon", "user:<sub>" or "cred:<hash>": whose entry this is. */
  scope: string
  host: string
  proto: string
  /** The request target, "/path?query". */
  url: string
}

export function primaryKey(input: KeyInput): string {
  // Hot keys are looked up again and again. The last key made for a request target is kept under that
  // target (the string node parsed: the route lookup has hashed it already) and is reused when scope, host
  // and proto are the same again, so a repeated public hit builds no string. Other requests find their
  // digest under all four raw inputs, which spares the normalisation and a SHA-256 per hit.
  const last = lastKeys.get(input.url)
  if (last !== undefined && last.scope === input.scope && last.host === input.host && last.proto === input.proto) return last.key
  const raw = `${input.scope}\n${input.proto}\n${input.host}\n${input.url}`
  const key = recentKeys.get(raw)
    ?? recentKeys.set(raw, hash(`${input.scope}\n${input.proto}://${input.host.toLowerCase()}${normalizeTarget(input.url)}`))
  lastKeys.set(input.url, { ...input, key })
  return key
}

const recentKeys = new Memo<string>(10_000)
const lastKeys = new Memo<KeyInput & { key: string }>(10_000)

/** "/a//b/%7Euser?b=2&a=1" → "/a//b/~user?a=1&b=2": unreserved characters decoded, query sorted by name. */
export function normalizeTarget(url: string): string {
  const queryAt = url.indexOf('?')
  const path = decodeUnreserved(queryAt === -1 ? url : url.slice(0, queryAt))
  if (queryAt === -1 || queryAt === url.length - 1) return path
  const params = [...new URLSearchParams(url.slice(queryAt + 1))]
  // By name only: the sort is stable, so repeated parameters keep their order (?lang=en&lang=evil is not
  // ?lang=evil&lang=en to an upstream that takes the last value).
  params.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `${path}?${new URLSearchParams(params).toString()}`
}

export function pathOf(url: string): string {
  return decodeUnreserved(withoutQuery(url))
}

/** The tag every entry carries for its path, so a write can invalidate a URL in every scope at once. */
export function urlTag(path: string): string {
  return `url:${path}`
}

/** "/api/leads/5" → "/api/leads"; "/api/leads" → "/api"; "/" → null. */
export function parentPath(path: string): string | null {
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
  const cut = trimmed.lastIndexOf('/')
  if (cut <= 0) return trimmed === '/' ? null : '/'
  return trimmed.slice(0, cut)
}

/** The request's values for the names a response varies on; header values trimmed, absent = "". */
export function varyValues(names: readonly string[], headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const values: Record<string, string> = {}
  for (const name of names) {
    const value = headers[name]
    values[name] = (Array.isArray(value) ? value.join(', ') : value ?? '').trim()
  }
  return values
}

export function varyMatches(stored: Record<string, string>, headers: Record<string, string | string[] | undefined>): boolean {
  for (const name in stored) {
    const value = headers[name]
    if ((Array.isArray(value) ? value.join(', ') : value ?? '').trim() !== stored[name]) return false
  }
  return true
}

/** One-shot crypto.hash: about twice as fast as createHash().update().digest() for short keys. */
export function hash(text: string): string {
  return digest('sha256', text, 'base64url')
}

function decodeUnreserved(path: string): string {
  if (!path.includes('%')) return path
  return path.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16))
    return /[A-Za-z0-9\-._~]/.test(char) ? char : escape.toUpperCase()
  })
}

/** Fills "lead:{id}" from the route's params and {user} from the verified user; a tag missing a value is left out. */
export function fillTags(templates: ReadonlyArray<{ parts: ReadonlyArray<{ literal: string } | { param: string }> }>,
  params: Record<string, string> | undefined, user: string | null | undefined): string[] {
  const tags: string[] = []
  for (const template of templates) {
    let text = ''
    let complete = true
    for (const part of template.parts) {
      if ('literal' in part) { text += part.literal; continue }
      const value = part.param === 'user' ? user : params?.[part.param]
      if (!value) { complete = false; break }
      text += value
    }
    if (complete) tags.push(text)
  }
  return tags
}
