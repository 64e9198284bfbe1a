// The client-facing listener: node:http with hardened timeouts and header limits. Makes one Ctx per
// request and hands it to the pipeline; WebSocket upgrades go to the upstream through http-proxy.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { randomUUID } from 'node:crypto'
import proxyAddr from 'proxy-addr'
import httpProxy from 'http-proxy'
import type { Plan } from './config/compile.ts'
import type { Services } from './services.ts'
import { handle, type Ctx } from './pipeline.ts'
import { GatewayError, problemDocument, type ErrorCode } from './errors.ts'
import { publishNotice } from './observability/events.ts'

/** What a reload swaps. Requests read it once, when they arrive, and keep that Plan to the end. */
export interface GatewayState {
  plan: Plan
  services: Services
  draining: boolean
}

export function createProxyServer(state: GatewayState): Server {
  const { listen } = state.plan.config
  const server = createServer({
    maxHeaderSize: listen.maxHeaderSize,
    headersTimeout: listen.timeouts.headers,
    requestTimeout: listen.timeouts.request,
    keepAliveTimeout: listen.timeouts.keepAlive,
    requireHostHeader: true,
  }, (req, res) => void handle(newCtx(state, req), res))
  server.keepAliveTimeout = listen.timeouts.keepAlive
  server.on('clientError', answerClientError)
  const websockets = httpProxy.createProxyServer({ ws: true, xfwd: true })
  websockets.on('error', (err, _req, socket) => {
    publishNotice({ level: 'warn', msg: 'websocket proxy error', err })
    if ('destroy' in socket) (socket as Duplex).destroy()
  })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const { plan } = state
    const { upstream } = state.services
    const matched = plan.router.find(req.method ?? 'GET', req.headers.host, req.url ?? '/')
    if (!matched && plan.config.unmatched === 'reject') return refuse(socket, 'route_not_found', randomUUID())
    if (!plan.isTrustedProxy(req.socket.remoteAddress ?? '', 0)) {
      // An untrusted client may not speak for earlier hops; http-proxy appends the real peer itself.
      delete req.headers['x-forwarded-for']; delete req.headers['x-forwarded-proto']; delete req.headers['x-forwarded-host']
    }
    websockets.ws(req, socket, head, { target: upstream.origin, changeOrigin: upstream.settings.host === 'upstream' })
  })
  return server
}

const REQUEST_ID = /^[A-Za-z0-9._:\-]{1,128}$/

function newCtx(state: GatewayState, req: IncomingMessage): Ctx {
  const incomingId = req.headers['x-request-id']
  const peerAddress = req.socket.remoteAddress ?? ''
  return {
    id: typeof incomingId === 'string' && REQUEST_ID.test(incomingId) ? incomingId : randomUUID(),
    t0: performance.now(),
    req,
    plan: state.plan,
    services: state.services,
    peerAddress,
    clientIp: proxyAddr(req, state.plan.isTrustedProxy),
    draining: state.draining,
    bytesOut: 0,
  }
}

/** node's parser refused the request (too large a head, malformed, too slow): answer it if we still can. */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const code: ErrorCode | undefined = err.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large'
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout'
    : err.code === 'ECONNRESET' ? undefined
    : 'bad_request'
  if (code) publishNotice({ level: 'info', msg: 'request refused by the HTTP parser', code, reason: err.code })
  if (!code || !socket.writable) return void socket.destroy()
  refuse(socket, code, randomUUID())
}

function refuse(socket: Duplex, code: ErrorCode, requestId: string): void {
  const err = new GatewayError(code)
  const body = JSON.stringify(problemDocument(err, requestId))
  socket.end(`HTTP/1.1 ${err.status} ${err.message}\r\ncontent-type: application/problem+json\r\n`
    + `content-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`)
}
