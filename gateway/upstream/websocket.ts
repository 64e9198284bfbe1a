// WebSocket (and any other Upgrade) requests, once through the gates (server.ts): tunnelled to the upstream
// by http-proxy. Failures before the upstream answered get the same problem+json a plain request would.
// The tunnel is one request to the logs, metrics and Sentry, published when it closes: status 101 (or the
// upstream's refusal, or the failure), bytes sent to the client, and the tunnel's lifetime as duration, as
// nginx logs a proxied WebSocket.
import type { ClientRequest, IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import httpProxy from 'http-proxy'
import type { Ctx } from '../pipeline.ts'
import { GatewayError, writeRawProblem } from '../errors.ts'
import { publishNotice, publishRequest } from '../observability/events.ts'
import { toUpstreamError } from './forward.ts'

export function createUpgradeHandler(): (ctx: Ctx, socket: Duplex, head: Buffer) => void {
  const proxy = httpProxy.createProxyServer({ ws: true, xfwd: true })
  // Every call below passes its own error callback; this catches what http-proxy emits besides.
  proxy.on('error', (err) => publishNotice({ level: 'warn', msg: 'websocket proxy error', err }))
  const tunnels = new WeakMap<IncomingMessage, Ctx>()
  // What the upstream answered: 101 when it switched protocols, else its refusal, which http-proxy relays.
  // It has upstream.timeouts.connect + headers to answer, as a plain request has: http-proxy sets no bound,
  // and a silent upstream would hold the client (and a connection) for ever. Then 504, as for a request.
  proxy.on('proxyReqWs', (upstreamRequest: ClientRequest, req: IncomingMessage) => {
    const ctx = tunnels.get(req)
    if (!ctx) return
    const { connect, headers } = ctx.plan.config.upstream.timeouts
    const deadline = setTimeout(() => upstreamRequest.destroy(new GatewayError('upstream_timeout', { detail: 'the upstream did not answer the upgrade in time' })), connect + headers)
    const answered = (res: IncomingMessage) => {
      clearTimeout(deadline)
      ctx.status = res.statusCode
    }
    upstreamRequest.once('upgrade', answered)
    upstreamRequest.once('response', answered)
    upstreamRequest.once('close', () => clearTimeout(deadline))
  })
  return (ctx, socket, head) => {
    const { req } = ctx
    // The services the request arrived under, as for any request (a reload may swap the pool meanwhile).
    const { upstream } = ctx.services
    if (!ctx.plan.isTrustedProxy(ctx.peerAddress, 0)) {
      // An untrusted client may not speak for earlier hops; http-proxy appends the real peer itself.
      delete req.headers['x-forwarded-for']
      delete req.headers['x-forwarded-proto']
      delete req.headers['x-forwarded-host']
    }
    req.headers['x-request-id'] = ctx.id
    tunnels.set(req, ctx)
    socket.once('close', () => {
      ctx.bytesOut = (socket as Socket).bytesWritten ?? 0
      publishRequest(ctx)
    })
    // http-proxy builds the upstream request from req.url within this call; the log keeps the client's target.
    const clientTarget = req.url ?? '/'
    req.url = upstream.basePath + clientTarget
    proxy.ws(req, socket, head, { target: upstream.origin, changeOrigin: upstream.settings.host === 'upstream' }, (err) => {
      const failure = toUpstreamError(err)
      publishNotice({ level: 'warn', msg: 'websocket upgrade failed', code: failure.code, requestId: ctx.id, err })
      if (ctx.status === undefined) {
        ctx.error = failure
        ctx.status = failure.status
      }
      if ((socket as Socket).bytesWritten === 0 && socket.writable) writeRawProblem(socket, failure, ctx.id)
      else socket.destroy()
    })
    req.url = clientTarget
  }
}
