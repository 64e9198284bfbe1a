// Pure: a request's trace as Sentry sees it, built from what the gateway already records, without the SDK's
// span machinery. Reads the client's trace headers (sentry-trace + baggage, or W3C traceparent), decides the
// sampling, makes the trace headers the upstream gets and the transaction event and envelope Sentry gets.
// Ids, random numbers and times come in as arguments; sentry.ts supplies them.
import type { IncomingHttpHeaders } from 'node:http'
import { FILTERED, isSensitiveName, scrubDeep, scrubString } from './scrub.ts'
import { Memo } from '../memo.ts'

/** The client's trace, when it sent one we can continue. */
export interface IncomingTrace {
  traceId: string
  parentSpanId: string
  /** The client's sampling decision; undefined when it made none. */
  sampled: boolean | undefined
  /** The `sentry-` baggage entries, decoded and without the prefix; undefined when there were none. */
  dsc: Record<string, string> | undefined
  /** The client's other baggage entries, as sent (comma-joined), passed on to the upstream. */
  otherBaggage: string
}

const SENTRY_TRACE = /^[ \t]*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?[ \t]*$/
const TRACEPARENT = /^[ \t]*00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})[ \t]*$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)
/** The longest baggage header passed on (W3C asks for at least 8192 bytes; Sentry's SDKs stop there too). */
const MAX_BAGGAGE = 8192

/** Sentry's own headers win over W3C traceparent; a malformed or all-zero id continues nothing. */
export function readIncomingTrace(headers: IncomingHttpHeaders): IncomingTrace | undefined {
  const sentryTrace = SENTRY_TRACE.exec(first(headers['sentry-trace']) ?? '')
  if (sentryTrace) {
    const [, traceId, parentSpanId, flag] = sentryTrace as unknown as [string, string, string, string | undefined]
    if (traceId === ZERO_TRACE || parentSpanId === ZERO_SPAN) return undefined
    const baggage = readBaggage(headers.baggage)
    return { traceId, parentSpanId, sampled: flag === undefined ? undefined : flag === '1', ...baggage }
  }
  const traceparent = TRACEPARENT.exec(first(headers.traceparent) ?? '')
  if (!traceparent) return undefined
  const [, traceId, parentSpanId, flags] = traceparent as unknown as [string, string, string, string]
  if (traceId === ZERO_TRACE || parentSpanId === ZERO_SPAN) return undefined
  return { traceId, parentSpanId, sampled: (parseInt(flags, 16) & 1) === 1, dsc: undefined, otherBaggage: readBaggage(headers.baggage).otherBaggage }
}

/** Splits baggage into Sentry's dynamic sampling context and everything else (kept as sent). */
export function readBaggage(header: string | string[] | undefined): { dsc: Record<string, string> | undefined; otherBaggage: string } {
  const text = Array.isArray(header) ? header.join(',') : header ?? ''
  let dsc: Record<string, string> | undefined
  const others: string[] = []
  for (const entry of text.split(',')) {
    const eq = entry.indexOf('=')
    if (eq === -1) continue
    const key = entry.slice(0, eq).trim()
    if (!key.startsWith('sentry-')) {
      if (key) others.push(entry.trim())
      continue
    }
    const value = decode(entry.slice(eq + 1).trim())
    if (value) (dsc ??= {})[key.slice('sentry-'.length)] = value
  }
  return { dsc, otherBaggage: others.join(',') }
}

export interface Sampling {
  sampled: boolean
  /** The rate the decision was made at, when known (a continued decision may not say). */
  rate: number | undefined
  /** Sentry's sample_rand: the random number in [0, 1) behind the decision, shared along the trace. */
  rand: number
}

/**
 * A client's decision is continued either way; otherwise `rate` decides, with the client's sample_rand when it
 * sent one (so every service of a trace agrees), else `rand`.
 */
export function decideSampling(incoming: IncomingTrace | undefined, rate: number, rand: number): Sampling {
  const incomingRand = parseRate(incoming?.dsc?.sample_rand)
  const incomingRate = parseRate(incoming?.dsc?.sample_rate)
  if (incoming?.sampled !== undefined) {
    // The SDKs' rule when the client sent no sample_rand: one consistent with its decision and rate.
    const consistent = incomingRate === undefined ? rand : incoming.sampled ? rand * incomingRate : incomingRate + rand * (1 - incomingRate)
    return { sampled: incoming.sampled, rate: incomingRate, rand: incomingRand ?? consistent }
  }
  const shared = incomingRand ?? rand
  return { sampled: shared < rate, rate, rand: shared }
}

export interface TraceSettings { publicKey: string; environment: string; release?: string | undefined }

/** One request's trace: the ids and the dynamic sampling context that go with every event and header. */
export interface RequestTrace {
  traceId: string
  /** The request's (the transaction's) span. */
  spanId: string
  /** The client's span, when the trace was continued. */
  parentSpanId: string | undefined
  sampling: Sampling
  /** Sent as the envelope header's `trace` and, prefixed, as the upstream's baggage. */
  dsc: Record<string, string>
  otherBaggage: string
}

