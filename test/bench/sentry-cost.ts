// What one sampled request costs in Sentry work, in CPU microseconds (process.cpuUsage: user + system, so the
// figure does not depend on what else shares the cores). Starts the benchmark sink (test/bench/sink.ts) as
// Sentry's ingest, then runs each approach in a fresh process (the SDK is a process-wide singleton), in
// interleaved rounds, and prints the median per approach:
//
//   node test/bench/sentry-cost.ts [--rounds 3] [--requests 3000] [--only gateway,sdk-spans]
//
// Approaches:
//   baseline         the gateway's module with tracesSampleRate 0: the loop itself plus an unsampled request
//   gateway          the gateway's module (observability/sentry.ts) at tracesSampleRate 1, driven like the
//                    pipeline does (trace headers for the upstream, then the request channel): today the
//                    event built by trace-event.ts, sent as in envelope-undici
//   sdk-spans        how the gateway traced until then: SDK spans (startInactiveSpan under withIsolationScope +
//                    continueTrace), the SDK's event pipeline and its transport (a copy of that code, here)
//   build-only       the transaction built by trace-event.ts and serialised, not sent: what the transport adds
//                    is the difference to envelope
//   capture-event    the transaction built by trace-event.ts (parsed back from its text), handed to
//                    client.captureEvent (the SDK's event processing, normalisation, beforeSendTransaction,
//                    envelope, transport)
//   envelope         the same event put in an envelope here and handed to client.sendEnvelope (the SDK's
//                    transport: rate limits, buffer, node:http keep-alive agent)
//   envelope-lean    as envelope, with a transport that writes each envelope with one http.request().end(body)
//                    on a keep-alive agent (the SDK's pipes a Readable into the request, inside a new scope)
//   envelope-undici  as envelope, with a transport on an undici Pool (dispatch, no response stream)
//
// Every request is sampled; requests go in batches of 25 (the SDK's transport drops envelopes beyond 64 in
// flight), each batch followed by a flush, so the transport's asynchronous work is inside the measurement.
// "minus baseline" is what Sentry adds to a sampled request. The sink is local, so each envelope's write also
// pays the kernel's loopback delivery; CPU figures move with machine load, compare approaches within a run.
import { spawn } from 'node:child_process'
import { hostname } from 'node:os'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'

const HERE = fileURLToPath(import.meta.url)
const SINK = fileURLToPath(new URL('./sink.ts', import.meta.url))
const APPROACHES = ['baseline', 'gateway', 'sdk-spans', 'build-only', 'capture-event', 'envelope', 'envelope-lean', 'envelope-undici'] as const
type Approach = typeof APPROACHES[number]
const BATCH = 25

interface Result { approach: Approach; cpuUsPerRequest: number; dropped: number; requests: number }

const args = process.argv.slice(2)
const flag = (name: string) => { const i = args.indexOf(`--${name}`); return i === -1 ? undefined : args[i + 1] }

async function parent(): Promise<void> {
  const rounds = Number(flag('rounds') ?? 3)
  const requests = Number(flag('requests') ?? 3000)
  const only = flag('only')?.split(',') as Approach[] | undefined
  const approaches = only ?? [...APPROACHES]
  const sink = spawn(process.execPath, [SINK], { env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve) => createInterface({ input: sink.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { port: number }).port)))
  const results = new Map<Approach, Result[]>()
  try {
    for (let round = 0; round < rounds; round++) {
      for (const approach of approaches) {
        const result = await runChild(approach, port, requests)
        results.set(approach, [...(results.get(approach) ?? []), result])
        console.error(`round ${round + 1} ${approach}: ${result.cpuUsPerRequest.toFixed(1)} µs${result.dropped ? ` (${result.dropped} dropped)` : ''}`)
      }
    }
  } finally {
    sink.kill('SIGTERM')
  }
  const baseline = median((results.get('baseline') ?? []).map((r) => r.cpuUsPerRequest))
  console.log(`\nCPU per sampled request (median of ${rounds} rounds of ${requests} requests; ${hostname()}):\n`)
  console.log('| approach | CPU µs / request | minus baseline | runs |')
  console.log('|---|---|---|---|')
  for (const approach of approaches) {
    const runs = (results.get(approach) ?? []).map((r) => r.cpuUsPerRequest)
    const m = median(runs)
    const net = approach === 'baseline' || Number.isNaN(baseline) ? '' : (m - baseline).toFixed(1)
    console.log(`| ${approach} | ${m.toFixed(1)} | ${net} | ${runs.map((r) => r.toFixed(0)).join(', ')} |`)
  }
}

