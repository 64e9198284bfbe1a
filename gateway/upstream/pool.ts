// The keep-alive connection pool to the upstream. A bounded pool is what lets 1000+ clients share a few
// dozen upstream connections: requests beyond `connections` queue in undici instead of opening sockets.
import { Pool } from 'undici'
import type { Config } from '../config/schema.ts'

export interface Upstream {
  readonly pool: Pool
  /** "http://127.0.0.1:8000": what the pool connects to. */
  readonly origin: string
  /** A path prefix from the upstream URL ("/v1"), prepended to every forwarded path; "" for none. */
  readonly basePath: string
  /** host[:port] of the upstream URL, sent as Host when `upstream.host: upstream`. */
  readonly host: string
  readonly settings: Config['upstream']
  /** Requests sent or waiting for a connection, until their response body is consumed. */
  inFlight: number
  /** Beyond this many in flight, new requests are shed (503) instead of queueing: connections + maxQueue. */
  readonly capacity: number
}

export function openUpstream(settings: Config['upstream']): Upstream {
  const url = new URL(settings.url)
  const pool = new Pool(url.origin, {
    connections: settings.connections,
    pipelining: 1,
    connectTimeout: settings.timeouts.connect,
    headersTimeout: settings.timeouts.headers,
    bodyTimeout: settings.timeouts.body,
    keepAliveTimeout: settings.timeouts.keepAlive,
    keepAliveMaxTimeout: settings.timeouts.keepAlive,
  })
  return {
    pool, origin: url.origin, basePath: url.pathname.replace(/\/+$/, ''), host: url.host, settings,
    inFlight: 0, capacity: settings.connections + settings.maxQueue,
  }
}

/** Lets in-flight requests finish, then closes the sockets; bounded so a stuck upstream cannot hold exit. */
export async function closeUpstream(upstream: Upstream, graceMs: number): Promise<void> {
  const timer = setTimeout(() => upstream.pool.destroy().catch(() => {}), graceMs)
  try {
    await upstream.pool.close()
  } catch {
    // already destroyed by the timer
  } finally {
    clearTimeout(timer)
  }
}
