// Sentry: errors and traces, as a subscriber. Initialised by main.ts before the rest of the gateway is
// imported, with the SDK's automatic instrumentation off. Traces do not go through the SDK's spans at all: a
// sampled request's transaction is built from what the pipeline already records (ctx.t0, ctx.marks, the
// upstream call) by trace-event.ts and handed to the SDK's transport as an envelope, which costs a fraction of
// the SDK's span and event machinery. The gateway decides exactly which trace headers the upstream sees.
// Errors take the SDK's usual path and carry the request's trace. Collection of personal data is off and
// everything that leaves is scrubbed (headers, cookies, bodies, tokens anywhere).
import { randomFillSync } from 'node:crypto'
import { subscribe } from 'node:diagnostics_channel'
import { hostname } from 'node:os'
import { gzip } from 'node:zlib'
import * as Sentry from '@sentry/node'
import { Pool } from 'undici'
import type { Config } from '../config/schema.ts'
import type { Ctx } from '../pipeline.ts'
import { CHANNELS, onFlush, setTraceHooks, type Notice } from './events.ts'
import { scrubDeep, scrubEvent, scrubSpan } from './scrub.ts'
import {
  decideSampling, envelopeHeader, eventConstants, readIncomingTrace, scrubbedDsc, startTrace, traceHeaders, transactionItem,
  type EventConstants, type IncomingTrace, type RequestTrace, type Sampling, type SpanRecord, type TraceSettings,
} from './trace-event.ts'

/** Per request, once Sentry looked at it: the sampling decision, and for sampled requests the trace. */
interface RequestState {
  incoming: IncomingTrace | undefined
  sampling: Sampling
  trace?: RequestTrace
  /** The upstream call's span: its id went to the upstream as the parent. */
  upstream?: { spanId: string; start: number }
}

interface Rates { traces: number; cacheHits: number }
/** What every transaction carries, fixed at start; the client is the one Sentry.init made. */
interface Sending { client: Sentry.NodeClient; trace: TraceSettings; constants: EventConstants; sdk: { name: string; version: string } }

export function initSentry(settings: Config['sentry']): void {
  const rates = { traces: settings.tracesSampleRate, cacheHits: settings.cacheHitSampleRate ?? settings.tracesSampleRate / 10 }
  Sentry.init({
    dsn: settings.dsn,
    environment: settings.environment,
    ...(settings.release ? { release: settings.release } : {}),
    defaultIntegrations: false,
    integrations: [
      Sentry.onUncaughtExceptionIntegration({ exitEvenIfOtherHandlersAreRegistered: false }),
      Sentry.onUnhandledRejectionIntegration({ mode: 'warn' }),
      Sentry.linkedErrorsIntegration(),
      Sentry.dedupeIntegration(),
    ],
    dataCollection: { userInfo: false, cookies: false, httpHeaders: false, httpBodies: [], urlQueryParams: false },
    // No tracesSampleRate: the SDK makes no spans; transactions are built below. Should anything still make
    // SDK spans, they are transactions with child spans, and filtered like everything else.
    traceLifecycle: 'static',
    tracePropagationTargets: [],
    transport: makeTransport,
    beforeBreadcrumb: () => null,
    beforeSend: (event) => scrubEvent(event),
    beforeSendTransaction: (event) => scrubEvent(event),
    beforeSendSpan: Sentry.withStaticSpan((span) => scrubSpan(span)),
  })
  const sending = sendingFor(settings)
  if (!sending) return
  const transactions = transactionBatches(sending)
  setTraceHooks({ upstreamHeaders: (ctx) => upstreamHeaders(ctx, rates, sending) })
  subscribe(CHANNELS.request, (message) => finishRequest(message as Ctx, settings, rates, sending, transactions))
  subscribe(CHANNELS.notice, (message) => reportNotice(message as Notice))
  onFlush((timeoutMs) => {
    transactions.drain()
    return Sentry.flush(timeoutMs)
  })
}

