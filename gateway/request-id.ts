// X-Request-Id: a well-formed incoming id is kept (so one id follows a request across proxies),
// anything else is replaced by a fresh UUID.
import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

const WELL_FORMED = /^[A-Za-z0-9._:\-]{1,128}$/

export function requestIdFor(headers: IncomingHttpHeaders): string {
  const incoming = headers['x-request-id']
  return typeof incoming === 'string' && WELL_FORMED.test(incoming) ? incoming : randomUUID()
}
