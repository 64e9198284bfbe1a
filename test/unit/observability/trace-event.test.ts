import t from 'tap'
import { FILTERED } from '../../../gateway/observability/scrub.ts'
import {
  decideSampling, envelopeHeader, readBaggage, readIncomingTrace, scrubbedDsc, spanStatus, startTrace, traceHeaders,
  eventConstants, transactionItem, type EventDefaults, type RequestTrace,
} from '../../../gateway/observability/trace-event.ts'

const TRACE = '0123456789abcdef0123456789abcdef'
const SPAN = '0123456789abcdef'
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl'
const SETTINGS = { publicKey: 'pk', environment: 'test', release: 'r1' }
const IDS = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16) }
const DEFAULTS: EventDefaults = {
  environment: 'test', release: 'r1', serverName: 'host',
  sdk: { name: 'sentry.javascript.node', version: '11.12.0', integrations: ['Dedupe'], packages: [] },
  runtime: { name: 'node', version: 'v24.0.0' },
}

t.test('incoming: sentry-trace and its baggage, else W3C traceparent, else nothing', async (t) => {
  t.same(readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-1`, baggage: 'sentry-trace_id=x,sentry-transaction=GET%20leads,vendor=1, other=two' }), {
    traceId: TRACE, parentSpanId: SPAN, sampled: true, dsc: { trace_id: 'x', transaction: 'GET leads' }, otherBaggage: 'vendor=1,other=two',
  })
  t.same(readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-0` }), { traceId: TRACE, parentSpanId: SPAN, sampled: false, dsc: undefined, otherBaggage: '' })
  t.equal(readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}` })?.sampled, undefined, 'no flag: the decision is ours')
  t.same(readIncomingTrace({ traceparent: `00-${TRACE}-${SPAN}-01` }), { traceId: TRACE, parentSpanId: SPAN, sampled: true, dsc: undefined, otherBaggage: '' })
  t.equal(readIncomingTrace({ traceparent: `00-${TRACE}-${SPAN}-02` })?.sampled, false, 'only the sampled bit counts')
  t.equal(readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-1`, traceparent: `00-${'f'.repeat(32)}-${SPAN}-00` })?.traceId, TRACE, 'Sentry\'s header wins')
  t.equal(readIncomingTrace({ 'sentry-trace': [`${TRACE}-${SPAN}-1`, 'junk'] })?.traceId, TRACE, 'the first of repeated headers')
  for (const bad of [`${TRACE.toUpperCase()}-${SPAN}-1`, `${TRACE}-${SPAN}-2`, `${TRACE}-short-1`, `${'0'.repeat(32)}-${SPAN}-1`, `${TRACE}-${'0'.repeat(16)}-1`, `${TRACE}-${SPAN}-1,${TRACE}-${SPAN}-1`]) {
    t.equal(readIncomingTrace({ 'sentry-trace': bad }), undefined, `not continued: ${bad}`)
  }
  t.equal(readIncomingTrace({ traceparent: `01-${TRACE}-${SPAN}-01` }), undefined, 'an unknown traceparent version')
  t.equal(readIncomingTrace({}), undefined)
})

t.test('baggage: undecodable and empty entries are dropped, repeated headers joined', async (t) => {
  t.same(readBaggage(['sentry-a=1', 'sentry-b=%E0%A4%A,sentry-c=,x=y']), { dsc: { a: '1' }, otherBaggage: 'x=y' })
  t.same(readBaggage(undefined), { dsc: undefined, otherBaggage: '' })
})

