import t from 'tap'
import { parseDuration, parseRate, parseSize } from '../../../gateway/config/units.ts'

t.test('durations', async (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['250ms', 250], ['30s', 30_000], ['5m', 300_000], ['1h', 3_600_000], ['1d', 86_400_000], ['1.5s', 1500],
    ['5 mins', undefined], ['30', undefined], ['s', undefined], ['-1s', undefined], ['', undefined],
  ]
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, text)
})

t.test('sizes', async (t) => {
  const cases: Array<[string | number, number | undefined]> = [
    ['64MiB', 64 * 1024 * 1024], ['1KiB', 1024], ['512KB', 512_000], ['1GB', 1e9], ['100B', 100], ['2 mib', 2 * 1024 * 1024],
    [4096, 4096], ['lots', undefined], ['64M', undefined], [-1, undefined], [1.5, undefined],
  ]
  for (const [text, bytes] of cases) t.equal(parseSize(text), bytes, String(text))
})

t.test('rates', async (t) => {
  t.same(parseRate('100/min'), { points: 100, windowMs: 60_000 })
  t.same(parseRate('10/s'), { points: 10, windowMs: 1000 })
  t.same(parseRate('30/10s'), { points: 30, windowMs: 10_000 })
  t.same(parseRate('5/hour'), { points: 5, windowMs: 3_600_000 })
  t.equal(parseRate('lots'), undefined)
  t.equal(parseRate('0/min'), undefined)
  t.equal(parseRate('10/fortnight'), undefined)
})