function runChild(approach: Approach, port: number, requests: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [HERE, '--child', approach, '--port', String(port), '--requests', String(requests)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    proc.stdout!.on('data', (chunk: Buffer) => { out += chunk })
    proc.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${approach} exited with ${code}`))
      resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Result)
    })
  })
}

function median(values: number[]): number {
  if (!values.length) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

// ---- one approach, in its own process ----

type FakeCtx = ReturnType<typeof fakeCtx>
/** Request ids shaped as the gateway makes them (a UUID with a counter in its last group). */
const REQUEST_ID_PREFIX = '8f0c2b1e-4d3a-4b6c-9e7f-'
const UPSTREAM = { origin: 'http://127.0.0.1:8080', host: '127.0.0.1:8080' }

/** What the pipeline has recorded by the time the request is published (only the fields Sentry reads). */
function fakeCtx(i: number) {
  const t0 = performance.now() - 2
  return {
    id: `${REQUEST_ID_PREFIX}${String(i).padStart(12, '0')}`,
    t0,
    req: { method: 'GET', headers: {} as Record<string, string> },
    route: { name: 'leads' },
    services: { upstream: UPSTREAM },
    limit: { decisions: [], binding: { allowed: true, limit: 1000, remaining: 999, resetMs: 60_000, policy: '1000;w=60' } },
    cache: { kind: 'miss', stored: true } as { kind: string; stored?: boolean; tier?: string },
    cacheState: undefined,
    marks: { limited: t0 + 0.05, lookedUp: t0 + 0.1 },
    upstreamResponse: undefined as { status: number; headersMs: number } | undefined,
    status: undefined as number | undefined,
    bytesOut: 0,
    error: undefined,
    tracing: undefined as unknown,
  }
}

async function child(approach: Approach, port: number, requests: number): Promise<void> {
  const dsn = `http://publickey@127.0.0.1:${port}/1`
  const settings = { dsn, environment: 'bench', release: 'bench-1', tracesSampleRate: approach === 'baseline' ? 0 : 1, reportUpstream5xx: true, profilesSampleRate: 0 }
  const handle = await setUp(approach, settings)
  const Sentry = await import('@sentry/node')
  const { flushAll } = await import('../../gateway/observability/events.ts')
  const client = Sentry.getClient()!
  let dropped = 0
  const record = client.recordDroppedEvent.bind(client)
  client.recordDroppedEvent = (reason, category, count = 1) => { dropped += count; record(reason, category, count) }
  const run = async (n: number, offset: number) => {
    for (let i = 0; i < n; i += BATCH) {
      for (let j = 0; j < BATCH && i + j < n; j++) handle(fakeCtx(offset + i + j))
      // The gateway batches its transactions (observability/sentry.ts): flushAll sends what is waiting, then flushes.
      await flushAll(10_000)
      await client.flush(10_000)
    }
  }
  await run(Math.min(1000, requests), 0)
  dropped = 0
  const before = process.cpuUsage()
  await run(requests, 1_000_000)
  const used = process.cpuUsage(before)
  const result: Result = { approach, cpuUsPerRequest: (used.user + used.system) / requests, dropped, requests }
  console.log(JSON.stringify(result))
  process.exit(0)
}

type Settings = { dsn: string; environment: string; release: string; tracesSampleRate: number; reportUpstream5xx: boolean; profilesSampleRate: number }

/** Initialises Sentry for the approach and returns what one request does. */
async function setUp(approach: Approach, settings: Settings): Promise<(ctx: FakeCtx) => void> {
  if (approach === 'baseline' || approach === 'gateway') {
    const { initSentry } = await import('../../gateway/observability/sentry.ts')
    const { publishRequest, traceHeadersFor } = await import('../../gateway/observability/events.ts')
    initSentry(settings as Parameters<typeof initSentry>[0])
    return (ctx) => {
      const asCtx = ctx as unknown as Parameters<typeof publishRequest>[0]
      traceHeadersFor(asCtx)
      ctx.upstreamResponse = { status: 200, headersMs: 1 }
      ctx.status = 200
      publishRequest(asCtx)
    }
  }
  if (approach === 'sdk-spans') return sdkSpans(settings)
  return builtEvent(approach, settings)
}

/** The options the gateway gives Sentry.init (observability/sentry.ts): integrations, data collection, scrubbing. */
async function gatewayOptions(Sentry: typeof import('@sentry/node'), settings: Settings): Promise<import('@sentry/node').NodeOptions> {
  const { scrubEvent, scrubSpan } = await import('../../gateway/observability/scrub.ts')
  return {
    dsn: settings.dsn, environment: settings.environment, release: settings.release,
    defaultIntegrations: false,
    integrations: [Sentry.onUncaughtExceptionIntegration({ exitEvenIfOtherHandlersAreRegistered: false }),
      Sentry.onUnhandledRejectionIntegration({ mode: 'warn' }), Sentry.linkedErrorsIntegration(), Sentry.dedupeIntegration()],
    dataCollection: { userInfo: false, cookies: false, httpHeaders: false, httpBodies: [], urlQueryParams: false },
    traceLifecycle: 'static',
    beforeBreadcrumb: () => null,
    beforeSend: (event) => scrubEvent(event),
    beforeSendTransaction: (event) => scrubEvent(event),
    beforeSendSpan: Sentry.withStaticSpan((span) => scrubSpan(span)),
  }
}

// ---- before: the SDK's spans (the gateway's code before trace-event.ts, trimmed to the sampled path) ----

async function sdkSpans(settings: Settings): Promise<(ctx: FakeCtx) => void> {
  const Sentry = await import('@sentry/node')
  Sentry.init({
    ...await gatewayOptions(Sentry, settings),
    tracesSampler: ({ attributes }) => (attributes?.['gateway.sampled'] ? 1 : 0),
    tracePropagationTargets: [],
  })
  const epochSeconds = (t: number) => (performance.timeOrigin + t) / 1000
  return (ctx) => {
    const method = ctx.req.method
    const route = ctx.route.name
    const { root, scope } = Sentry.withIsolationScope((scope) => Sentry.continueTrace({ sentryTrace: undefined, baggage: undefined }, () => ({
      scope,
      root: Sentry.startInactiveSpan({ name: `${method} ${route}`, op: 'http.server', forceTransaction: true, startTime: epochSeconds(ctx.t0),
        attributes: { 'gateway.route': route, 'gateway.sampled': true, 'http.request.method': method, 'sentry.source': 'route' } }),
    })))
    const upstream = Sentry.startInactiveSpan({ name: `${method} ${UPSTREAM.origin}`, op: 'http.client', parentSpan: root, attributes: { 'server.address': UPSTREAM.host } })
    Sentry.getTraceData({ span: upstream, propagateTraceparent: true })
    ctx.upstreamResponse = { status: 200, headersMs: 1 }
    ctx.status = 200
    const end = Date.now() / 1000
    Sentry.startInactiveSpan({ name: 'rate limit 1000;w=60', op: 'gateway.ratelimit', parentSpan: root, startTime: epochSeconds(ctx.t0) }).end(epochSeconds(ctx.marks.limited))
    Sentry.startInactiveSpan({ name: 'cache lookup', op: 'gateway.cache', parentSpan: root, startTime: epochSeconds(ctx.marks.limited) }).end(epochSeconds(ctx.marks.lookedUp))
    upstream.setAttribute('http.response.status_code', 200)
    upstream.end(end)
    scope.setTags({ route, method, status: '200', status_class: '2xx', upstream: UPSTREAM.origin, cache: 'miss', limit: 'allowed', request_id: ctx.id })
    root.setAttributes({ 'gateway.cache': 'miss', 'gateway.limit': 'allowed', 'http.response.status_code': 200 })
    Sentry.setHttpStatus(root, 200)
    root.end(end)
  }
}

// ---- after: the transaction built from what the gateway recorded (trace-event.ts), sent three ways ----

async function builtEvent(approach: 'build-only' | 'capture-event' | 'envelope' | 'envelope-lean' | 'envelope-undici', settings: Settings): Promise<(ctx: FakeCtx) => void> {
  const Sentry = await import('@sentry/node')
  const te = await import('../../gateway/observability/trace-event.ts')
  const { randomFillSync } = await import('node:crypto')
  Sentry.init({
    ...await gatewayOptions(Sentry, settings),
    ...(approach === 'envelope-undici' ? { transport: await undiciTransport() } : approach === 'envelope-lean' ? { transport: await leanTransport() } : {}),
  })
  const client = Sentry.getClient()!
  const options = client.getOptions()
  const sdk = options._metadata!.sdk!
  const defaults = {
    environment: settings.environment, release: settings.release, serverName: hostname(),
    sdk: { name: sdk.name!, version: sdk.version!, integrations: Object.keys((client as unknown as { _integrations: object })._integrations), packages: sdk.packages ?? [] },
    runtime: { name: 'node', version: process.version },
  }
  const constants = te.eventConstants(defaults)
  const traceSettings = { publicKey: 'publickey', environment: settings.environment, release: settings.release }
  const pool = Buffer.alloc(4096)
  let at = pool.length
  const hex = (bytes: number) => {
    if (at + bytes > pool.length) { randomFillSync(pool); at = 0 }
    at += bytes
    return pool.toString('hex', at - bytes, at)
  }
  return (ctx) => {
    const name = `${ctx.req.method} ${ctx.route.name}`
    const incoming = te.readIncomingTrace(ctx.req.headers)
    const trace = te.startTrace(incoming, te.decideSampling(incoming, 1, Math.random()), name, traceSettings, { traceId: hex(16), spanId: hex(8) })
    const upstreamSpanId = hex(8)
    const upstreamStart = performance.now()
    te.traceHeaders(trace, upstreamSpanId)
    ctx.upstreamResponse = { status: 200, headersMs: 1 }
    ctx.status = 200
    const offset = Date.now() - performance.now()
    const s = (t: number) => (offset + t) / 1000
    const end = s(performance.now())
    const eventId = hex(16)
    const item = te.transactionItem({
      trace, eventId, name, start: s(ctx.t0), end, status: 200,
      tags: { route: ctx.route.name, method: ctx.req.method, status: '200', status_class: '2xx', upstream: UPSTREAM.origin, cache: 'miss', limit: 'allowed', request_id: ctx.id },
      data: { 'gateway.route': ctx.route.name, 'http.request.method': ctx.req.method, 'gateway.cache': 'miss', 'gateway.limit': 'allowed', 'http.response.status_code': 200 },
      spans: [
        { spanId: hex(8), op: 'gateway.ratelimit', description: 'rate limit 1000;w=60', start: s(ctx.t0), end: s(ctx.marks.limited) },
        { spanId: hex(8), op: 'gateway.cache', description: 'cache lookup', start: s(ctx.marks.limited), end: s(ctx.marks.lookedUp) },
        { spanId: upstreamSpanId, op: 'http.client', description: `GET ${UPSTREAM.origin}`, start: s(upstreamStart), end, status: 200, data: { 'server.address': UPSTREAM.host, 'http.response.status_code': 200 } },
      ],
    }, constants)
    if (approach === 'build-only') {
      const header = te.envelopeHeader(eventId, new Date().toISOString(), { name: sdk.name!, version: sdk.version! }, trace.dsc)
      JSON.stringify(header)
    } else if (approach === 'capture-event') {
      // Without `sdk`: the SDK adds its own (and would append its integrations to ours on every event).
      const { sdk: _sdk, ...fields } = JSON.parse(item) as Record<string, unknown>
      client.captureEvent({ ...fields, sdkProcessingMetadata: { dynamicSamplingContext: trace.dsc } } as Parameters<typeof client.captureEvent>[0], {}, Sentry.getCurrentScope())
    } else {
      const header = te.envelopeHeader(eventId, new Date().toISOString(), { name: sdk.name!, version: sdk.version! }, trace.dsc)
      void client.sendEnvelope([header, [[{ type: 'transaction' }, item]]] as unknown as Parameters<typeof client.sendEnvelope>[0])
    }
  }
}

type TransportOptions = { url: string; headers?: Record<string, string>; recordDroppedEvent: (...args: never[]) => void }
type Response = { statusCode?: number; headers: { 'retry-after': string | null; 'x-sentry-rate-limits': string | null } }
const firstOf = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value) ?? null

