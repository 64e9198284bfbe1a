// The benchmark's verdicts on ratio goals: req/s one after the other, checked against the rounds in which the
// two scenarios were loaded side by side; "split" when the two disagree.
import t from 'tap'
import { checkGoals, sideKey, toRow, type Run, type SideBySide } from '../../bench/report.ts'
import { scenarios } from '../../bench/scenarios.ts'

const all = scenarios({ workers: 0 })
const run = (rps: number, cpuUs: number, stealPct: number | null = null): Run => ({ rps, p50: 1, p99: 2, errors: 0, non2xx: 0, socketErrors: 0, requests: rps * 10, rssMiB: null, cpuUs, stealPct, upstreamMax: null })
const rows = (hitRps: number, ceilingRps: number) => [
  toRow(all.find((s) => s.id === 'hit.gateway')!, [run(hitRps, 1e6 / hitRps)], { connections: 50, seconds: 10, notes: [] }),
  toRow(all.find((s) => s.id === 'direct.instant')!, [run(ceilingRps, 1e6 / ceilingRps)], { connections: 50, seconds: 10, notes: [] }),
]
/** Side-by-side rounds with these CPU µs per request for the hit and the ceiling. */
const side = (...rounds: Array<[number, number]>): SideBySide => new Map([[sideKey('hit.gateway', 'direct.instant'),
  rounds.map(([hit, ceiling]) => ({ a: { rps: 1e6 / hit / 2, cpuUs: hit }, b: { rps: 1e6 / ceiling / 2, cpuUs: ceiling } }))]])
const hitGoal = (rowsIn: ReturnType<typeof rows>, sideBySide?: SideBySide) =>
  checkGoals(rowsIn, [], sideBySide).find((g) => g.goal.startsWith('L1 hit / bare node:http'))!

t.test('one after the other only: judged by req/s', async (t) => {
  t.equal(hitGoal(rows(9000, 10000)).verdict, 'pass')
  t.equal(hitGoal(rows(7000, 10000)).verdict, 'miss')
})

t.test('side by side agreeing: the verdict stands, and the median round is shown', async (t) => {
  const result = hitGoal(rows(9000, 10000), side([36, 30], [33, 30], [40, 30]))
  t.equal(result.verdict, 'pass', 'median side-by-side ratio 30/36 = 0.83')
  t.match(result.measured, /side by side 0\.83×/)
  t.match(result.measured, /round by round 0\.75–0\.91×/)
  t.equal(hitGoal(rows(7000, 10000), side([40, 30], [45, 30])).verdict, 'miss')
})

t.test('side by side disagreeing: split, whichever way', async (t) => {
  t.equal(hitGoal(rows(9000, 10000), side([40, 30], [42, 30], [39, 30])).verdict, 'split')
  t.equal(hitGoal(rows(7000, 10000), side([33, 30], [34, 30])).verdict, 'split')
})

t.test('rounds without CPU figures are no side-by-side measurement', async (t) => {
  const empty: SideBySide = new Map([[sideKey('hit.gateway', 'direct.instant'), [{ a: { rps: 0, cpuUs: null }, b: { rps: 10, cpuUs: 30 } }]]])
  const result = hitGoal(rows(9000, 10000), empty)
  t.equal(result.verdict, 'pass')
  t.notMatch(result.measured, /side by side/)
})

t.test('the host steal each scenario met is shown beside its ratio, when known', async (t) => {
  t.notMatch(hitGoal(rows(9000, 10000)).measured, /steal/)
  const withSteal = [
    toRow(all.find((s) => s.id === 'hit.gateway')!, [run(9000, 111, 40), run(9000, 111, 60), run(9000, 111, 20)], { connections: 50, seconds: 10, notes: [] }),
    toRow(all.find((s) => s.id === 'direct.instant')!, [run(10000, 100, 12)], { connections: 50, seconds: 10, notes: [] }),
  ]
  t.equal(withSteal[0]!.stealPct, 40, 'the median over rounds')
  t.match(hitGoal(withSteal).measured, /host steal 40% against 12%/)
})
