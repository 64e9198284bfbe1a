// WebSocket (and any other Upgrade) requests: routed like the rest, then tunnelled to the upstream by
// http-proxy. Failures before the upstream answered get the same problem+json a plain request would.
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import httpProxy from 'http-proxy'
import type { GatewayState } from '../server.ts'
import { writeRawProblem, GatewayError } from '../errors.ts'
import { requestIdFor } from '../request-id.ts'
import { publishNotice } from '../observability/events.ts'
import { toUpstreamError } from './forward.ts'

export function createUpgradeHandler(state: GatewayState): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const proxy = httpProxy.createProxyServer({ ws: true, xfwd: true })
  // Every call below passes its own error callback; this catches what http-proxy emits besides.
  proxy.on('error', (err) => publishNotice({ level: 'warn', msg: 'websocket proxy error', err }))
  return (req, socket, head) => {
    const { plan } = state
    const { upstream } = state.services
    const requestId = requestIdFor(req.headers)
    const matched = plan.router.find(req.method ?? 'GET', req.headers.host, req.url ?? '/')
    if (!matched && plan.config.unmatched === 'reject') return writeRawProblem(socket, new GatewayError('route_not_found'), requestId)
    if (!plan.isTrustedProxy(req.socket.remoteAddress ?? '', 0)) {
      // An untrusted client may not speak for earlier hops; http-proxy appends the real peer itself.
      delete req.headers['x-forwarded-for']
      delete req.headers['x-forwarded-proto']
      delete req.headers['x-forwarded-host']
    }
    req.headers['x-request-id'] = requestId
    req.url = upstream.basePath + (req.url ?? '/')
    proxy.ws(req, socket, head, { target: upstream.origin, changeOrigin: upstream.settings.host === 'upstream' }, (err) => {
      const failure = toUpstreamError(err)
      publishNotice({ level: 'warn', msg: 'websocket upgrade failed', code: failure.code, requestId, err })
      if ((socket as Socket).bytesWritten === 0 && socket.writable) writeRawProblem(socket, failure, requestId)
      else socket.destroy()
    })
  }
}
