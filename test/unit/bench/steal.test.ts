// The host's steal on a set of CPUs, read from /proc/stat around a benchmark run.
import { existsSync } from 'node:fs'
import { cpus } from 'node:os'
import t from 'tap'
import { cpuTime, stealPercent } from '../../bench/procs.ts'

t.test('the share stolen between two readings', async (t) => {
  t.equal(stealPercent({ total: 1000, steal: 10 }, { total: 1200, steal: 60 }), 25)
  t.equal(stealPercent({ total: 1000, steal: 10 }, { total: 1000, steal: 10 }), null, 'no time passed')
  t.equal(stealPercent(null, { total: 1, steal: 0 }), null)
})

t.test('/proc/stat: one CPU, a list, all of them', { skip: !existsSync('/proc/stat') && 'no /proc/stat' }, async (t) => {
  const all = cpuTime(null)!
  const first = cpuTime('0')!
  t.ok(first.total > 0 && first.steal >= 0 && first.steal <= first.total)
  t.ok(all.total >= first.total, 'all CPUs count at least as much as one')
  if (cpus().length >= 2) {
    const both = cpuTime('0-1')!
    const listed = cpuTime('0,1')!
    t.ok(both.total >= first.total)
    t.ok(Math.abs(listed.total - both.total) < both.total * 0.01, 'a range and a list name the same CPUs')
  }
  t.equal(cpuTime('4096'), null, 'a CPU the machine does not have')
})