/**
 * Continues the client's trace (its sentry baggage frozen as it came, as Sentry's SDKs do) or starts one, in
 * which case the gateway is the head of the trace and writes the dynamic sampling context itself.
 */
export function startTrace(incoming: IncomingTrace | undefined, sampling: Sampling, transaction: string,
  settings: TraceSettings, ids: { traceId: string; spanId: string }): RequestTrace {
  if (incoming) {
    const dsc = incoming.dsc
      ? { ...incoming.dsc, sample_rand: incoming.dsc.sample_rand ?? String(sampling.rand) }
      : dscOf(incoming.traceId, sampling, transaction, settings)
    return { traceId: incoming.traceId, spanId: ids.spanId, parentSpanId: incoming.parentSpanId, sampling, dsc, otherBaggage: incoming.otherBaggage }
  }
  return { traceId: ids.traceId, spanId: ids.spanId, parentSpanId: undefined, sampling, dsc: dscOf(ids.traceId, sampling, transaction, settings), otherBaggage: '' }
}

function dscOf(traceId: string, sampling: Sampling, transaction: string, settings: TraceSettings): Record<string, string> {
  // Built key by key (no spreads of conditional parts): this runs for every sampled request.
  const dsc: Record<string, string> = { trace_id: traceId, public_key: settings.publicKey, environment: settings.environment }
  if (settings.release) dsc.release = settings.release
  dsc.transaction = transaction
  dsc.sampled = String(sampling.sampled)
  dsc.sample_rand = String(sampling.rand)
  if (sampling.rate !== undefined) dsc.sample_rate = String(sampling.rate)
  return dsc
}

/** What the upstream gets instead of the client's trace headers: one set, with `spanId` (the upstream call) as parent. */
export function traceHeaders(trace: RequestTrace, spanId: string): { 'sentry-trace': string; baggage: string; traceparent: string } {
  const sampled = trace.sampling.sampled
  return {
    'sentry-trace': `${trace.traceId}-${spanId}-${sampled ? '1' : '0'}`,
    baggage: baggageOf(trace),
    traceparent: `00-${trace.traceId}-${spanId}-${sampled ? '01' : '00'}`,
  }
}

function baggageOf(trace: RequestTrace): string {
  let baggage = ''
  for (const [key, value] of Object.entries(trace.dsc)) baggage += `${baggage ? ',' : ''}sentry-${key}=${encodeURIComponent(value)}`
  if (trace.otherBaggage && baggage.length + trace.otherBaggage.length < MAX_BAGGAGE) baggage += `,${trace.otherBaggage}`
  return baggage
}

/** A finished span under the transaction; times in epoch seconds. */
export interface SpanRecord { spanId: string; op: string; description: string; start: number; end: number; status?: number; data?: Record<string, unknown> }

export interface TransactionInput {
  trace: RequestTrace
  eventId: string
  /** `METHOD route`. */
  name: string
  start: number
  end: number
  /** The answer's HTTP status (0: none was sent). */
  status: number
  tags: Record<string, string>
  /** The request span's attributes. */
  data: Record<string, unknown>
  spans: readonly SpanRecord[]
}

/** What the SDK would have added to every event: who sent it and from where. */
export interface EventDefaults {
  environment: string
  release?: string | undefined
  serverName?: string | undefined
  sdk: { name: string; version: string; integrations: string[]; packages: Array<{ name: string; version: string }> }
  runtime: { name: string; version: string }
}

/** What every transaction of this process carries, serialised once (eventConstants). */
export interface EventConstants {
  /** `"platform":…,"environment":…,"release":…,"server_name":…,"sdk":{…}` (release and server name when set). */
  readonly fields: string
  /** The runtime context, as JSON. */
  readonly runtime: string
}

export function eventConstants(defaults: EventDefaults): EventConstants {
  const fields: Record<string, unknown> = { platform: 'node', environment: clean(defaults.environment) }
  if (defaults.release) fields.release = clean(defaults.release)
  if (defaults.serverName) fields.server_name = clean(defaults.serverName)
  fields.sdk = defaults.sdk
  return { fields: JSON.stringify(fields).slice(1, -1), runtime: JSON.stringify(defaults.runtime) }
}

/**
 * The transaction event Sentry's ingest expects (the shape the SDK sends for a root span with children), as the
 * JSON text of the envelope item, written out here rather than built as objects for JSON.stringify: with the
 * process's constant fields serialised once, a transaction costs about a third less CPU to make. Every text in it
 * that could carry data (names, descriptions, tags, attributes, environment, release) is filtered as scrubEvent
 * and scrubSpan filter the SDK's events; ids (hex, made here or matched as hex on the way in) and times carry none.
 */
