// Sentry: errors and traces, as a subscriber. Initialised by main.ts before the rest of the gateway is
// imported, with the SDK's automatic instrumentation off: the gateway makes the few spans it needs
// (request, rate limit, cache lookup, upstream call) so tracing costs little, and it decides exactly which
// trace headers the upstream sees. Collection of personal data is off and every event and span is
// scrubbed again before it leaves (headers, cookies, bodies, tokens anywhere).
import { subscribe } from 'node:diagnostics_channel'
import * as Sentry from '@sentry/node'
import type { Config } from '../config/schema.ts'
import type { Ctx } from '../pipeline.ts'
import { CHANNELS, onFlush, setTraceHooks, type Notice } from './events.ts'
import { scrubDeep, scrubEvent, scrubSpan } from './scrub.ts'

interface RequestTrace { root: Sentry.Span; scope: Sentry.Scope; upstream?: Sentry.Span }
const traces = new WeakMap<Ctx, RequestTrace>()
/** The sampling decision, made before any Sentry work: unsampled requests (most) create no spans at all. */
const sampled = new WeakMap<Ctx, boolean>()

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
    // Transactions with child spans, the shape Sentry's dashboards query.
    traceLifecycle: 'static',
    // The gateway decides (isSampled below) and only starts spans for sampled requests.
    tracesSampler: ({ attributes }) => (attributes?.['gateway.sampled'] ? 1 : 0),
    tracePropagationTargets: [],
    beforeBreadcrumb: () => null,
    beforeSend: (event) => scrubEvent(event),
    beforeSendTransaction: (event) => scrubEvent(event),
    beforeSendSpan: Sentry.withStaticSpan((span) => scrubSpan(span)),
  })
  setTraceHooks({ upstreamHeaders: (ctx) => (isSampled(ctx, rates) ? upstreamHeaders(ctx) : null) })
  subscribe(CHANNELS.request, (message) => finishRequest(message as Ctx, settings, rates))
  subscribe(CHANNELS.notice, (message) => reportNotice(message as Notice))
  onFlush((timeoutMs) => Sentry.flush(timeoutMs))
}

/**
 * A sampled incoming trace is continued as sampled, an unsampled one is not; otherwise tracesSampleRate, or
 * cacheHitSampleRate for cache hits (decided at the end for requests that never reach the upstream).
 */
function isSampled(ctx: Ctx, rates: { traces: number; cacheHits: number }): boolean {
  let decision = sampled.get(ctx)
  if (decision !== undefined) return decision
  const parent = incomingTrace(ctx).sentryTrace
  const flag = parent?.split('-')[2]
  decision = flag === '1' ? true : flag === '0' ? false : Math.random() < (ctx.cache?.kind === 'hit' ? rates.cacheHits : rates.traces)
  sampled.set(ctx, decision)
  return decision
}

/** The request's root span, created when first needed: at the upstream call, or when the request ends. */
function traceOf(ctx: Ctx): RequestTrace {
  let trace = traces.get(ctx)
  if (trace) return trace
  const method = ctx.req.method ?? 'GET'
  const route = ctx.route?.name ?? '(unmatched)'
  trace = Sentry.withIsolationScope((scope) => Sentry.continueTrace(incomingTrace(ctx), () => ({
    scope,
    root: Sentry.startInactiveSpan({
      name: `${method} ${route}`,
      op: 'http.server',
      forceTransaction: true,
      startTime: epochSeconds(ctx.t0),
      attributes: { 'gateway.route': route, 'gateway.sampled': true, 'http.request.method': method, 'sentry.source': 'route' },
    }),
  })))
  traces.set(ctx, trace)
  return trace
}

/** The client's trace: Sentry's own headers, or W3C traceparent translated into them. */
function incomingTrace(ctx: Ctx): { sentryTrace: string | undefined; baggage: string | undefined } {
  const headers = ctx.req.headers
  const sentryTrace = header(headers['sentry-trace'])
  if (sentryTrace) return { sentryTrace, baggage: header(headers.baggage) }
  const parent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(header(headers.traceparent) ?? '')
  if (!parent) return { sentryTrace: undefined, baggage: undefined }
  const sampled = (parseInt(parent[3]!, 16) & 1) === 1 ? '1' : '0'
  return { sentryTrace: `${parent[1]}-${parent[2]}-${sampled}`, baggage: undefined }
}

function upstreamHeaders(ctx: Ctx): Record<string, string> | null {
  const trace = traceOf(ctx)
  trace.upstream = Sentry.startInactiveSpan({
    name: `${ctx.req.method} ${ctx.services.upstream.origin}`,
    op: 'http.client',
    parentSpan: trace.root,
    attributes: { 'server.address': ctx.services.upstream.host },
  })
  const data = Sentry.getTraceData({ span: trace.upstream, propagateTraceparent: true })
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(data)) if (value) headers[name] = value
  return headers
}

function finishRequest(ctx: Ctx, settings: Config['sentry'], rates: { traces: number; cacheHits: number }): void {
  const trace = isSampled(ctx, rates) ? traceOf(ctx) : null
  if (trace) endTrace(ctx, trace)
  reportFailure(ctx, trace, settings)
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

function endTrace(ctx: Ctx, trace: RequestTrace): void {
  const { root, scope } = trace
  const tags = tagsOf(ctx)
  const end = Date.now() / 1000
  if (ctx.limit) childSpan(root, 'gateway.ratelimit', `rate limit ${ctx.limit.binding.policy}`, ctx.t0, ctx.marks.limited)
  if (ctx.cache) childSpan(root, 'gateway.cache', `cache lookup ${'tier' in ctx.cache ? ctx.cache.tier : ''}`.trim(), ctx.marks.limited, ctx.marks.lookedUp)
  trace.upstream?.setAttribute('http.response.status_code', ctx.upstreamResponse?.status ?? 0)
  trace.upstream?.end(end)
  scope.setTags(tags)
  root.setAttributes({ 'gateway.cache': tags.cache!, 'gateway.limit': tags.limit!, 'http.response.status_code': statusOf(ctx) })
  Sentry.setHttpStatus(root, statusOf(ctx) || 500)
  root.end(end)
}

function childSpan(root: Sentry.Span, op: string, name: string, from: number, to: number): void {
  if (!to || to < from) return
  Sentry.startInactiveSpan({ name, op, parentSpan: root, startTime: epochSeconds(from) }).end(epochSeconds(to))
}

/** Upstream failures are grouped by route and error class, never by URL; client aborts are not failures. */
function reportFailure(ctx: Ctx, trace: RequestTrace | null, settings: Config['sentry']): void {
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
  Sentry.withScope((scope) => {
    scope.setTags(tags)
    scope.setFingerprint(fingerprint)
    scope.setContext('request', { method: tags.method, route: tags.route, request_id: ctx.id })
    const capture = () => {
      if (error?.source === 'internal' && error.cause instanceof Error) Sentry.captureException(error.cause)
      else Sentry.captureMessage(message!, 'error')
    }
    if (trace) Sentry.withActiveSpan(trace.root, capture)
    else capture()
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

function epochSeconds(performanceTime: number): number {
  return (performance.timeOrigin + performanceTime) / 1000
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}