t.test('sampling: the client\'s decision is continued, otherwise the rate decides with a shared random number', async (t) => {
  const sampled = readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-1` })
  const unsampled = readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-0` })
  t.same(decideSampling(sampled, 0, 0.99), { sampled: true, rate: undefined, rand: 0.99 })
  t.same(decideSampling(unsampled, 1, 0.01), { sampled: false, rate: undefined, rand: 0.01 })
  t.same(decideSampling(undefined, 0.1, 0.05), { sampled: true, rate: 0.1, rand: 0.05 })
  t.same(decideSampling(undefined, 0.1, 0.5), { sampled: false, rate: 0.1, rand: 0.5 })
  const deferred = readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}`, baggage: 'sentry-sample_rand=0.02' })
  t.same(decideSampling(deferred, 0.1, 0.9), { sampled: true, rate: 0.1, rand: 0.02 }, 'the client\'s sample_rand decides')
  const withRate = readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-1`, baggage: 'sentry-sample_rate=0.25' })
  const decision = decideSampling(withRate, 1, 0.5)
  t.equal(decision.rate, 0.25)
  t.equal(decision.rand, 0.125, 'a sample_rand consistent with the client\'s decision (below its rate)')
  t.equal(decideSampling(readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-0`, baggage: 'sentry-sample_rate=0.25' }), 1, 0.5).rand, 0.625, 'and above it when unsampled')
})

t.test('a new trace: the gateway writes the dynamic sampling context', async (t) => {
  const trace = startTrace(undefined, { sampled: true, rate: 0.1, rand: 0.05 }, 'GET leads', SETTINGS, IDS)
  t.same(trace, {
    traceId: IDS.traceId, spanId: IDS.spanId, parentSpanId: undefined, sampling: { sampled: true, rate: 0.1, rand: 0.05 }, otherBaggage: '',
    dsc: { trace_id: IDS.traceId, public_key: 'pk', environment: 'test', release: 'r1', transaction: 'GET leads', sampled: 'true', sample_rand: '0.05', sample_rate: '0.1' },
  })
  t.notOk('release' in startTrace(undefined, { sampled: true, rate: 1, rand: 0 }, 'GET x', { ...SETTINGS, release: undefined }, IDS).dsc)
})

t.test('a continued trace: the client\'s ids, its baggage frozen (a sample_rand added when missing)', async (t) => {
  const incoming = readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-1`, baggage: 'sentry-trace_id=0123456789abcdef0123456789abcdef,sentry-public_key=theirs,vendor=1' })
  const trace = startTrace(incoming, decideSampling(incoming, 0, 0.3), 'GET leads', SETTINGS, IDS)
  t.equal(trace.traceId, TRACE)
  t.equal(trace.parentSpanId, SPAN)
  t.equal(trace.spanId, IDS.spanId, 'the gateway\'s own span')
  t.same(trace.dsc, { trace_id: TRACE, public_key: 'theirs', sample_rand: '0.3' })
  const w3c = readIncomingTrace({ traceparent: `00-${TRACE}-${SPAN}-01` })
  t.match(startTrace(w3c, decideSampling(w3c, 0, 0.3), 'GET leads', SETTINGS, IDS).dsc, { trace_id: TRACE, public_key: 'pk', sampled: 'true' }, 'W3C only: no Sentry context came, so the gateway writes one')
})

t.test('headers for the upstream: one set, the given span as parent, the client\'s other baggage kept', async (t) => {
  const incoming = readIncomingTrace({ 'sentry-trace': `${TRACE}-${SPAN}-1`, baggage: 'sentry-transaction=GET%20leads,vendor=1' })
  const trace = startTrace(incoming, decideSampling(incoming, 0, 0.5), 'GET leads', SETTINGS, IDS)
  const headers = traceHeaders(trace, 'c'.repeat(16))
  t.same(Object.keys(headers).sort(), ['baggage', 'sentry-trace', 'traceparent'])
  t.equal(headers['sentry-trace'], `${TRACE}-${'c'.repeat(16)}-1`)
  t.equal(headers.traceparent, `00-${TRACE}-${'c'.repeat(16)}-01`)
  t.equal(headers.baggage, 'sentry-transaction=GET%20leads,sentry-sample_rand=0.5,vendor=1')
  const unsampled = traceHeaders(startTrace(undefined, { sampled: false, rate: 0.1, rand: 0.5 }, 'GET x', SETTINGS, IDS), 'c'.repeat(16))
  t.match(unsampled, { 'sentry-trace': /-0$/, traceparent: /-00$/, baggage: /sentry-sampled=false/ })
})

