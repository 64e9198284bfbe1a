// X-Request-Id: a well-formed incoming id is kept (so one id follows a request across proxies),
// anything else is replaced by a fresh one.
import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

const WELL_FORMED = /^[A-Za-z0-9._:\-]{1,128}$/

// A fresh id is this process's random UUID with a counter in its last group (Kong's "uuid#counter"
// generator does the same): unique across processes and replicas, and unlike a UUID per request it costs
// no random bytes on the hot path. Ids only need to be unique; they are not secrets.
const PROCESS_PREFIX = randomUUID().slice(0, 24)
let counter = 0

export function requestIdFor(headers: IncomingHttpHeaders): string {
  const incoming = headers['x-request-id']
  return typeof incoming === 'string' && WELL_FORMED.test(incoming) ? incoming : freshRequestId()
}

/** "xxxxxxxx-xxxx-4xxx-yxxx-" + 12 hex digits of a counter that wraps after 2^48 ids. */
export function freshRequestId(): string {
  counter = counter === 0xffffffffffff ? 1 : counter + 1
  return PROCESS_PREFIX + counter.toString(16).padStart(12, '0')
}
