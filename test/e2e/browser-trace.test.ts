// One trace from the browser to the API, for real: Chromium loads the SalesFlow demo page through the
// gateway, logs in, lists leads and throws a test error. The browser SDK's envelopes go through the gateway's
// Sentry tunnel to a local stand-in for Sentry's ingest (project 2), the gateway's own to project 1, and the
// demo API records the trace headers it was sent. Skips (saying so) where Chromium is not installed.
import t from 'tap'
import { existsSync } from 'node:fs'
import { chromium, type Browser, type Request } from 'playwright-core'
import { startDemoUpstream } from '../../deploy/demo-upstream/app.ts'
import { configFor, startGateway } from '../helpers/gateway.ts'
import { startSentryReceiver, type Envelope } from '../helpers/sentry-receiver.ts'

const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].filter((p): p is string => !!p)
const executablePath = CANDIDATES.find((path) => existsSync(path))
const skip = executablePath ? false : `chromium not installed: none of ${CANDIDATES.join(', ')} exists (apt-get install chromium, or set CHROMIUM_PATH)`
// Keeps Chromium off the network: no update checks, no sync, no QUIC; the only traffic is to the gateway.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']

type Json = Record<string, unknown>
const traceOf = (item: Json) => (item.contexts as { trace?: { trace_id?: string; op?: string } } | undefined)?.trace
const itemsOn = (envelopes: Envelope[], project: number, type: string): Json[] =>
  envelopes.filter((e) => e.path.startsWith(`/api/${project}/envelope/`))
    .flatMap((e) => e.items.filter((i) => i.header.type === type).map((i) => i.payload as Json))
const exceptionValue = (event: Json) => (event.exception as { values?: Array<{ value?: string }> } | undefined)?.values?.[0]?.value

