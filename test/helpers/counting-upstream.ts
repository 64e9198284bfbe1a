// An upstream that records every request it receives (method, target, headers), so cache tests can
// tell a hit from a forward by counting, never by timing.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { startUpstream, type TestUpstream } from './upstreams.ts'

export interface SeenRequest { method: string; url: string; headers: IncomingHttpHeaders }

export interface CountingUpstream extends TestUpstream {
  /** Every request received so far, in arrival order. */
  readonly seen: SeenRequest[]
  /** How many requests with this target (path and query, exactly as received) and method arrived. */
  count(url: string, method?: string): number
}

export async function startCountingUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<CountingUpstream> {
  const seen: SeenRequest[] = []
  const upstream = await startUpstream((req, res) => {
    seen.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: { ...req.headers } })
    handler(req, res)
  })
  return {
    server: upstream.server,
    url: upstream.url,
    port: upstream.port,
    close: upstream.close,
    seen,
    count: (url, method = 'GET') => seen.filter((s) => s.url === url && s.method === method).length,
  }
}
