// `npm run bench [-- --quick | --smoke] [--only group,…] [--wrk | --autocannon] [--cpus N]`: throughput
// and latency of the gateway against nginx, Varnish, node http-proxy, a 20-line undici proxy and the bare
// node:http ceiling, all measured in the same run on 127.0.0.1. Every process is started here and
// stopped at the end (also on error and Ctrl-C). Figures are reported, with ratios to baselines from the
// same run, never asserted: the exit code is non-zero only when a target failed to start or a scenario
// got no successful answer. Results: bench-results/bench-<date>.{md,json}.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir, cpus as osCpus } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { chooseGenerator, runAb, type LoadSpec } from './load.ts'
import { cacheCounts, hitRates, salesFlowMix, type CacheCounts, type HitRate } from './mix.ts'
import { ROOT, choosePinning, cpuTime, sampleRss, stealPercent, stopAll, stopOnSignals, treeCpuUs, which } from './procs.ts'
import { addRatios, checkGoals, markdown, sideKey, toRow, type AbOutcome, type Report, type Row, type Run, type SideBySide } from './report.ts'
import { GOALS, GROUPS, aliceToken, roundOrder, scenarios, select, targetCatalogue, type Scenario, type SideRound } from './scenarios.ts'
import { Lab } from './targets.ts'
import { passThroughYaml } from './configs.ts'

const USAGE = `usage: npm run bench -- [options]
  --quick             2 s × 2 rounds per scenario, 5 s at 1000 connections, without the groups
                      miss, sentry and slow (under 2 minutes); the default is 8 s × 4 rounds, 30 s
  --smoke             every scenario for 1 s, 1 round: proves the harness works (CI); exits non-zero
                      when a target fails to start or a scenario gets no successful answer
  --only LIST         groups or scenario ids, comma-separated: ${GROUPS.map((g) => g.id).join(', ')}
                      (e.g. --only hit,pass.nginx); their ratios' baselines are added
  --wrk | --autocannon   the load generator (default: wrk when installed, else autocannon)
  --cpus N            also compare the gateway with workers: 1 and workers: N (L1 hit, pass-through)
  --connections N     the ordinary connection count (default 50; the sustained test uses 1000)
  --duration S        seconds per measured run;  --rounds N  interleaved rounds (every other one
                      in reverse order)
  --side-by-side N    rounds in which each ratio goal's two scenarios are loaded at the same moment
                      (default 5, quick 4, smoke 1; 0: none, the goals judged one after the other)
  --no-pin            do not pin with taskset;  --keep  keep the temp dir (configs, logs)`

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    wrk: { type: 'boolean', default: false },
    autocannon: { type: 'boolean', default: false },
    cpus: { type: 'string' },
    connections: { type: 'string', default: '50' },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    'side-by-side': { type: 'string' },
    pin: { type: 'boolean', default: true },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (args.help) {
  console.log(USAGE)
  process.exit(0)
}

const mode = args.smoke ? 'smoke' : args.quick ? 'quick' : 'full'
const plan = {
  full: { warmupS: 2, seconds: 8, rounds: 4, sideRounds: 5, manySeconds: 30, abRequests: 1000 },
  quick: { warmupS: 1, seconds: 2, rounds: 2, sideRounds: 4, manySeconds: 5, abRequests: 1000 },
  smoke: { warmupS: 0, seconds: 1, rounds: 1, sideRounds: 1, manySeconds: 2, abRequests: 200 },
}[mode]
if (args.duration) plan.seconds = Number(args.duration)
if (args.rounds) plan.rounds = Number(args.rounds)
if (args['side-by-side']) plan.sideRounds = Number(args['side-by-side'])
const connections = Number(args.connections)
const MANY = 1000
/** --quick leaves out the groups the issue does not list (cache miss, Sentry alone, the 20 ms upstream); --only brings them back. */
const QUICK_SKIPS = ['miss', 'sentry', 'slow']
const only = args.only ? args.only.split(',').map((s) => s.trim()).filter(Boolean)
  : mode === 'quick' ? GROUPS.map((g) => g.id).filter((id) => !QUICK_SKIPS.includes(id)) : null