t.test('the demo page through the gateway: one trace from the browser to the API, errors through the tunnel', { skip }, async (t) => {
  const receiver = await startSentryReceiver()
  t.teardown(() => receiver.close())
  const browserDsn = receiver.dsn(2)
  // What the API received for GET /api/leads: every header line, as sent.
  const leadsRequests: Array<{ rawHeaders: string[] }> = []
  const demo = await startDemoUpstream({
    leadsPerUser: 30,
    frontendDsn: browserDsn,
    onRequest: (req) => { if (req.method === 'GET' && req.url?.startsWith('/api/leads')) leadsRequests.push({ rawHeaders: [...req.rawHeaders] }) },
  })
  t.teardown(() => demo.close())
  const gw = await startGateway(configFor(demo.url, `sentry:
  dsn: "${receiver.dsn(1)}"
  environment: test
  tracesSampleRate: 1
  tunnel: { path: /monitoring, allow: ["${browserDsn}"], maxSize: 256KiB, limit: 600/min }
routes:
  - { name: leads, match: GET /api/leads }
`))
  t.teardown(() => gw.stop())

  const browser: Browser = await chromium.launch({ executablePath, headless: true, args: ARGS, timeout: 60_000 })
  t.teardown(() => browser.close())
  const page = await browser.newPage()
  const consoleLines: string[] = []
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`))
  const requested: Request[] = []
  page.on('request', (request) => requested.push(request))

  // Load, log in, list leads.
  const loaded = await page.goto(`${gw.url}/`)
  t.equal(loaded?.status(), 200, 'the page, through the gateway')
  await page.click('#login-button')
  await page.waitForSelector('#list-leads:not([hidden])', { timeout: 15_000 })
  t.match(await page.textContent('#who'), 'Signed in as alice')
  const [leadsResponse] = await Promise.all([
    page.waitForResponse((res) => new URL(res.url()).pathname === '/api/leads', { timeout: 15_000 }),
    page.click('#list-leads'),
  ])
  await page.waitForSelector('#leads:not([hidden]) tbody tr', { timeout: 15_000 })
  t.equal(leadsResponse.status(), 200)
  t.equal(await page.locator('#leads tbody tr').count(), 20, 'the leads are listed')
  const leadsRequestId = (await leadsResponse.allHeaders())['x-request-id']
  const sentByBrowser = (await leadsResponse.request().allHeaders())['sentry-trace']
  t.match(sentByBrowser, /^[0-9a-f]{32}-[0-9a-f]{16}(-[01])?$/, 'the browser sent sentry-trace to the gateway')
  const traceId = sentByBrowser?.split('-')[0]

  // The test error.
  const [thrown] = await Promise.all([page.waitForEvent('pageerror', { timeout: 15_000 }), page.click('#boom')])
  t.equal(thrown.message, 'SalesFlow test error', 'the button threw')

  // What the refused envelopes look like: a DSN not on the list, and one over maxSize (256KiB).
  const refused = await page.evaluate(async (allowed) => {
    const envelope = (dsn: string, message: string) =>
      `${JSON.stringify({ dsn, sent_at: new Date().toISOString() })}\n{"type":"event"}\n${JSON.stringify({ message })}\n`
    const post = (body: string) => fetch('/monitoring', { method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body })
    return {
      unknownDsn: (await post(envelope('http://evilkey@attacker.invalid/7', 'refused-unknown-dsn'))).status,
      oversized: (await post(envelope(allowed, `refused-oversized-${'x'.repeat(300 * 1024)}`))).status,
    }
  }, browserDsn)
  t.same(refused, { unknownDsn: 403, oversized: 413 }, 'the tunnel refuses a DSN not on the list (403) and an envelope over maxSize (413)')

  // The browser's error event, through the tunnel to project 2.
  const browserEvent = () => itemsOn(receiver.envelopes, 2, 'event').find((e) => exceptionValue(e) === 'SalesFlow test error')
  await receiver.waitFor(() => browserEvent() !== undefined, 20_000).catch((err: Error) => {
    throw new Error(`${err.message}; browser console: ${JSON.stringify(consoleLines)}; envelopes to: ${JSON.stringify(receiver.envelopes.map((e) => e.path))}`)
  })
  const event = browserEvent()!
  const eventEnvelope = receiver.envelopes.find((e) => e.items.some((i) => i.payload === event))!
  t.match(eventEnvelope.path, /^\/api\/2\/envelope\//, 'on project 2\'s endpoint')
  t.equal(eventEnvelope.header.dsn, browserDsn, 'the envelope names the allow-listed DSN')
  t.equal(event.platform, 'javascript', 'sent by the browser SDK')
  t.match(event.request, { url: `${gw.url}/` })
  t.equal(traceOf(event)?.trace_id, traceId, 'the error is in the same trace')
  // The gateway logs a request once its answer is written, so a line may come a moment after the receiver got it.
  const isTunnelLine = (line: Json) => line.msg === 'request' && line.route === 'sentry-tunnel'
  for (const status of [200, 403, 413]) await gw.waitForLog((line) => isTunnelLine(line) && line.status === status)
  const tunnelLines = gw.logs.filter(isTunnelLine)
  t.ok(tunnelLines.every((line) => line.method === 'POST' && line.path === '/monitoring'), 'the envelopes went through the gateway\'s tunnel route (POST /monitoring)')
  t.same(tunnelLines.filter((line) => line.status !== 200).map((line) => line.status).sort(), [403, 413], 'only the two refused envelopes were refused')

  // The browser's transaction and the gateway's, one trace.
  await receiver.waitFor(() => itemsOn(receiver.envelopes, 2, 'transaction').some((tx) => traceOf(tx)?.trace_id === traceId), 20_000)
  const browserTx = itemsOn(receiver.envelopes, 2, 'transaction').filter((tx) => traceOf(tx)?.trace_id === traceId)
  t.ok(browserTx.some((tx) => ['pageload', 'navigation', 'http.client'].includes(traceOf(tx)?.op ?? '')), `a browser transaction in the trace (${browserTx.map((tx) => traceOf(tx)?.op).join(', ')})`)
  const gatewayTx = () => itemsOn(receiver.envelopes, 1, 'transaction').find((tx) => (tx.tags as Json | undefined)?.request_id === leadsRequestId)
  await receiver.waitFor(() => gatewayTx() !== undefined, 20_000)
  const gwTx = gatewayTx()!
  t.match(traceOf(gwTx), { op: 'http.server', trace_id: traceId }, 'the gateway continued the browser\'s trace')
  t.match(gwTx.tags, { route: 'leads', method: 'GET', status: '200' })
  t.equal(gwTx.transaction, 'GET leads')

  // The API behind the gateway: exactly one sentry-trace, in that trace.
  t.equal(leadsRequests.length, 1, 'the API was asked for the leads once')
  const raw = leadsRequests[0]!.rawHeaders
  const sentryTraces = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'sentry-trace')
  t.equal(sentryTraces.length, 1, 'exactly one sentry-trace header reached the API')
  t.match(sentryTraces[0], new RegExp(`^${traceId}-[0-9a-f]{16}-1$`), 'carrying the browser\'s trace id')
  t.not(sentryTraces[0], sentByBrowser, 'its parent is the gateway\'s span, not the browser\'s')
  t.equal(raw.filter((_, i) => i % 2 === 0 && raw[i]!.toLowerCase() === 'baggage').length, 1, 'and one baggage')

  // Nothing from anywhere but the gateway; nothing refused reached Sentry.
  const elsewhere = requested.map((r) => r.url()).filter((url) => /^(https?|wss?):/.test(url) && !url.startsWith(`${gw.url}/`))
  t.same(elsewhere, [], 'the page loaded nothing from anywhere but the gateway')
  await new Promise((resolve) => setTimeout(resolve, 300))
  const everything = receiver.envelopes.map((e) => e.raw).join('\n')
  t.notOk(everything.includes('refused-unknown-dsn'), 'the envelope with the unknown DSN went nowhere')
  t.notOk(everything.includes('refused-oversized-'), 'nor did the oversized one')
  t.ok(receiver.envelopes.every((e) => /^\/api\/[12]\/envelope\//.test(e.path)), 'the receiver only got projects 1 and 2')
})
