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
import { scrubDeep, scrubEvent } from './scrub.ts'

interface RequestTrace { root: Sentry.Span; scope: Sentry.Scope; upstream?: Sentry.Span }
const traces = new WeakMap<Ctx, RequestTrace>()

export function initSentry(settings: Config['sentry']): void {
  const cacheHitRate = settings.cacheHitSampleRate ?? settings.tracesSampleRate / 10
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
    tracesSampler: ({ attributes, inheritOrSampleWith }) =>
      attributes?.['gateway.cache'] === 'hit' ? cacheHitRate : inheritOrSampleWith(settings.tracesSampleRate),
    tracePropagationTargets: [],
    beforeBreadcrumb: () => null,
    beforeSend: (event) => scrubEvent(event),
    beforeSendTransaction: (event) => scrubEvent(event),
    beforeSendSpan: Sentry.withStaticSpan((span) => scrubDeep(span)),
  })
  setTraceHooks({ upstreamHeaders })
  subscribe(CHANNELS.request, (message) => finishRequest(message as Ctx, settings))
  subscribe(CHANNELS.notice, (message) => reportNotice(message as Notice))
  onFlush((timeoutMs) => Sentry.flush(timeoutMs))
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
      attributes: { 'gateway.route': route, 'gateway.cache': ctx.cache?.kind ?? 'none', 'http.request.method': method, 'sentry.source': 'route' },
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

function upstreamHeaders(ctx: Ctx): Record<string, string> {
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

function finishRequest(ctx: Ctx, settings: Config['sentry']): void {
  const trace = traceOf(ctx)
  const status = ctx.error?.code === 'client_closed' ? 499 : ctx.status ?? 0
  const tags = {
    route: ctx.route?.name ?? '(unmatched)',
    method: ctx.req.method ?? 'GET',
    status: String(status),
    status_class: `${Math.floor(status / 100)}xx`,
    upstream: ctx.services.upstream.origin,
    cache: ctx.cache?.kind ?? 'none',
    limit: ctx.limit ? (ctx.limit.binding.allowed ? 'allowed' : 'limited') : 'none',
    request_id: ctx.id,
  }
  const { root, scope } = trace
  if (root.isRecording()) {
    const end = Date.now() / 1000
    if (ctx.limit) childSpan(root, 'gateway.ratelimit', `rate limit ${ctx.limit.binding.policy}`, ctx.t0, ctx.marks.limited)
    if (ctx.cache) childSpan(root, 'gateway.cache', `cache lookup ${'tier' in ctx.cache ? ctx.cache.tier : ''}`.trim(), ctx.marks.limited, ctx.marks.lookedUp)
    trace.upstream?.setAttribute('http.response.status_code', ctx.upstreamResponse?.status ?? 0)
    trace.upstream?.end(end)
    scope.setTags(tags)
    root.setAttributes({ 'gateway.cache': tags.cache, 'gateway.limit': tags.limit, 'http.response.status_code': status })
    Sentry.setHttpStatus(root, status || 500)
    root.end(end)
  }
  reportFailure(ctx, trace, tags, settings)
}

function childSpan(root: Sentry.Span, op: string, name: string, from: number, to: number): void {
  if (!to || to < from) return
  Sentry.startInactiveSpan({ name, op, parentSpan: root, startTime: epochSeconds(from) }).end(epochSeconds(to))
}

/** Upstream failures are grouped by route and error class, never by URL; client aborts are not failures. */
function reportFailure(ctx: Ctx, trace: RequestTrace, tags: Record<string, string>, settings: Config['sentry']): void {
  const error = ctx.error
  let fingerprint: string[] | undefined
  let message: string | undefined
  if (error && error.source !== 'downstream') {
    fingerprint = [error.source, tags.route!, error.code]
    message = `${error.source === 'upstream' ? 'Upstream' : 'Gateway'} ${error.code} on ${tags.route}`
  } else if (!error && settings.reportUpstream5xx && (ctx.upstreamResponse?.status ?? 0) >= 500) {
    fingerprint = ['upstream-5xx', tags.route!, String(ctx.upstreamResponse!.status)]
    message = `Upstream answered ${ctx.upstreamResponse!.status} on ${tags.route}`
  }
  if (!fingerprint) return
  Sentry.withScope((scope) => {
    scope.setTags(tags)
    scope.setFingerprint(fingerprint)
    scope.setContext('request', { method: tags.method, route: tags.route, request_id: ctx.id })
    Sentry.withActiveSpan(trace.root, () => {
      if (error?.source === 'internal' && error.cause instanceof Error) Sentry.captureException(error.cause)
      else Sentry.captureMessage(message!, 'error')
    })
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