function sendingFor(settings: Config['sentry']): Sending | undefined {
  const client = Sentry.getClient<Sentry.NodeClient>()
  if (!client) return undefined
  const sdk = client.getOptions()._metadata?.sdk
  const name = sdk?.name ?? 'sentry.javascript.node'
  const version = sdk?.version ?? Sentry.SDK_VERSION
  return {
    client,
    trace: { publicKey: client.getDsn()?.publicKey ?? '', environment: settings.environment, release: settings.release || undefined },
    constants: eventConstants({
      environment: settings.environment,
      release: settings.release || undefined,
      serverName: hostname(),
      sdk: { name, version, integrations: client.getIntegrationNames(), packages: sdk?.packages ?? [] },
      runtime: { name: 'node', version: process.version },
    }),
    sdk: { name, version },
  }
}

/**
 * A sampled incoming trace is continued as sampled, an unsampled one is not; otherwise tracesSampleRate, or
 * cacheHitSampleRate for cache hits (decided at the end for requests that never reach the upstream).
 */
function stateOf(ctx: Ctx, rates: Rates): RequestState {
  if (ctx.tracing) return ctx.tracing as RequestState
  const incoming = readIncomingTrace(ctx.req.headers)
  const state: RequestState = { incoming, sampling: decideSampling(incoming, ctx.cache?.kind === 'hit' ? rates.cacheHits : rates.traces, Math.random()) }
  ctx.tracing = state
  return state
}

/** The request's trace ids and sampling context, made when first needed (sampled or, for an error, not). */
function traceOf(ctx: Ctx, state: RequestState, sending: Sending): RequestTrace {
  state.trace ??= startTrace(state.incoming, state.sampling, transactionName(ctx), sending.trace, { traceId: randomHex(16), spanId: randomHex(8) })
  return state.trace
}

function upstreamHeaders(ctx: Ctx, rates: Rates, sending: Sending): Record<string, string> | null {
  const state = stateOf(ctx, rates)
  if (!state.sampling.sampled) return null
  state.upstream = { spanId: randomHex(8), start: performance.now() }
  return traceHeaders(traceOf(ctx, state, sending), state.upstream.spanId)
}

function finishRequest(ctx: Ctx, settings: Config['sentry'], rates: Rates, sending: Sending, transactions: TransactionBatches): void {
  const state = stateOf(ctx, rates)
  if (state.sampling.sampled) transactions.add({ ctx, state, endPerf: performance.now(), endEpoch: Date.now() })
  reportFailure(ctx, state, settings, sending)
}

/** A sampled request at its end: what its transaction is built from. */
interface Finished { ctx: Ctx; state: RequestState; endPerf: number; endEpoch: number }

interface TransactionBatches { add(finished: Finished): void; drain(): void }

/** Transactions wait at most this long to be built and sent with the others of their batch... */
const BATCH_MS = 50
/** ...or until this many are waiting: the SDK's transport holds 64 envelopes in flight, so two batches fit. */
const BATCH_MAX = 32

/**
 * Sampled requests' transactions are built and sent in batches rather than one at the end of each request.
 * At tracesSampleRate 0.1 the code that builds and sends a transaction (ours, the SDK's transport, undici's
 * client) runs once every ten requests, with the CPU's caches full of other work: measured in place, a
 * sampled request then cost about three times what it costs when every request is sampled. Run back to back
 * in a batch, it stays warm: with the targets loaded at the same moment, tracing at 0.1 went from 0.81–0.85× to
 * 0.87–0.90× the throughput of a gateway with Sentry and metrics off. A transaction's times are taken when its
 * request ends; shutdown (onFlush) sends what is waiting.
 */
function transactionBatches(sending: Sending): TransactionBatches {
  let waiting: Finished[] = []
  let timer: NodeJS.Timeout | undefined
  const drain = () => {
    clearTimeout(timer)
    timer = undefined
    const batch = waiting
    waiting = []
    for (const finished of batch) sendTransaction(finished, sending)
  }
  return {
    add(finished) {
      waiting.push(finished)
      if (waiting.length >= BATCH_MAX) drain()
      else timer ??= setTimeout(drain, BATCH_MS).unref()
    },
    drain,
  }
}

/** The tags every event and transaction carries (what the Sentry dashboard queries). */
function tagsOf(ctx: Ctx): Record<string, string> {
  const status = statusOf(ctx)
  return {
    route: ctx.route?.name ?? '(unmatched)',
    method: ctx.req.method ?? 'GET',
    status: String(status),
    status_class: `${Math.floor(status / 100)}xx`,
    upstream: ctx.services.upstream.origin,
    cache: ctx.cache?.kind ?? 'none',
    limit: ctx.limit ? (ctx.limit.binding.allowed ? 'allowed' : 'limited') : 'none',
    request_id: ctx.id,
  }
}

