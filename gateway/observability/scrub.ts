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

/** The parts of an event that carry data the gateway or the SDK collected (the rest is SDK metadata). */
const DATA_FIELDS = ['request', 'extra', 'contexts', 'tags', 'breadcrumbs', 'message', 'logentry', 'exception', 'transaction'] as const

/**
 * A Sentry event or transaction: request bodies, cookies and the user go entirely, the data-bearing fields are
 * filtered. A transaction's spans are left to beforeSendSpan, which sees each of them anyway. Only those fields
 * are copied: deep-copying a whole event (SDK metadata, scopes) cost more than the SDK's own work per event.
 */
export function scrubEvent<E extends object>(event: E): E {
  const scrubbed = { ...event } as Record<string, unknown>
  for (const field of DATA_FIELDS) if (scrubbed[field] !== undefined) scrubbed[field] = scrubDeep(scrubbed[field])
  const request = scrubbed.request as { data?: unknown; cookies?: unknown } | undefined
  if (request) {
    delete request.data
    delete request.cookies
  }
  delete scrubbed.user
  return scrubbed as E
}

/** A span: its description and attributes are what can carry data. */
export function scrubSpan<S extends { description?: string; data?: Record<string, unknown> }>(span: S): S {
  return {
    ...span,
    ...(span.description === undefined ? {} : { description: scrubString(span.description) }),
    ...(span.data === undefined ? {} : { data: scrubDeep(span.data) }),
  }
}
