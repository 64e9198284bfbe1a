// The bench measures its scenarios in rounds, every other one in reverse order, so that neither side of a
// ratio always runs first.
import t from 'tap'
import { roundOrder, scenarios } from '../../bench/scenarios.ts'

t.test('odd rounds keep the order, even rounds reverse it', async (t) => {
  const list = ['a', 'b', 'c']
  t.same(roundOrder(list, 1), ['a', 'b', 'c'])
  t.same(roundOrder(list, 2), ['c', 'b', 'a'])
  t.same(roundOrder(list, 3), ['a', 'b', 'c'])
  t.same(list, ['a', 'b', 'c'], 'the list itself is left as it was')
})

t.test('over an even number of rounds every scenario runs before its neighbour as often as after it', async (t) => {
  const ids = scenarios({ workers: 0 }).map((s) => s.id)
  const before = new Map<string, number>()
  for (let round = 1; round <= 4; round++) {
    const order = roundOrder(ids, round)
    for (let i = 0; i + 1 < order.length; i++) {
      const pair = [order[i]!, order[i + 1]!].sort().join(' ')
      const first = order[i]! < order[i + 1]! ? 1 : -1
      before.set(pair, (before.get(pair) ?? 0) + first)
    }
  }
  t.ok(before.size > 0)
  for (const [pair, balance] of before) t.equal(balance, 0, pair)
})
