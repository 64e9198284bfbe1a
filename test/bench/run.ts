// `npm run bench [-- --quick]`: throughput and latency of the gateway against baselines measured in the
// same run, on 127.0.0.1 only. Every process is started here and stopped at the end. Figures are
// reported as ratios to a baseline, never asserted: speed on a shared 2-core machine is not a test.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { startGateway, ROOT, type RunningGateway } from '../helpers/gateway.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'
import { startDemoUpstream, signDemoToken } from '../../deploy/demo-upstream/app.ts'

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, connections: { type: 'string', default: '50' } } })
const duration = args.quick ? 3 : 10
const rounds = args.quick ? 2 : 3
const connections = Number(args.connections)

interface Sample { rps: number; p50: number; p99: number; errors: number }
interface Target { name: string; url: string; baseline?: string; pid?: () => number | undefined }

async function load(url: string, seconds: number): Promise<Sample> {
  const result = await autocannon({ url, connections, duration: seconds, pipelining: 1 })
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.timeouts + result.non2xx }
}

/** A bench server in its own process (it prints {"port": N} when listening). */
function startHelperProcess(script: string, env: NodeJS.ProcessEnv = {}): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [join(ROOT, script)], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } })
  processes.push(proc)
  return new Promise((resolve) => proc.stdout!.once('data', (chunk: Buffer) => resolve({ url: `http://127.0.0.1:${JSON.parse(chunk.toString()).port}`, proc })))
}

