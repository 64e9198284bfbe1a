// Pure: what must never leave for Sentry. Credentials in headers, cookies, bodies, query strings and
// anything that looks like a JWT or a bearer token wherever it hides (messages, tags, extra data).
const SENSITIVE_NAME = /authorization|cookie|token|secret|passw|api[-_]?key|session|signature|credential|^auth|^code$|^key$/i
const JWT = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g
const BEARER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi
export const FILTERED = '[Filtered]'

export function isSensitiveName(name: string): boolean {
  return SENSITIVE_NAME.test(name)
}

export function scrubString(text: string): string {
  return text.replace(JWT, FILTERED).replace(BEARER, `$1 ${FILTERED}`).replace(/([?&][^=&#]+)=([^&#]*)/g, (whole, name: string) =>
    isSensitiveName(name.slice(1)) ? `${name}=${FILTERED}` : whole)
}

/** Deep copy with sensitive keys' values and token-looking strings filtered. */
export function scrubDeep<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return scrubString(value) as T
  if (depth > 8 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((item) => scrubDeep(item, depth + 1)) as T
  const out: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value)) out[key] = isSensitiveName(key) ? FILTERED : scrubDeep(item, depth + 1)
  return out as T
}

/**
 * A Sentry event or transaction: request bodies and cookies go entirely, the rest is filtered. A
 * transaction's spans are left to beforeSendSpan, which sees each of them anyway.
 */
export function scrubEvent<E extends object>(event: E): E {
  const { spans, ...rest } = event as E & { spans?: unknown }
  const scrubbed = { ...scrubDeep(rest), ...(spans === undefined ? {} : { spans }) } as unknown as E & { request?: { data?: unknown; cookies?: unknown }; user?: unknown }
  if (scrubbed.request) {
    delete scrubbed.request.data
    delete scrubbed.request.cookies
  }
  delete scrubbed.user
  return scrubbed
}
