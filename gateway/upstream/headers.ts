// Proxy header rules (RFC 9110 §7.6): which headers cross the gateway, and what it adds. Pure functions.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

// Hop-by-hop headers describe one connection, never the next one. `expect` is answered by the gateway
// itself (100-continue), and `host` is set below on purpose.
const NOT_FORWARDED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'http2-settings', 'expect', 'host',
])

export const VIA = '1.1 gateway'

// Headers with which frameworks (Symfony, IIS, Express's method-override, Rails, …) let a request stand for
// another URL or method. The gateway routes, limits, caches and invalidates by the request line, so from a
// client they would let the upstream act on something else: a cached GET answered for another URL (cache
// poisoning), a limited POST dressed as an unlimited GET. Like X-Forwarded-*, only trusted proxies may send them.
const REWRITING = new Set(['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override'])

export interface ForwardingFacts {
  /** The address of the TCP peer, which may be a proxy. */
  peerAddress: string
  /** Whether that peer is a trusted proxy, whose X-Forwarded-* headers are believed. */
  peerTrusted: boolean
  requestId: string
  /** The Host header to send: the client's (preserve) or the upstream URL's. */
  host: string
}

export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, facts: ForwardingFacts): Record<string, string | string[]> {
  const headers = copyEndToEnd(incoming)
  if (!facts.peerTrusted) {
    // Only trusted proxies may speak for earlier hops: no Forwarded, X-Forwarded-Port, -Prefix, … from clients
    // (an upstream honouring them would build URLs, and cached answers, from a client's say-so).
    for (const name in headers) if (name === 'forwarded' || name.startsWith('x-forwarded-') || REWRITING.has(name)) delete headers[name]
  }
  const trusted = (name: string) => (facts.peerTrusted ? single(incoming[name]) : undefined)
  const priorHops = trusted('x-forwarded-for')
  headers.host = facts.host
  headers['x-forwarded-for'] = priorHops ? `${priorHops}, ${facts.peerAddress}` : facts.peerAddress
  headers['x-forwarded-proto'] = trusted('x-forwarded-proto') ?? 'http'
  const clientHost = trusted('x-forwarded-host') ?? single(incoming.host)
  if (clientHost) headers['x-forwarded-host'] = clientHost
  else delete headers['x-forwarded-host']
  headers.via = appendVia(single(incoming.via))
  headers['x-request-id'] = facts.requestId
  return headers
}

/** Upstream response headers as the client should see them: end-to-end ones kept (every Set-Cookie), Via added. */
export function clientResponseHeaders(upstream: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = copyEndToEnd(upstream)
  headers.via = appendVia(single(upstream.via))
  return headers
}

function copyEndToEnd(source: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = connectionTokens(source.connection)
  const out: Record<string, string | string[]> = {}
  for (const name in source) {
    const value = source[name]
    if (value === undefined || NOT_FORWARDED.has(name) || named.has(name)) continue
    out[name] = value
  }
  return out
}

const NO_TOKENS: ReadonlySet<string> = new Set()

/** Headers listed in Connection are hop-by-hop too ("Connection: close, X-Secret" drops X-Secret). */
function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  // The usual values name no other header: skip the split (this runs twice for every proxied request).
  if (value === undefined || value === 'keep-alive' || value === 'close') return NO_TOKENS
  const tokens = new Set<string>()
  for (const part of ([] as string[]).concat(value)) {
    for (const token of part.split(',')) if (token.trim()) tokens.add(token.trim().toLowerCase())
  }
  return tokens
}

function appendVia(prior: string | undefined): string {
  return prior ? `${prior}, ${VIA}` : VIA
}

/** A header's value as one string (repeated headers joined as HTTP allows). */
export function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}
