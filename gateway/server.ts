// The client-facing listener: node:http with hardened timeouts and header limits. Makes one Ctx per
// request and hands it to the pipeline; WebSocket upgrades go to the upstream through http-proxy.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import proxyAddr from 'proxy-addr'
import type { Plan } from './config/compile.ts'
import type { Services } from './services.ts'
import { gate, handle, type Ctx } from './pipeline.ts'
import { GatewayError, toGatewayError, writeRawProblem, type ErrorCode } from './errors.ts'
import { maxBodySize } from './admit.ts'
import { requestIdFor } from './request-id.ts'
import { createUpgradeHandler } from './upstream/websocket.ts'
import { publishNotice, publishRequest } from './observability/events.ts'

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
    // node enforces headersTimeout/requestTimeout only when it sweeps its connections, every 30 s by
    // default: a 1 s slowloris guard would hold a trickling client for up to 31 s. Sweep at a quarter
    // of the headers timeout (at most once a second), so the timeouts mean what the config says.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(listen.timeouts.headers / 4))),
    requireHostHeader: true,
  }, (req, res) => void handle(newCtx(state, req), res))
  server.keepAliveTimeout = listen.timeouts.keepAlive
  // Expect: 100-continue: node would invite every body at once. Invite it only when its declared size is
  // within the route's limit, so a too-large upload gets its 413 before it is sent (as nginx does).
  server.on('checkContinue', (req, res) => {
    const ctx = newCtx(state, req)
    ctx.route = ctx.plan.router.find(req.method ?? 'POST', req.headers.host, req.url ?? '/')?.route
    if (!(Number(req.headers['content-length']) > maxBodySize(ctx))) res.writeContinue()
    void handle(ctx, res)
  })
  server.on('clientError', answerClientError)
  const tunnel = createUpgradeHandler()
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void gateUpgrade(state, req, socket, head, tunnel))
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
    tracing: undefined,
  }
}

/**
 * An Upgrade request passes the gates every request passes (route, admit, identify, limit) before it is
 * tunnelled. Without them "Upgrade: websocket" on any GET skipped the rate limit: an upstream answers such
 * a GET as an ordinary one, and the tunnel relays that answer. Like any request it is logged and counted
 * once: a refusal at once, a tunnel when it closes.
 */
async function gateUpgrade(state: GatewayState, req: IncomingMessage, socket: Duplex,
  head: Buffer, tunnel: (ctx: Ctx, socket: Duplex, head: Buffer) => void): Promise<void> {
  const ctx = newCtx(state, req)
  try {
    // The gates refuse by throwing; none of them answers a request it lets through.
    await gate(ctx)
  } catch (err) {
    const refusal = toGatewayError(err)
    ctx.error = refusal
    ctx.status = refusal.status
    writeRawProblem(socket, refusal, ctx.id)
    return publishRequest(ctx)
  }
  tunnel(ctx, socket, head)
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