const t0 = Date.now()
const log = (text: string) => console.error(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(3)}s] ${text}`)

// Node children (gateways above all: a dozen start at once) reuse compiled code across starts and runs.
process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), 'gateway-bench-compile-cache')
const dir = mkdtempSync(join(tmpdir(), 'gateway-bench-'))
chmodSync(dir, 0o755) // nginx's workers (nobody) and Varnish (varnish, vcache) work in here
stopOnSignals()
/** A usage error: nothing was started yet. */
function bail(message: string): never {
  rmSync(dir, { recursive: true, force: true })
  console.error(message)
  process.exit(2)
}
const pinning = choosePinning(args.pin)
let chosenGenerator
try {
  chosenGenerator = chooseGenerator(args.wrk ? 'wrk' : args.autocannon ? 'autocannon' : 'auto', { cpus: pinning.load, dir })
} catch (err) {
  bail((err as Error).message)
}
const { generator, note: generatorNote } = chosenGenerator

/** Whether the gateway's config accepts `workers: N` (with Redis, which more than one worker needs). */
function workersAccepted(n: number): boolean {
  const file = join(dir, 'workers-check.yaml')
  writeFileSync(file, passThroughYaml({ upstream: 'http://127.0.0.1:9', workers: n, redis: 'redis://127.0.0.1:9' }))
  const check = spawnSync(process.execPath, [join(ROOT, 'gateway/main.ts'), '--check', '--config', file], { cwd: ROOT, env: { ...process.env, PORT: '0', ADMIN_PORT: '0' }, encoding: 'utf8' })
  return check.status === 0
}

const notes: string[] = [
  `mode: ${mode}; ${generatorNote}; p50/p99 resolution ${generator.resolution}`,
  pinning.note,
  `node ${process.version}, ${osCpus().length} CPUs (${osCpus()[0]?.model ?? '?'})`,
  `steal %: the share of the targets' CPU${pinning.targets ? ` (${pinning.targets})` : 's'} the host gave to other guests during a run (/proc/stat, median over rounds); where two scenarios met different steal, their req/s one after the other compare the host's minutes more than the targets`,
]
if (mode === 'quick' && !args.only) notes.push(`quick: groups ${QUICK_SKIPS.join(', ')} left out (--only ${QUICK_SKIPS.join(',')} runs them)`)
if (mode === 'smoke') notes.push('smoke run: 1 s per scenario without warm-up; the figures only show that each one answered')
let workers = 0
if (args.cpus) {
  const n = Number(args.cpus)
  if (!Number.isInteger(n) || n < 1) bail(`--cpus ${args.cpus}: expected a whole number of workers\n${USAGE}`)
  if (n > 1 && workersAccepted(n)) {
    workers = n
    notes.push(`--cpus ${n}: gateways with workers: 1 and workers: ${n} (both with redis.url, which more than one worker needs), on CPUs ${pinning.wide(n) ?? 'all (not pinned)'}${pinning.load && pinning.wide(n)?.startsWith('0') ? ' (shared with the load generator: there are not enough CPUs for both)' : ''}`)
  } else {
    notes.push(n > 1 ? `--cpus ${n}: skipped: the gateway's config does not accept \`workers: ${n}\` (gateway --check refused it)` : `--cpus ${n}: nothing to compare`)
  }
}

const all = scenarios({ workers })
const chosen = select(all, only)
const wantAb = !only || only.includes('ab')
if (only && !chosen.length && !wantAb) bail(`--only ${args.only}: nothing to run${only.includes('workers') ? ` (workers needs --cpus N and a gateway that accepts workers: ${notes.at(-1)})` : ''}\n${USAGE}`)
const lab = new Lab({ dir, pinning }, targetCatalogue({ workers }))

