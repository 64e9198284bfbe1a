// Turning samples into rows (median and min–max over rounds), the goal table and the markdown report.
import type { AbResult, Sample } from './load.ts'
import type { HitRate } from './mix.ts'
import { GOALS, GROUPS, median, type Measured, type Scenario, type SideRound } from './scenarios.ts'

/** One measured run: the load generator's figures plus what was sampled around it. */
export interface Run extends Sample {
  rssMiB: number | null
  /** Most upstream connections open at once (bench upstreams only). */
  upstreamMax: number | null
  /** The target's CPU time (its whole process tree) per request answered in the run, µs. */
  cpuUs: number | null
  /** The share of the targets' CPUs the host stole during the run, % (null: not known). */
  stealPct: number | null
  /** Set when the load generator itself failed. */
  failure?: string
}

export interface Row {
  id: string
  group: string
  label: string
  connections: number
  seconds: number
  rounds: number
  rps: number
  rpsMin: number
  rpsMax: number
  p50: number
  p99: number
  errors: number
  non2xx: number
  socketErrors: number
  requests: number
  peakRssMiB: number | null
  upstreamMax: number | null
  /** Median over rounds of the target's CPU µs per request. */
  cpuUs: number | null
  /** Median over rounds of the host's steal on the targets' CPUs, %. */
  stealPct: number | null
  ratio: string
  notes: string[]
  runs: Run[]
}

export function toRow(s: Scenario, runs: Run[], o: { connections: number; seconds: number; notes: string[] }): Row {
  const ok = runs.filter((r) => !r.failure)
  const rps = ok.map((r) => r.rps)
  const max = (xs: Array<number | null>) => xs.reduce<number | null>((m, x) => (x === null ? m : m === null ? x : Math.max(m, x)), null)
  return {
    id: s.id, group: s.group, label: s.label, connections: o.connections, seconds: o.seconds, rounds: runs.length,
    rps: ok.length ? median(rps) : 0,
    rpsMin: ok.length ? Math.min(...rps) : 0,
    rpsMax: ok.length ? Math.max(...rps) : 0,
    p50: ok.length ? median(ok.map((r) => r.p50)) : NaN,
    p99: ok.length ? median(ok.map((r) => r.p99)) : NaN,
    errors: runs.reduce((n, r) => n + r.errors, 0),
    non2xx: runs.reduce((n, r) => n + r.non2xx, 0),
    socketErrors: runs.reduce((n, r) => n + r.socketErrors, 0),
    requests: runs.reduce((n, r) => n + r.requests, 0),
    peakRssMiB: max(runs.map((r) => r.rssMiB)),
    upstreamMax: max(runs.map((r) => r.upstreamMax)),
    cpuUs: medianKnown(ok.map((r) => r.cpuUs)),
    stealPct: medianKnown(ok.map((r) => r.stealPct)),
    ratio: '',
    notes: [...o.notes, ...runs.filter((r) => r.failure).map((r) => `load generator failed: ${r.failure}`)],
    runs,
  }
}

function medianKnown(xs: Array<number | null>): number | null {
  const known = xs.filter((x): x is number => x !== null)
  return known.length ? median(known) : null
}

/** The ratio column: req/s over the baseline scenario's, both from this run. */
export function addRatios(rows: Row[], all: Scenario[]): void {
  for (const row of rows) {
    const baseline = all.find((s) => s.id === row.id)?.baseline
    const base = baseline ? rows.find((r) => r.id === baseline) : undefined
    if (base && base.rps > 0 && row.rps > 0) row.ratio = `${(row.rps / base.rps).toFixed(2)}× ${base.label}`
  }
}

/** split: measured one after the other and side by side, the goal passed one way and missed the other. */
export interface GoalResult { goal: string; measured: string; verdict: 'pass' | 'miss' | 'split' | 'n/a'; value?: number }

/** Rounds of two scenarios loaded at the same moment, keyed by sideKey(a, b). */
export type SideBySide = Map<string, SideRound[]>

export const sideKey = (a: string, b: string) => `${a} + ${b}`

export function checkGoals(rows: Row[], ab: AbOutcome[], sideBySide: SideBySide = new Map()): GoalResult[] {
  const row = (id: string) => rows.find((r) => r.id === id && r.requests - r.non2xx > 0)
  const measured: Measured = {
    rps: (id) => row(id)?.rps,
    p99: (id) => row(id)?.p99,
    errors: (id) => row(id)?.errors,
    upstreamMax: (id) => row(id)?.upstreamMax ?? undefined,
    cpuUs: (id) => row(id)?.cpuUs ?? undefined,
    stealPct: (id) => row(id)?.stealPct ?? undefined,
    roundRps: (id) => row(id)?.runs.map((r) => (r.failure ? NaN : r.rps)) ?? [],
    sideBySide: (a, b) => sideBySide.get(sideKey(a, b)) ?? [],
    abMeanMs: () => ab.find((a) => a.id === 'ab.gateway')?.result?.meanMs,
  }
  return GOALS.map((goal) => {
    const m = goal.measure(measured)
    if (!m || Number.isNaN(m.value)) return { goal: goal.text, measured: `not measured (${goal.uses.join(', ')})`, verdict: 'n/a' }
    const verdicts = new Set([m.value, ...(m.second === undefined ? [] : [m.second])].map((v) => goal.pass(v)))
    return { goal: goal.text, measured: m.shown, verdict: verdicts.size > 1 ? 'split' : verdicts.has(true) ? 'pass' : 'miss', value: m.value }
  })
}