function peakRssMiB(pid: number | undefined): number | null {
  try {
    return Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024)
  } catch {
    return null
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const spread = (xs: number[]) => (Math.max(...xs) - Math.min(...xs)) / Math.max(1, median(xs))

/**
 * The SalesFlow read/write mix against the demo API: 4 users, 95% reads of their dashboard, 5% lead
 * updates (each invalidates that user's entries). Returns the dashboard hit rate seen in X-Cache.
 */
async function dashboardHitRate(gateway: RunningGateway, requests: number): Promise<{ reads: number; hits: number; writes: number }> {
  const users = ['alice', 'bob', 'carol', 'dave']
  const tokens = await Promise.all(users.map((user) => signDemoToken(user)))
  let reads = 0
  let hits = 0
  let writes = 0
  let next = 0
  const worker = async () => {
    while (next < requests) {
      const i = next++
      if (i % 20 === 19) {
        // Every 20th request: alice or bob updates one of their own leads (1 and 2001), invalidating their entries.
        const writer = Math.floor(i / 20) % 2
        const headers = { authorization: `Bearer ${tokens[writer]}`, 'content-type': 'application/json' }
        const res = await fetch(`${gateway.url}/api/leads/${writer ? 2001 : 1}`, { method: 'PATCH', headers, body: '{"p_score": 50}' })
        if (res.status !== 200) throw new Error(`write answered ${res.status}`)
        await res.arrayBuffer()
        writes++
      } else {
        const res = await fetch(`${gateway.url}/api/dashboard`, { headers: { authorization: `Bearer ${tokens[i % tokens.length]}` } })
        await res.arrayBuffer()
        reads++
        if (res.headers.get('x-cache') === 'HIT') hits++
      }
    }
  }
  await Promise.all(Array.from({ length: 20 }, worker))
  return { reads, hits, writes }
}

const processes: ChildProcess[] = []
const gateways: RunningGateway[] = []
let redis: RunningRedis | undefined
try {
  const sink = await startHelperProcess('test/bench/sink.ts')
  const sentryDsn = `http://publickey@127.0.0.1:${new URL(sink.url).port}/1`
  const instant = await startHelperProcess('test/bench/instant-upstream.ts')
  const slow = await startHelperProcess('test/bench/instant-upstream.ts', { DELAY_MS: '20' })
  redis = await startRedis()
  const base = (upstream: string, extra = '') =>
    `listen: { port: 0 }\nadmin: { port: 0 }\nlog: { requests: false }\nupstream: { url: ${upstream}, connections: 64 }\n${extra}`
  const limited = 'rateLimits:\n  default: { key: ip, limit: 100000000/min }\n'
  const cached = 'routes:\n  - { name: lead, match: GET /api/leads/:id, cache: { ttl: 10m } }\n  - { name: nostore, match: GET /nostore/:id, cache: { ttl: 10m } }\n'
  const start = async (yaml: string) => {
    const gateway = await startGateway(yaml)
    gateways.push(gateway)
    return gateway
  }
  const passThrough = await start(base(instant.url))
  const withLimiter = await start(base(instant.url, limited))
  const withRedisLimiter = await start(base(instant.url, `redis: { url: "${redis.url}" }\n${limited}`))
  const withCache = await start(base(instant.url, cached))
  const l2Only = await start(base(instant.url, `redis: { url: "${redis.url}", keyPrefix: "bench-l2:" }\ncache: { memory: 1 }\n${cached}`))
  const slowCached = await start(base(slow.url, cached))
  const sentryErrorsOnly = await start(base(instant.url, `sentry: { dsn: "${sentryDsn}", tracesSampleRate: 0 }\n`))
  const sentryTracing = await start(base(instant.url, `sentry: { dsn: "${sentryDsn}", tracesSampleRate: 0.1 }\n`))
  const pid = (g: RunningGateway) => () => g.proc.pid
  const targets: Target[] = [
    { name: 'upstream direct (node:http, preallocated buffer: the ceiling)', url: `${instant.url}/api/leads/1` },
    { name: 'gateway pass-through', url: `${passThrough.url}/api/leads/1`, baseline: 'upstream direct (node:http, preallocated buffer: the ceiling)', pid: pid(passThrough) },
    { name: 'gateway + limiter (in-process)', url: `${withLimiter.url}/api/leads/1`, baseline: 'gateway pass-through', pid: pid(withLimiter) },
    { name: 'gateway + limiter (Redis)', url: `${withRedisLimiter.url}/api/leads/1`, baseline: 'gateway pass-through', pid: pid(withRedisLimiter) },
    { name: 'gateway L1 cache hit', url: `${withCache.url}/api/leads/1`, baseline: 'upstream direct (node:http, preallocated buffer: the ceiling)', pid: pid(withCache) },
    { name: 'gateway L2 (Redis) cache hit', url: `${l2Only.url}/api/leads/1`, baseline: 'upstream direct (node:http, preallocated buffer: the ceiling)', pid: pid(l2Only) },
    { name: 'gateway cache miss (no-store)', url: `${withCache.url}/nostore/1`, baseline: 'gateway pass-through', pid: pid(withCache) },
    { name: 'gateway + Sentry errors only', url: `${sentryErrorsOnly.url}/api/leads/1`, baseline: 'gateway pass-through', pid: pid(sentryErrorsOnly) },
    { name: 'gateway + Sentry tracing at 0.1', url: `${sentryTracing.url}/api/leads/1`, baseline: 'gateway pass-through', pid: pid(sentryTracing) },
    { name: 'upstream direct, 20 ms latency', url: `${slow.url}/api/leads/1` },
    { name: 'gateway L1 hit, 20 ms upstream', url: `${slowCached.url}/api/leads/1`, baseline: 'upstream direct, 20 ms latency', pid: pid(slowCached) },
  ]
  for (const target of targets) await load(target.url, 1) // warm-up: JIT, pools, Redis, the cache entry
  const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]))
  for (let round = 0; round < rounds; round++) {
    for (const target of targets) samples.get(target.name)!.push(await load(target.url, duration))
  }
  const rows = targets.map((target) => {
    const runs = samples.get(target.name)!
    const rps = median(runs.map((r) => r.rps))
    const baselineRps = target.baseline ? median(samples.get(target.baseline)!.map((r) => r.rps)) : undefined
    return {
      scenario: target.name,
      rps: Math.round(rps),
      spread: `±${Math.round(spread(runs.map((r) => r.rps)) * 50)}%`,
      p50ms: median(runs.map((r) => r.p50)),
      p99ms: median(runs.map((r) => r.p99)),
      errors: runs.reduce((n, r) => n + r.errors, 0),
      peakRssMiB: target.pid ? peakRssMiB(target.pid()) : null,
      ratio: baselineRps ? `${(rps / baselineRps).toFixed(2)}× ${target.baseline!.replace(/ \(.*\)$/, '')}` : '',
    }
  })

  const demo = await startDemoUpstream({ latencyMs: 5 })
  const mixGateway = await start(`listen: { port: 0 }\nadmin: { port: 0 }\nlog: { requests: false }\nupstream: { url: ${demo.url} }\n`
    // The SalesFlow routes and cache rules; without their rate limits, which this many writes would trip.
    + `identity: { jwt: { secret: demo-secret } }\nroutes:${readFileSync(join(ROOT, 'config/gateway.yaml'), 'utf8').split('\nroutes:')[1]!.replace(/^\s*rateLimit:.*$/gm, '')}`)
  const mix = await dashboardHitRate(mixGateway, args.quick ? 2000 : 10_000)
  await demo.close()

  const header = '| scenario | req/s | spread | p50 ms | p99 ms | errors | gateway peak RSS MiB | ratio (same run) |\n|---|---|---|---|---|---|---|---|'
  const table = [header, ...rows.map((r) => `| ${r.scenario} | ${r.rps} | ${r.spread} | ${r.p50ms} | ${r.p99ms} | ${r.errors} | ${r.peakRssMiB ?? ''} | ${r.ratio} |`)].join('\n')
  const hitRate = `SalesFlow mix (95% dashboard reads, 5% lead writes, 4 users, 20 clients): dashboard hit rate ${(100 * mix.hits / mix.reads).toFixed(1)}% (${mix.hits}/${mix.reads} reads, ${mix.writes} writes)`
  const out = join(ROOT, 'bench-results')
  mkdirSync(out, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const meta = { date: new Date().toISOString(), node: process.version, connections, durationS: duration, rounds }
  writeFileSync(join(out, `bench-${stamp}.json`), JSON.stringify({ ...meta, rows, mix }, null, 2))
  writeFileSync(join(out, `bench-${stamp}.md`), `${JSON.stringify(meta)}\n\n${table}\n\n${hitRate}\n`)
  console.log(`\n${connections} connections, ${duration}s × ${rounds} interleaved rounds, medians\n\n${table}\n\n${hitRate}\n\nwritten to bench-results/bench-${stamp}.{md,json}`)
} finally {
  for (const gateway of gateways) await gateway.stop()
  for (const proc of processes) proc.kill('SIGTERM')
  await redis?.stop()
}
