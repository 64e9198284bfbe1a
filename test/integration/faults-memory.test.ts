// Memory under a flood of distinct URLs through a cached route: the in-process cache (L1) stays within
// cache.memory, and the gateway's RSS within what it used at start plus cache.memory plus a fixed
// allowance, and stops growing once the cache is full. The gateway runs with its V8 old generation capped
// (--max-old-space-size, as a container deployment should): without a cap V8 sizes its heap from the
// machine's memory and the allocation rate, not from what is live, and RSS says more about that than
// about the gateway (measured uncapped: ~195 MiB after warm-up, ~385-410 MiB from ~35 000 URLs on). The default run sends up to 100 000 distinct URLs
// (at most 60 s of them, so a busy machine makes it shorter, not flaky); GATEWAY_SOAK=1 sends a million
// with no time limit; GATEWAY_SOAK_URLS=<n> sets the number.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { startGateway } from '../helpers/gateway.ts'
import { startUpstream } from '../helpers/upstreams.ts'
import { describeCounts, runLoad, startLoad } from '../helpers/load.ts'

const SOAK = process.env.GATEWAY_SOAK === '1'
const URLS = Number(process.env.GATEWAY_SOAK_URLS ?? (SOAK ? 1_000_000 : 100_000))
const FLOOD_MS = SOAK ? undefined : 60_000
const CACHE_MIB = 8
const CACHE_BYTES = CACHE_MIB * 1024 * 1024
const MiB = 1024 * 1024
/** The gateway's V8 old-generation cap: several times what it keeps live (~40 MiB with the cache full). */
const HEAP_CAP_MIB = 128
if (SOAK) t.setTimeout(60 * 60 * 1000)

const rssBytes = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024
const metric = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)

t.test(`up to ${URLS} distinct URLs through a cached route: L1 within cache.memory (${CACHE_MIB} MiB), RSS within start + cache.memory + a fixed allowance`, async (t) => {
  const body = Buffer.alloc(200, 'b')
  const upstream = await startUpstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=600', 'content-length': body.length })
    res.end(body)
  })
  t.teardown(() => upstream.close())
  // No access log: a million lines would cost both processes more than the requests themselves.
  const gw = await startGateway(`listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url} }
log: { requests: false }
cache: { memory: ${CACHE_MIB}MiB }
routes:
  - { name: flood, match: GET /m/*, cache: { ttl: 10m } }
  - { name: warm, match: GET /warm/* }
`, { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=${HEAP_CAP_MIB}`.trim() } })
  t.teardown(() => gw.stop())
  const pid = gw.proc.pid!

  // The fixed overhead, measured at start: the process after warming up (parser, pool, JIT, a heap sized
  // for traffic) on the same kind of request, uncached, so L1 is still empty.
  const warm = await runLoad({ url: gw.url, concurrency: 32, requests: 5000, next: (seq) => ({ path: `/warm/${seq}` }) })
  t.same(warm.counts, { 200: 5000 }, 'warm-up served')
  const startRss = rssBytes(pid)

  const samples: Array<{ at: number; rss: number; l1: number }> = []
  const sample = async (at: number) => {
    const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
    samples.push({ at, rss: rssBytes(pid), l1: metric(text, 'gateway_cache_l1_bytes') })
  }
  const flood = startLoad({ url: gw.url, concurrency: 32, requests: URLS, durationMs: FLOOD_MS, next: (seq) => ({ path: `/m/${seq}` }) })
  t.teardown(() => void flood.stop())
  let flooding = true
  const sampler = (async () => {
    while (flooding) {
      await sample(flood.report.sent)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  })()
  const report = await flood.done
  flooding = false
  await sampler
  await sample(report.sent)

  t.equal(report.failed, 0, `no client-side errors (${describeCounts(report)})`)
  t.same(report.counts, { 200: report.sent }, `all ${report.sent} answered 200 (in ${(report.elapsedMs / 1000).toFixed(1)} s)`)
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  const entries = metric(text, 'gateway_cache_l1_entries')
  const evictions = metric(text, 'gateway_cache_evictions_total')
  t.ok(report.sent >= 2 * entries, `${report.sent} distinct URLs, at least twice the ${entries} entries L1 holds when full: it turned over`)
  t.ok(evictions >= report.sent - entries, `every URL beyond what fits evicted an entry (${evictions} evictions)`)

  const l1Max = Math.max(...samples.map((s) => s.l1))
  t.ok(l1Max <= CACHE_BYTES, `the L1 bytes gauge peaked at ${(l1Max / MiB).toFixed(2)} MiB ≤ cache.memory ${CACHE_MIB} MiB (${samples.length} samples)`)
  t.ok(l1Max > CACHE_BYTES / 2, 'and the cache was really used')

  // The allowance over start + cache.memory: V8 lets the old generation fill up to its cap before a major
  // GC has to free it (evicted entries die there), and keeps the pages; the young generation grows to its
  // maximum under this allocation rate (3 × 16 MiB semi-spaces at most); glibc keeps freed socket buffers.
  // So: the cap plus 32 MiB. Measured with this cap: ~175-200 MiB after the warm-up, a flat ~280 MiB from
  // ~20 000 URLs on. A cache keeping every URL (~1.6 KB each, 160 MiB for 100 000) would not fit the cap
  // at all: the gateway would die of it, which the no-errors check above would see.
  const ALLOWANCE = (HEAP_CAP_MIB + 32) * MiB
  const rssMax = Math.max(...samples.map((s) => s.rss))
  t.ok(rssMax <= startRss + CACHE_BYTES + ALLOWANCE,
    `RSS peaked at ${(rssMax / MiB).toFixed(1)} MiB ≤ start ${(startRss / MiB).toFixed(1)} + cache.memory ${CACHE_MIB} + allowance ${ALLOWANCE / MiB} MiB`)
  t.equal(gw.proc.exitCode, null, 'the gateway is still running')
  // And no creeping: once the cache has turned over (2× the URLs L1 holds), RSS grows by less than 16 MiB
  // to the end (measured: +2 MiB from 20 000 to 60 000 URLs). Keeping anything the size of an entry
  // (~1.6 KB) per URL over the ≥ 17 000 URLs after that point would add ≥ 27 MiB. Only meaningful when the
  // run got that far.
  const settledAt = 2 * entries
  const settled = samples.find((s) => s.at >= settledAt)
  const reachedFar = report.sent >= 3.5 * entries && settled !== undefined
  const afterPeak = Math.max(...samples.filter((s) => s.at >= settledAt).map((s) => s.rss))
  t.ok(reachedFar && afterPeak - settled.rss < 16 * MiB,
    reachedFar ? `RSS ${(settled.rss / MiB).toFixed(1)} MiB at ${settled.at} URLs, at most ${(afterPeak / MiB).toFixed(1)} MiB after` : 'no creeping growth',
    { skip: reachedFar ? false : `only ${report.sent} URLs in ${FLOOD_MS! / 1000} s on this machine; the check needs ${Math.ceil(3.5 * entries)}` })
  t.comment(`RSS start ${(startRss / MiB).toFixed(1)} MiB, peak ${(rssMax / MiB).toFixed(1)} MiB, end ${(samples.at(-1)!.rss / MiB).toFixed(1)} MiB`)
})