function statusOf(ctx: Ctx): number {
  return ctx.error?.code === 'client_closed' ? 499 : ctx.status ?? 0
}

function transactionName(ctx: Ctx): string {
  return `${ctx.req.method ?? 'GET'} ${ctx.route?.name ?? '(unmatched)'}`
}

/** The transaction `METHOD route` (op http.server) with its rate-limit, cache-lookup and upstream spans. */
function sendTransaction({ ctx, state, endPerf, endEpoch: epochMs }: Finished, sending: Sending): void {
  const trace = traceOf(ctx, state, sending)
  const seconds = (performanceMs: number) => (epochMs - endPerf + performanceMs) / 1000
  const end = epochMs / 1000
  const tags = tagsOf(ctx)
  const status = statusOf(ctx)
  const spans: SpanRecord[] = []
  const child = (op: string, description: string, from: number, to: number) => {
    if (to && to >= from) spans.push({ spanId: randomHex(8), op, description, start: seconds(from), end: seconds(to) })
  }
  if (ctx.limit) child('gateway.ratelimit', `rate limit ${ctx.limit.binding.policy}`, ctx.t0, ctx.marks.limited)
  if (ctx.cache) child('gateway.cache', `cache lookup ${'tier' in ctx.cache ? ctx.cache.tier : ''}`.trim(), ctx.marks.limited, ctx.marks.lookedUp)
  if (state.upstream) {
    const upstreamStatus = ctx.upstreamResponse?.status ?? 0
    spans.push({
      spanId: state.upstream.spanId, op: 'http.client', description: `${ctx.req.method} ${ctx.services.upstream.origin}`,
      start: seconds(state.upstream.start), end, status: upstreamStatus || status || 500,
      data: { 'server.address': ctx.services.upstream.host, 'http.response.status_code': upstreamStatus },
    })
  }
  const eventId = randomHex(16)
  const item = transactionItem({
    trace, eventId, name: transactionName(ctx), start: seconds(ctx.t0), end, status, tags, spans,
    data: { 'gateway.route': tags.route, 'http.request.method': tags.method, 'gateway.cache': tags.cache, 'gateway.limit': tags.limit, 'http.response.status_code': status },
  }, sending.constants)
  const header = envelopeHeader(eventId, new Date().toISOString(), sending.sdk, trace.dsc)
  // The item goes as its JSON text, which the SDK's envelope serialiser writes as it is. (Should the transport
  // drop it, the SDK's client report counts its spans as one: it cannot read a text's spans.)
  void sending.client.sendEnvelope([header, [[{ type: 'transaction' }, item]]] as unknown as Parameters<Sentry.NodeClient['sendEnvelope']>[0])
}

/** Upstream failures are grouped by route and error class, never by URL; client aborts are not failures. */
function reportFailure(ctx: Ctx, state: RequestState, settings: Config['sentry'], sending: Sending): void {
  const error = ctx.error
  const route = ctx.route?.name ?? '(unmatched)'
  let fingerprint: string[] | undefined
  let message: string | undefined
  if (error && error.source !== 'downstream') {
    fingerprint = [error.source, route, error.code]
    message = `${error.source === 'upstream' ? 'Upstream' : 'Gateway'} ${error.code} on ${route}`
  } else if (!error && settings.reportUpstream5xx && (ctx.upstreamResponse?.status ?? 0) >= 500) {
    fingerprint = ['upstream-5xx', route, String(ctx.upstreamResponse!.status)]
    message = `Upstream answered ${ctx.upstreamResponse!.status} on ${route}`
  }
  if (!fingerprint) return
  const tags = tagsOf(ctx)
  // The event belongs to the request's trace: to its transaction when sampled, else to the client's trace.
  const trace = traceOf(ctx, state, sending)
  Sentry.withScope((scope) => {
    scope.setPropagationContext({
      traceId: trace.traceId, propagationSpanId: trace.spanId, sampleRand: trace.sampling.rand, sampled: trace.sampling.sampled,
      dsc: scrubbedDsc(trace.dsc), ...(trace.parentSpanId ? { parentSpanId: trace.parentSpanId } : {}),
    })
    scope.setTags(tags)
    scope.setFingerprint(fingerprint)
    scope.setContext('request', { method: tags.method, route: tags.route, request_id: ctx.id })
    if (error?.source === 'internal' && error.cause instanceof Error) Sentry.captureException(error.cause)
    else Sentry.captureMessage(message!, 'error')
  })
}