/** The transaction as Sentry reads it: transactionItem's JSON text, parsed. */
const transactionEvent = (input: Parameters<typeof transactionItem>[0], defaults: EventDefaults) =>
  JSON.parse(transactionItem(input, eventConstants(defaults))) as Record<string, unknown>

function sampleTrace(): RequestTrace {
  return startTrace(undefined, { sampled: true, rate: 0.1, rand: 0.05 }, 'GET leads', SETTINGS, IDS)
}

t.test('the transaction: METHOD route, op http.server, child spans under it, the tags, the status', async (t) => {
  const event = transactionEvent({
    trace: sampleTrace(), eventId: 'e'.repeat(32), name: 'GET leads', start: 100, end: 100.25, status: 404,
    tags: { route: 'leads', method: 'GET', status: '404', status_class: '4xx', cache: 'miss', limit: 'allowed', request_id: 'r1' },
    data: { 'gateway.route': 'leads', 'http.response.status_code': 404 },
    spans: [
      { spanId: '1'.repeat(16), op: 'gateway.ratelimit', description: 'rate limit default', start: 100, end: 100.01 },
      { spanId: '2'.repeat(16), op: 'http.client', description: 'GET http://api', start: 100.02, end: 100.25, status: 503, data: { 'server.address': 'api' } },
    ],
  }, DEFAULTS)
  t.match(event, {
    type: 'transaction', event_id: 'e'.repeat(32), platform: 'node', transaction: 'GET leads', transaction_info: { source: 'route' },
    start_timestamp: 100, timestamp: 100.25, environment: 'test', release: 'r1', server_name: 'host', sdk: DEFAULTS.sdk,
    contexts: {
      trace: { trace_id: IDS.traceId, span_id: IDS.spanId, op: 'http.server', status: 'not_found', origin: 'manual',
        data: { 'sentry.op': 'http.server', 'sentry.source': 'route', 'sentry.sample_rate': 0.1, 'gateway.route': 'leads', 'http.response.status_code': 404 } },
      runtime: DEFAULTS.runtime,
    },
    tags: { route: 'leads', status_class: '4xx', request_id: 'r1' },
  })
  t.notOk('parent_span_id' in (event.contexts as { trace: object }).trace, 'a new trace has no parent')
  t.same(event.spans, [
    { trace_id: IDS.traceId, span_id: '1'.repeat(16), parent_span_id: IDS.spanId, op: 'gateway.ratelimit', description: 'rate limit default',
      start_timestamp: 100, timestamp: 100.01, status: 'ok', origin: 'manual', data: { 'sentry.op': 'gateway.ratelimit', 'sentry.origin': 'manual' } },
    { trace_id: IDS.traceId, span_id: '2'.repeat(16), parent_span_id: IDS.spanId, op: 'http.client', description: 'GET http://api',
      start_timestamp: 100.02, timestamp: 100.25, status: 'unavailable', origin: 'manual', data: { 'sentry.op': 'http.client', 'sentry.origin': 'manual', 'server.address': 'api' } },
  ])
  const noAnswer = transactionEvent({ trace: sampleTrace(), eventId: 'e'.repeat(32), name: 'GET leads', start: 1, end: 2, status: 0, tags: {}, data: {}, spans: [] }, { ...DEFAULTS, release: undefined, serverName: undefined })
  t.equal((noAnswer.contexts as { trace: { status: string } }).trace.status, 'internal_error', 'no answer sent counts as an error')
  t.notOk('release' in noAnswer || 'server_name' in noAnswer)
})