export function transactionItem(input: TransactionInput, constants: EventConstants): string {
  const { trace } = input
  const ids = `"trace_id":"${trace.traceId}"`
  let spans = ''
  for (const span of input.spans) {
    spans += `${spans ? ',' : ''}{${ids},"span_id":"${span.spanId}","parent_span_id":"${trace.spanId}","op":${text(span.op)},`
      + `"description":${text(span.description)},"start_timestamp":${time(span.start)},"timestamp":${time(span.end)},`
      + `"status":"${span.status === undefined ? 'ok' : spanStatus(span.status)}","origin":"manual",`
      + `"data":${JSON.stringify(cleanRecord({ 'sentry.op': span.op, 'sentry.origin': 'manual', ...span.data }))}}`
  }
  const traceData: Record<string, unknown> = { 'sentry.op': 'http.server', 'sentry.origin': 'manual', 'sentry.source': 'route' }
  if (trace.sampling.rate !== undefined) traceData['sentry.sample_rate'] = trace.sampling.rate
  return `{"type":"transaction","event_id":"${input.eventId}",${constants.fields},"transaction":${text(input.name)},`
    + `"transaction_info":{"source":"route"},"start_timestamp":${time(input.start)},"timestamp":${time(input.end)},`
    + `"contexts":{"trace":{${ids},"span_id":"${trace.spanId}",${trace.parentSpanId ? `"parent_span_id":"${trace.parentSpanId}",` : ''}`
    + `"op":"http.server","status":"${spanStatus(input.status || 500)}","origin":"manual",`
    + `"data":${JSON.stringify(cleanRecord(Object.assign(traceData, input.data)))}},"runtime":${constants.runtime}},`
    + `"tags":${JSON.stringify(cleanRecord(input.tags))},"spans":[${spans}]}`
}

/** A text as a JSON string, filtered. */
function text(value: string): string {
  return JSON.stringify(clean(value))
}

/** A time as JSON (null for what JSON cannot say, as JSON.stringify would). */
function time(seconds: number): string {
  return Number.isFinite(seconds) ? String(seconds) : 'null'
}

/** The header of the envelope that carries a transaction: the trace's dynamic sampling context rides here. */
export function envelopeHeader(eventId: string, sentAt: string, sdk: { name: string; version: string }, dsc: Record<string, string>): Record<string, unknown> {
  return { event_id: eventId, sent_at: sentAt, sdk, trace: scrubbedDsc(dsc) }
}

/**
 * The dynamic sampling context as it may leave for Sentry: a client's baggage can say anything, so its values
 * are filtered like any other text (the upstream still gets the client's entries as they came).
 */
export function scrubbedDsc(dsc: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const key in dsc) out[key] = clean(dsc[key]!)
  return out
}

/**
 * scrubString, remembered: the same few texts (route names, ops, policies, the upstream) recur in every event,
 * and filtering them each time cost more than the rest of the event. Bounded: forgotten all at once when full.
 */
const cleaned = new Memo<string>(4096)

/** Hex ids, UUIDs and numbers: nothing scrubString looks for can hide in these, and they are mostly unique. */
const PLAIN = /^[0-9a-f.-]*$/

function clean(text: string): string {
  const out = cleaned.get(text)
  if (out !== undefined) return out
  return PLAIN.test(text) ? text : cleaned.set(text, scrubString(text))
}

const sensitiveNames = new Memo<boolean>(4096)

function sensitive(name: string): boolean {
  return sensitiveNames.get(name) ?? sensitiveNames.set(name, isSensitiveName(name))
}

/** scrubDeep for a flat record: sensitive names filtered, texts cleaned, numbers and booleans kept. */
function cleanRecord<T extends Record<string, unknown>>(record: T): T {
  const out: Record<string, unknown> = {}
  for (const key in record) {
    const value = record[key]
    if (sensitive(key)) out[key] = FILTERED
    else if (typeof value === 'string') out[key] = clean(value)
    else if (value !== null && typeof value === 'object') out[key] = scrubDeep(value)
    else out[key] = value
  }
  return out as T
}

/** Sentry's span status for an HTTP status (the SDK's getSpanStatusFromHttpCode). */
export function spanStatus(httpStatus: number): string {
  if (httpStatus >= 100 && httpStatus < 400) return 'ok'
  const named = STATUS_NAMES[httpStatus]
  if (named) return named
  return httpStatus >= 400 && httpStatus < 500 ? 'invalid_argument' : 'internal_error'
}

const STATUS_NAMES: Record<number, string> = {
  401: 'unauthenticated', 403: 'permission_denied', 404: 'not_found', 409: 'already_exists', 413: 'failed_precondition',
  429: 'resource_exhausted', 499: 'cancelled', 501: 'unimplemented', 503: 'unavailable', 504: 'deadline_exceeded',
}

function parseRate(text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const value = Number(text)
  return Number.isFinite(value) && value >= 0 && value <= 1 && text.trim() !== '' ? value : undefined
}

function decode(text: string): string | undefined {
  try { return decodeURIComponent(text) } catch { return undefined }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}