/** Outages and failed reloads: one event each (Redis outages are announced once per episode already). */
function reportNotice(notice: Notice): void {
  if (notice.event !== 'redis_outage' && notice.event !== 'config_reload_failed') return
  Sentry.withScope((scope) => {
    scope.setTag('event', notice.event!)
    scope.setFingerprint([notice.event!])
    scope.setContext('notice', scrubDeep({ ...notice, err: notice.err === undefined ? undefined : String(notice.err) }))
    Sentry.captureMessage(notice.msg, notice.level === 'error' ? 'error' : 'warning')
  })
}

/** Random ids (trace 16 bytes, span 8, event 16) in hex, from a pool refilled 4 KiB at a time. */
const randomPool = Buffer.alloc(4096)
let randomAt = randomPool.length

function randomHex(bytes: number): string {
  if (randomAt + bytes > randomPool.length) {
    randomFillSync(randomPool)
    randomAt = 0
  }
  randomAt += bytes
  return randomPool.toString('hex', randomAt - bytes, randomAt)
}

// ---- the transport ----

type TransportOptions = Parameters<typeof Sentry.makeNodeTransport>[0]
type TransportResponse = { statusCode: number; headers: { 'retry-after': string | null; 'x-sentry-rate-limits': string | null } }
/** Bodies above this are gzipped, as the SDK's transport does. */
const GZIP_ABOVE = 32 * 1024

/**
 * The SDK's rate limiting, buffer (64 envelopes in flight, then dropped and counted) and client reports
 * (createTransport), sending through an undici Pool with keep-alive: each envelope is one request written with
 * its body, its response read without a stream. The SDK's node:http transport pipes a stream into every request
 * inside a new async scope, which cost a third more CPU per envelope. Behind a proxy (http_proxy, https_proxy,
 * as the SDK reads them) the SDK's transport is used: it knows proxies.
 */
function makeTransport(options: TransportOptions): ReturnType<typeof Sentry.createTransport> {
  if (options.proxy || process.env.https_proxy || process.env.http_proxy) return Sentry.makeNodeTransport(options)
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    return Sentry.makeNodeTransport(options)
  }
  const pool = new Pool(url.origin, { connections: 30, headersTimeout: 10_000, bodyTimeout: 10_000, keepAliveTimeout: 4_000 })
  const path = `${url.pathname}${url.search}`
  const post = (body: string | Uint8Array, headers: Record<string, string>) => new Promise<TransportResponse>((resolve, reject) => {
    let statusCode = 0
    let responseHeaders: Record<string, string | string[] | undefined> = {}
    pool.dispatch({ method: 'POST', path, headers, body }, {
      onRequestStart() {},
      onResponseStart(_controller: unknown, status: number, received: Record<string, string | string[] | undefined>) {
        statusCode = status
        responseHeaders = received
      },
      onResponseData() {},
      onResponseEnd() {
        resolve({ statusCode, headers: { 'retry-after': firstOf(responseHeaders['retry-after']), 'x-sentry-rate-limits': firstOf(responseHeaders['x-sentry-rate-limits']) } })
      },
      onResponseError(_controller: unknown, err: Error) { reject(err) },
    } as unknown as Parameters<typeof pool.dispatch>[1])
  })
  return Sentry.createTransport(options, async (request) => {
    let body = request.body
    const headers: Record<string, string> = { 'content-type': 'application/x-sentry-envelope', ...options.headers }
    if (body.length > GZIP_ABOVE) {
      body = await new Promise<Uint8Array>((resolve, reject) => gzip(body, (err, zipped) => (err ? reject(err) : resolve(zipped))))
      headers['content-encoding'] = 'gzip'
    }
    // A keep-alive connection the ingest closed as it was reused: once more, on a fresh one.
    return post(body, headers).catch((err: { code?: string }) => {
      if (err.code === 'UND_ERR_SOCKET' || err.code === 'ECONNRESET' || err.code === 'EPIPE') return post(body, headers)
      throw err
    })
  })
}

function firstOf(value: string | string[] | undefined): string | null {
  return (Array.isArray(value) ? value[0] : value) ?? null
}