t.test('the item is JSON whatever its texts hold; a continued trace names its parent', async (t) => {
  const odd = 'GET "quoted" \\ back\nslash \u2028 é 漢 \u0001'
  const continued = startTrace({ traceId: TRACE, parentSpanId: 'd'.repeat(16), sampled: true, dsc: undefined, otherBaggage: '' },
    { sampled: true, rate: undefined, rand: 0.5 }, odd, SETTINGS, IDS)
  const event = transactionEvent({
    trace: continued, eventId: 'e'.repeat(32), name: odd, start: 1.5, end: Number.NaN, status: 200,
    tags: { route: odd }, data: { note: odd, count: 3, ok: true },
    spans: [{ spanId: '1'.repeat(16), op: odd, description: odd, start: 1.5, end: Number.POSITIVE_INFINITY, data: { note: odd } }],
  }, { ...DEFAULTS, environment: odd })
  t.equal(event.transaction, odd)
  t.equal(event.environment, odd)
  t.equal(event.start_timestamp, 1.5)
  t.equal(event.timestamp, null, 'a time JSON cannot say is null, as JSON.stringify writes it')
  t.match(event.contexts, { trace: { trace_id: TRACE, span_id: IDS.spanId, parent_span_id: 'd'.repeat(16), data: { note: odd, count: 3, ok: true } } })
  t.notOk('sentry.sample_rate' in (event.contexts as { trace: { data: object } }).trace.data, 'no rate when the client did not say')
  t.match(event.tags, { route: odd })
  t.match((event.spans as object[])[0], { op: odd, description: odd, timestamp: null, data: { 'sentry.op': odd, note: odd } })
})

t.test('nothing sensitive leaves: texts, tags, attributes and the client\'s baggage are filtered', async (t) => {
  const event = transactionEvent({
    trace: sampleTrace(), eventId: 'e'.repeat(32), name: `GET ${JWT}`, start: 1, end: 2, status: 200,
    tags: { request_id: JWT, route: 'leads' },
    data: { 'http.request.header.authorization': 'Basic abc', note: `Bearer ${JWT}` },
    spans: [{ spanId: '1'.repeat(16), op: 'http.client', description: '/x?token=s3cret&page=2', start: 1, end: 2, data: { api_key: 'k', ok: 'fine' } }],
  }, DEFAULTS)
  const text = JSON.stringify(event)
  t.notOk(text.includes(JWT) || text.includes('s3cret') || text.includes('Basic abc'), 'no secret in the event')
  t.equal(event.transaction, `GET ${FILTERED}`)
  const uuid = 'f47ac10b-58cc-4372-a567-0e02b2c3d479'
  t.equal((transactionEvent({ trace: sampleTrace(), eventId: 'e'.repeat(32), name: 'GET x', start: 1, end: 2, status: 200, tags: { request_id: uuid }, data: {}, spans: [] }, DEFAULTS).tags as { request_id: string }).request_id, uuid, 'ids are kept as they are')
  t.match(event.tags, { request_id: FILTERED, route: 'leads' })
  t.match((event.contexts as { trace: { data: object } }).trace.data, { 'http.request.header.authorization': FILTERED, note: `Bearer ${FILTERED}` })
  t.match((event.spans as Array<{ description: string; data: object }>)[0], { description: `/x?token=${FILTERED}&page=2`, data: { api_key: FILTERED, ok: 'fine' } })
  t.same(scrubbedDsc({ transaction: `GET /x?access_token=${JWT}`, trace_id: TRACE }), { transaction: `GET /x?access_token=${FILTERED}`, trace_id: TRACE })
  const header = envelopeHeader('e'.repeat(32), '2026-01-01T00:00:00.000Z', { name: 'sdk', version: '1' }, { transaction: JWT })
  t.same(header, { event_id: 'e'.repeat(32), sent_at: '2026-01-01T00:00:00.000Z', sdk: { name: 'sdk', version: '1' }, trace: { transaction: FILTERED } })
})

t.test('span status from HTTP status, as Sentry names them', async (t) => {
  const cases: Array<[number, string]> = [[200, 'ok'], [304, 'ok'], [400, 'invalid_argument'], [401, 'unauthenticated'], [403, 'permission_denied'],
    [404, 'not_found'], [409, 'already_exists'], [413, 'failed_precondition'], [418, 'invalid_argument'], [429, 'resource_exhausted'],
    [499, 'cancelled'], [500, 'internal_error'], [501, 'unimplemented'], [502, 'internal_error'], [503, 'unavailable'], [504, 'deadline_exceeded'], [0, 'internal_error']]
  for (const [status, name] of cases) t.equal(spanStatus(status), name, String(status))
})
