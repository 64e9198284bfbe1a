// The client-facing listener: node:http with hardened timeouts and header limits. Makes one Ctx per
// request and hands it to the pipeline; WebSocket upgrades go to the upstream through http-proxy.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import proxyAddr from 'proxy-addr'
import type { Plan } from './config/compile.ts'
import type { Services } from './services.ts'
import { handle, type Ctx } from './pipeline.ts'
import { GatewayError, writeRawProblem, type ErrorCode } from './errors.ts'
import { requestIdFor } from './request-id.ts'
import { createUpgradeHandler } from './upstream/websocket.ts'
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
  server.on('upgrade', createUpgradeHandler(state))
  return server
}

/** Every field is set here, even if undefined, so all Ctx objects share one shape (monomorphic access). */
function newCtx(state: GatewayState, req: IncomingMessage): Ctx {
  const peerAddress = req.socket.remoteAddress ?? ''
  const { plan } = state
  return {
    id: requestIdFor(req.headers),
    t0: performance.now(),
    req,
    plan,
    services: state.services,
    lifecycle: state,
    peerAddress,
    // Without trusted proxies X-Forwarded-For is never believed: no need to parse it.
    clientIp: plan.config.trustedProxies.length ? proxyAddr(req, plan.isTrustedProxy) : peerAddress,
    route: undefined,
    params: undefined,
    client: undefined,
    limit: undefined,
    cache: undefined,
    cacheState: undefined,
    upstreamResponse: undefined,
    marks: { limited: 0, lookedUp: 0 },
    status: undefined,
    bytesOut: 0,
    error: undefined,
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
  writeRawProblem(socket, new GatewayError(code), requestIdFor({}))
}
