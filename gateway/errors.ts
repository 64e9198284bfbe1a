// Every error the gateway answers with: one class, one code table, one problem+json shape (RFC 9457).
// The source says whose fault it was (Pingora's ErrorSource): downstream → 4xx, upstream → 502/504,
// internal → 500. The README's error table is checked against ERROR_CODES by a test.

import type { Duplex } from 'node:stream'

export type ErrorSource = 'downstream' | 'upstream' | 'internal'

export const ERROR_CODES = {
  bad_request: { status: 400, source: 'downstream', title: 'Bad request' },
  route_not_found: { status: 404, source: 'downstream', title: 'No route matches this request' },
  body_too_large: { status: 413, source: 'downstream', title: 'Request body too large' },
  headers_too_large: { status: 431, source: 'downstream', title: 'Request header fields too large' },
  rate_limited: { status: 429, source: 'downstream', title: 'Too many requests' },
  request_timeout: { status: 408, source: 'downstream', title: 'The client was too slow sending the request' },
  client_closed: { status: 499, source: 'downstream', title: 'The client closed the connection' },
  upstream_unreachable: { status: 502, source: 'upstream', title: 'The upstream refused or dropped the connection' },
  upstream_bad_response: { status: 502, source: 'upstream', title: 'The upstream sent an invalid response' },
  upstream_timeout: { status: 504, source: 'upstream', title: 'The upstream did not answer in time' },
  overloaded: { status: 503, source: 'internal', title: 'Too many requests are waiting for the upstream', retryAfterS: 1 },
  shutting_down: { status: 503, source: 'internal', title: 'The gateway is shutting down' },
  internal: { status: 500, source: 'internal', title: 'Internal gateway error' },
} as const satisfies Record<string, { status: number; source: ErrorSource; title: string; retryAfterS?: number }>

export type ErrorCode = keyof typeof ERROR_CODES

export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly source: ErrorSource
  constructor(code: ErrorCode, options?: { cause?: unknown; detail?: string }) {
    super(options?.detail ?? ERROR_CODES[code].title, { cause: options?.cause })
    this.name = 'GatewayError'
    this.code = code
    this.status = ERROR_CODES[code].status
    this.source = ERROR_CODES[code].source
  }
}

export interface ProblemDocument {
  type: string
  title: string
  status: number
  code: ErrorCode
  detail?: string
  requestId: string
}

/** The JSON body a client gets: never a stack trace, always the request id to quote in a bug report. */
export function problemDocument(err: GatewayError, requestId: string): ProblemDocument {
  const { title } = ERROR_CODES[err.code]
  return {
    type: `urn:gateway:error:${err.code}`,
    title,
    status: err.status,
    code: err.code,
    ...(err.message !== title ? { detail: err.message } : {}),
    requestId,
  }
}

/** Anything thrown inside the gateway becomes a GatewayError; unknown errors are internal (500). */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  if (err instanceof Error && err.cause instanceof GatewayError) return err.cause
  return new GatewayError('internal', { cause: err })
}

/** For a bare socket (parser errors, upgrades): the problem document as a whole HTTP/1.1 response. */
export function writeRawProblem(socket: Duplex, err: GatewayError, requestId: string): void {
  const body = JSON.stringify(problemDocument(err, requestId))
  socket.end(`HTTP/1.1 ${err.status} ${ERROR_CODES[err.code].title}\r\ncontent-type: application/problem+json\r\n`
    + `content-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`)
}
