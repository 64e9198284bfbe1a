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

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, connections: { type: 'string', default: '50' } } })
const duration = args.quick ? 3 : 10
const rounds = args.quick ? 2 : 3
const connections = Number(args.connections)

interface Sample { rps: number; p50: number; p99: number; errors: number; non2xx: number }
interface Target { name: string; url: string; baseline?: string; proc?: () => number | undefined }

async function load(url: string, seconds: number): Promise<Sample> {
  const result = await autocannon({ url, connections, duration: seconds, pipelining: 1 })
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.timeouts, non2xx: result.non2xx }
}

function startInstantUpstream(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [join(ROOT, 'test/bench/instant-upstream.ts')], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve) => proc.stdout!.once('data', (chunk: Buffer) => resolve({ url: `http://127.0.0.1:${JSON.parse(chunk.toString()).port}`, proc })))
}

function peakRss(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024
  } catch {
    return 0
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const spread = (xs: number[]) => (Math.max(...xs) - Math.min(...xs)) / median(xs)

const upstream = await startInstantUpstream()
let redis: RunningRedis | undefined
const gateways: RunningGateway[] = []
try {
  redis = await startRedis()
  const base = `listen: { port: 0 }\nadmin: { port: 0 }\nlog: { requests: false }\nupstream: { url: ${upstream.url}, connections: 64 }\n`
  const limited = 'rateLimits:\n  default: { key: ip, limit: 100000000/min }\n'
  const quiet = {}
  const passThrough = await startGateway(base, quiet)
  const withLimiter = await startGateway(base + limited, quiet)
  const withRedisLimiter = await startGateway(`${base}redis: { url: "${redis.url}" }\n${limited}`, quiet)
  gateways.push(passThrough, withLimiter, withRedisLimiter)
  const targets: Target[] = [
    { name: 'upstream direct', url: `${upstream.url}/api/leads/1` },
    { name: 'gateway pass-through', url: `${passThrough.url}/api/leads/1`, baseline: 'upstream direct', proc: () => passThrough.proc.pid },
    { name: 'gateway + limiter (in-process)', url: `${withLimiter.url}/api/leads/1`, baseline: 'gateway pass-through', proc: () => withLimiter.proc.pid },
    { name: 'gateway + limiter (Redis)', url: `${withRedisLimiter.url}/api/leads/1`, baseline: 'gateway pass-through', proc: () => withRedisLimiter.proc.pid },
  ]
  for (const target of targets) await load(target.url, 1) // warm-up: JIT, pools, Redis connection
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
      errors: runs.reduce((n, r) => n + r.errors + r.non2xx, 0),
      peakRssMiB: target.proc ? Math.round(peakRss(target.proc())) : null,
      vsBaseline: baselineRps ? `${(rps / baselineRps).toFixed(2)}× ${target.baseline}` : '',
    }
  })
  const header = `| scenario | req/s | spread | p50 ms | p99 ms | errors | peak RSS MiB | ratio |\n|---|---|---|---|---|---|---|---|`
  const table = [header, ...rows.map((r) => `| ${r.scenario} | ${r.rps} | ${r.spread} | ${r.p50ms} | ${r.p99ms} | ${r.errors} | ${r.peakRssMiB ?? ''} | ${r.vsBaseline} |`)].join('\n')
  const out = join(ROOT, 'bench-results')
  mkdirSync(out, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const meta = { date: new Date().toISOString(), node: process.version, connections, duration, rounds }
  writeFileSync(join(out, `bench-${stamp}.json`), JSON.stringify({ ...meta, rows }, null, 2))
  writeFileSync(join(out, `bench-${stamp}.md`), `${JSON.stringify(meta)}\n\n${table}\n`)
  console.log(`\n${connections} connections, ${duration}s × ${rounds} interleaved rounds, medians\n\n${table}\n\nwritten to bench-results/bench-${stamp}.{md,json}`)
} finally {
  for (const gateway of gateways) await gateway.stop()
  upstream.proc.kill('SIGTERM')
  await redis?.stop()
}