export interface AbOutcome { id: string; label: string; result?: AbResult; failure?: string }

const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits).replace(/\.?0+$/, '') : '–')

export interface Report {
  meta: Record<string, unknown>
  notes: string[]
  targets: Array<{ key: string; label: string; state: string; detail?: string }>
  rows: Row[]
  goals: GoalResult[]
  /** The raw side-by-side rounds behind the ratio goals. */
  sideBySide: Array<{ pair: string; rounds: SideRound[] }>
  ab: AbOutcome[]
  mix: HitRate[] | null
}

export function markdown(report: Report): string {
  const out: string[] = []
  out.push(`# Gateway benchmark, ${String(report.meta.date)}`, '')
  for (const note of report.notes) out.push(`- ${note}`)
  out.push('')
  const rowHeader = '| scenario | req/s (median) | min–max | p50 ms | p99 ms | CPU µs/req | steal % | errors | peak RSS MiB | upstream conns | ratio (same run) |\n|---|---|---|---|---|---|---|---|---|---|---|'
  for (const group of GROUPS) {
    const rows = report.rows.filter((r) => r.group === group.id)
    if (group.id === 'ab') {
      if (!report.ab.length) continue
      out.push(`## ${group.title}`, '', 'No keep-alive (as the plan ran it), alice\'s token; one request first, so the cache is warm.', '',
        '| target | requests | time per request ms (mean) | (mean, across all concurrent) | req/s | p50 ms | p99 ms | failed | non-2xx |', '|---|---|---|---|---|---|---|---|---|')
      for (const a of report.ab) {
        const r = a.result
        out.push(r
          ? `| ${a.label} | ${r.requests} | ${fmt(r.meanMs)} | ${fmt(r.meanAcrossMs, 3)} | ${Math.round(r.rps)} | ${r.p50} | ${r.p99} | ${r.failed} | ${r.non2xx} |`
          : `| ${a.label} | not run: ${a.failure} | | | | | | | |`)
      }
      out.push('')
      continue
    }
    if (!rows.length) continue
    const first = rows[0]!
    out.push(`## ${group.title}`, '', `${first.connections} connections, ${fmt(first.seconds)} s × ${first.rounds} round(s)`, '', rowHeader)
    for (const r of rows) {
      const measuredAny = r.requests > 0
      out.push(`| ${r.label} | ${measuredAny ? Math.round(r.rps) : '–'} | ${measuredAny ? `${Math.round(r.rpsMin)}–${Math.round(r.rpsMax)}` : ''} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${r.cpuUs === null ? '' : fmt(r.cpuUs, 1)} | ${r.stealPct === null ? '' : Math.round(r.stealPct)} | ${r.errors}${r.errors ? ` (${r.non2xx} non-2xx, ${r.socketErrors} socket)` : ''} | ${r.peakRssMiB ?? ''} | ${r.upstreamMax ?? ''} | ${r.ratio} |`)
    }
    const notes = rows.flatMap((r) => r.notes.map((n) => `${r.label}: ${n}`))
    if (group.id === 'mix' && report.mix) {
      const rates = report.mix.filter((h) => h.lookups > 0).map((h) => `${h.route} ${(100 * h.rate).toFixed(1)}% (${h.served}/${h.lookups})`)
      notes.push(`cache hit rate under the mix, from the gateway's /metrics: ${rates.join(', ') || 'no lookups'}`)
    }
    if (notes.length) out.push('', ...notes.map((n) => `- ${n}`))
    out.push('')
  }
  if (report.goals.length) {
    out.push('## Targets from the issue (ratios from this run)', '')
    if (report.sideBySide.length) {
      out.push('A ratio goal is judged by req/s measured one after the other (the tables above) and by its side-by-side rounds:',
        'its two scenarios loaded at the same moment, each by its own load generator, the ratio of their CPU per request.',
        '"split" means it passed one way and missed the other.', '')
    }
    out.push('| goal | measured | |', '|---|---|---|')
    for (const g of report.goals) out.push(`| ${g.goal} | ${g.measured} | ${g.verdict} |`)
    out.push('')
  }
  out.push('## Processes', '', '| target | state |', '|---|---|')
  for (const t of report.targets) out.push(`| ${t.label} | ${t.state}${t.detail ? `: ${t.detail.split('\n')[0]}` : ''} |`)
  if (report.targets.some((t) => t.state !== 'started')) out.push('', 'Rows whose target was skipped or failed are missing from the tables above.')
  return `${out.join('\n')}\n`
}