let exitCode = 0
try {
  const keys = new Set(chosen.map((s) => s.target))
  if (wantAb) keys.add('gw.salesflow').add('demo')
  log(`starting ${keys.size} targets (and what they need) in ${dir}`)
  await Promise.allSettled([...keys].map((key) => lab.get(key)))
  log('targets ready')
  for (const [key, status] of lab.status) {
    if (status.state !== 'started') log(`${key}: ${status.state}: ${status.reason}`)
  }

  const token = await aliceToken()
  const mix = chosen.some((s) => s.mix) ? await salesFlowMix() : undefined
  const runnable = chosen.filter((s) => lab.status.get(s.target)?.state === 'started')
  const specFor = async (s: Scenario, conns: number, seconds: number): Promise<LoadSpec> => ({
    url: `${await scenarioUrl(s)}${s.path}`, connections: conns, seconds,
    headers: s.auth && !s.mix ? { authorization: `Bearer ${token}` } : undefined,
    mix: s.mix ? mix : undefined,
  })

  // Checks (the first request fills the caches), then a warm-up of each target: JIT, pools, Redis.
  const checkNotes = new Map<string, string[]>()
  const warmed = new Set<string>()
  for (const s of runnable) {
    const problem = await verify(s, token)
    if (problem) {
      checkNotes.set(s.id, [problem])
      log(`${s.id}: ${problem}`)
    }
    if (plan.warmupS > 0 && !warmed.has(s.target)) {
      warmed.add(s.target)
      await generator.run(await specFor(s, connections, plan.warmupS)).catch(() => undefined)
    }
  }

  const runs = new Map<string, Run[]>(runnable.map((s) => [s.id, []]))
  let mixBefore: CacheCounts | undefined
  let mixAfter: CacheCounts | undefined
  const ordinary = runnable.filter((s) => s.connections === 'normal')
  const many = runnable.filter((s) => s.connections === 'many')
  const measureOne = async (s: Scenario, conns: number, seconds: number) => {
    const admin = s.mix ? (await lab.get(s.target)).adminUrl : undefined
    if (admin && !mixBefore) mixBefore = await cacheCounts(admin).catch(() => undefined)
    runs.get(s.id)!.push(await measure(s, await specFor(s, conns, seconds)))
    if (admin) mixAfter = await cacheCounts(admin).catch(() => mixAfter)
  }
  for (let round = 1; round <= plan.rounds; round++) {
    for (const s of roundOrder(ordinary, round)) {
      log(`round ${round}/${plan.rounds}: ${s.id}`)
      await measureOne(s, connections, plan.seconds)
    }
  }
  // Each ratio goal's two scenarios once more, loaded at the same moment (a load generator each): on a shared
  // VM a ratio measured one after the other moved by ±30% from one round to the next, side by side by ±5%.
  const sideBySide: SideBySide = new Map()
  for (const goal of GOALS) {
    const [a, b] = goal.uses.map((id) => ordinary.find((s) => s.id === id))
    if (!goal.sideBySide || !a || !b || a.target === b.target || sideBySide.has(sideKey(a.id, b.id))) continue
    const rounds: SideRound[] = []
    const [specA, specB] = [await specFor(a, connections, plan.seconds), await specFor(b, connections, plan.seconds)]
    for (let round = 1; round <= plan.sideRounds; round++) {
      log(`side by side ${round}/${plan.sideRounds}: ${a.id} + ${b.id}`)
      // Both specs made first, so that the two loads start together.
      const [runA, runB] = await Promise.all([measure(a, specA), measure(b, specB)])
      rounds.push({ a: { rps: runA.rps, cpuUs: runA.cpuUs }, b: { rps: runB.rps, cpuUs: runB.cpuUs } })
    }
    sideBySide.set(sideKey(a.id, b.id), rounds)
  }
  for (const s of many) {
    log(`${MANY} connections, ${plan.manySeconds} s: ${s.id}`)
    await measureOne(s, MANY, plan.manySeconds)
  }

  const ab: AbOutcome[] = []
  if (wantAb) {
    const bin = which('ab')
    const targets = [{ id: 'ab.direct', label: 'demo upstream directly', key: 'demo' }, { id: 'ab.gateway', label: 'gateway, full SalesFlow config', key: 'gw.salesflow' }]
    for (const t of targets) {
      const status = lab.status.get(t.key)
      if (!bin) ab.push({ id: t.id, label: t.label, failure: 'ab not installed (apt-get install apache2-utils)' })
      else if (status?.state !== 'started') ab.push({ id: t.id, label: t.label, failure: `${t.key} ${status?.state ?? 'not started'}` })
      else {
        log(`ab -n ${plan.abRequests} -c 50: ${t.label}`)
        const target = `${(await lab.get(t.key)).url}/api/leads`
        // One request first, so the measured 1000 are the steady state (cache filled), as after a warm-up.
        await fetch(target, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.arrayBuffer()).catch(() => undefined)
        await runAb(bin, target, { requests: plan.abRequests, concurrency: 50, headers: { authorization: `Bearer ${token}` }, cpus: pinning.load })
          .then((result) => ab.push({ id: t.id, label: t.label, result }), (err: Error) => ab.push({ id: t.id, label: t.label, failure: err.message.split('\n')[0] }))
      }
    }
  }

  const rows: Row[] = runnable.map((s) => toRow(s, runs.get(s.id)!, {
    connections: s.connections === 'many' ? MANY : connections,
    seconds: s.connections === 'many' ? plan.manySeconds : plan.seconds,
    notes: checkNotes.get(s.id) ?? [],
  }))
  addRatios(rows, all)
  const mixRates: HitRate[] | null = mixBefore && mixAfter ? hitRates(mixBefore, mixAfter) : null

  // Failures (never performance): a target that did not start, a scenario without one successful answer.
  const failures: string[] = []
  for (const [key, status] of lab.status) if (status.state === 'failed') failures.push(`${key} failed to start: ${status.reason.split('\n')[0]}`)
  for (const row of rows) if (row.requests - row.non2xx <= 0) failures.push(`${row.id}: no successful responses${row.notes.length ? ` (${row.notes.join('; ')})` : ''}`)
  for (const a of ab) if (a.result && a.result.requests - a.result.non2xx - a.result.failed <= 0) failures.push(`${a.id}: no successful responses`)
  if (failures.length) exitCode = 1

  const skippedNotes = chosen.filter((s) => !runnable.includes(s)).map((s) => `${s.id} not run: ${s.target} ${lab.status.get(s.target)?.state ?? 'not started'}`)
  const report: Report = {
    meta: {
      date: new Date().toISOString(), mode, node: process.version, generator: generator.name, connections, many: MANY,
      seconds: plan.seconds, rounds: plan.rounds, warmupS: plan.warmupS, manySeconds: plan.manySeconds, pinning: pinning.note, workers,
      only, tookS: 0,
    },
    notes: [...notes, ...skippedNotes, ...failures.map((f) => `FAILED: ${f}`)],
    targets: [...lab.status].map(([key, status]) => ({
      key, label: lab.defs[key]?.label ?? key, state: status.state,
      detail: status.state === 'started' ? status.note : status.reason,
    })),
    rows,
    goals: checkGoals(rows, ab, sideBySide),
    sideBySide: [...sideBySide].map(([pair, rounds]) => ({ pair, rounds })),
    ab,
    mix: mixRates,
  }
  report.meta.tookS = Math.round((Date.now() - t0) / 1000)
  report.notes.push(`took ${report.meta.tookS} s`)
  const text = markdown(report)
  const out = join(ROOT, 'bench-results')
  mkdirSync(out, { recursive: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  writeFileSync(join(out, `bench-${stamp}.md`), text)
  writeFileSync(join(out, `bench-${stamp}.json`), `${JSON.stringify(report, null, 2)}\n`)
  console.log(`\n${text}\nwritten to bench-results/bench-${stamp}.{md,json}`)
  for (const failure of failures) console.error(`FAILED: ${failure}`)
} catch (err) {
  exitCode = 1
  console.error(err)
} finally {
  await stopAll()
  if (exitCode === 0 && !args.keep) rmSync(dir, { recursive: true, force: true })
  else console.error(`configs and logs kept in ${dir}`)
}
process.exit(exitCode)

/** The URL a scenario loads: a proxy's own, or (for an upstream measured directly) a listener of its own. */
async function scenarioUrl(s: Scenario): Promise<string> {
  if (s.upstream && s.upstream === s.target) return (await (await lab.upstream(s.target)).listener('direct')).url
  return (await lab.get(s.target)).url
}

/** Two requests (the first may fill a cache); the second must be a 2xx and pass the scenario's check. */
async function verify(s: Scenario, token: string): Promise<string | null> {
  const url = `${await scenarioUrl(s)}${s.path}`
  const headers = s.auth ? { authorization: `Bearer ${token}` } : undefined
  try {
    let res: Response | undefined
    for (let i = 0; i < 2; i++) {
      res = await fetch(url, { headers })
      await res.arrayBuffer()
    }
    if (!res!.ok) return `GET ${s.path} answered ${res!.status}`
    return s.check?.(res!) ?? null
  } catch (err) {
    return `GET ${s.path} failed: ${(err as Error).message}`
  }
}

/** One load run, with the target's RSS sampled and the upstream's connections counted around it. */
async function measure(s: Scenario, spec: LoadSpec): Promise<Run> {
  const target = await lab.get(s.target)
  const upstream = s.upstream ? await (await lab.upstream(s.upstream)).listener(s.upstream === s.target ? 'direct' : s.target) : undefined
  await upstream?.stats(true)
  const stopRss = sampleRss(target.pid)
  const pid = target.pid ?? -1
  const cpuBefore = pid > 0 ? treeCpuUs(pid) : null
  const timeBefore = cpuTime(pinning.targets)
  try {
    const sample = await generator.run(spec)
    const rssMiB = stopRss()
    const cpuAfter = cpuBefore === null ? null : treeCpuUs(pid)
    const cpuUs = cpuBefore !== null && cpuAfter !== null && sample.requests > 0 ? (cpuAfter - cpuBefore) / sample.requests : null
    const stealPct = stealPercent(timeBefore, cpuTime(pinning.targets))
    const counts = await upstream?.stats(false)
    return { ...sample, rssMiB, cpuUs, stealPct, upstreamMax: counts?.maxOpen ?? null }
  } catch (err) {
    stopRss()
    return { rps: 0, p50: NaN, p99: NaN, errors: 0, non2xx: 0, socketErrors: 0, requests: 0, rssMiB: null, cpuUs: null, stealPct: null, upstreamMax: null, failure: (err as Error).message.split('\n')[0] }
  }
}