/** A transport on an undici Pool (keep-alive), dispatching with a handler: no response stream is made. */
async function undiciTransport() {
  const { Pool } = await import('undici')
  const { createTransport } = await import('@sentry/core')
  return (options: TransportOptions) => {
    const url = new URL(options.url)
    const pool = new Pool(url.origin, { connections: 4, keepAliveTimeout: 10_000 })
    const path = `${url.pathname}${url.search}`
    return createTransport(options as Parameters<typeof createTransport>[0], (request) => new Promise<Response>((resolve, reject) => {
      let statusCode = 0
      let headers: Record<string, string | string[] | undefined> = {}
      pool.dispatch({ method: 'POST', path, headers: options.headers ?? {}, body: request.body as string | Uint8Array }, {
        onRequestStart() {},
        onResponseStart(_controller: unknown, status: number, responseHeaders: Record<string, string | string[] | undefined>) { statusCode = status; headers = responseHeaders },
        onResponseData() {},
        onResponseEnd() { resolve({ statusCode, headers: { 'retry-after': firstOf(headers['retry-after']), 'x-sentry-rate-limits': firstOf(headers['x-sentry-rate-limits']) } }) },
        onResponseError(_controller: unknown, err: Error) { reject(err) },
      } as unknown as Parameters<typeof pool.dispatch>[1])
    }))
  }
}

/** node:http, but the body written with the headers in one go: request().end(body) on a keep-alive agent. */
async function leanTransport() {
  const http = await import('node:http')
  const { createTransport } = await import('@sentry/core')
  return (options: TransportOptions) => {
    const url = new URL(options.url)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
    const target = { method: 'POST', agent, hostname: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, headers: options.headers ?? {} }
    return createTransport(options as Parameters<typeof createTransport>[0], (request) => new Promise<Response>((resolve, reject) => {
      const req = http.request(target, (res) => {
        res.resume()
        res.on('end', () => resolve({ statusCode: res.statusCode, headers: { 'retry-after': firstOf(res.headers['retry-after']), 'x-sentry-rate-limits': firstOf(res.headers['x-sentry-rate-limits']) } }))
      })
      req.on('error', reject)
      req.end(request.body)
    }))
  }
}

// Last, so that every declaration above is initialised.
if (flag('child')) await child(flag('child') as Approach, Number(flag('port')), Number(flag('requests') ?? 3000))
else await parent()
