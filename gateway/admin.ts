// The admin listener, kept off the proxy port: /healthz (the process is alive) and /readyz (it can serve:
// config loaded, not draining, upstream reachable, Redis connected when configured). Probes and operators use it; clients never should.
import { createServer, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import type { GatewayState } from './server.ts'

export function createAdminServer(state: GatewayState): Server {
  return createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' })
    if (path === '/healthz') return json(res, 200, { status: 'ok' })
    if (path === '/readyz') {
      const checks = {
        config: { ok: true, file: state.plan.file },
        draining: { ok: !state.draining },
        upstream: await probeUpstream(state),
        ...(state.services.redis ? { redis: { ok: state.services.redis.isUp() } } : {}),
      }
      const ready = Object.values(checks).every((check) => check.ok)
      return json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks })
    }
    json(res, 404, { error: 'not found', endpoints: ['/healthz', '/readyz'] })
  })
}

/** A TCP connect to the upstream, bounded by its connect timeout (at most 1s, so probes stay quick). */
function probeUpstream(state: GatewayState): Promise<{ ok: boolean; url: string; error?: string }> {
  const url = new URL(state.services.upstream.origin)
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port })
    const done = (error?: string) => {
      socket.destroy()
      resolve({ ok: !error, url: url.origin, ...(error ? { error } : {}) })
    }
    socket.setTimeout(Math.min(state.services.upstream.settings.timeouts.connect, 1000), () => done('connect timeout'))
    socket.once('connect', () => done())
    socket.once('error', (err: Error & { code?: string }) => done(err.code ?? err.message))
  })
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}
