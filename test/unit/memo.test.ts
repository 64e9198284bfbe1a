import t from 'tap'
import { Memo } from '../../gateway/memo.ts'

t.test('a memo remembers up to its limit, then forgets everything at once', async (t) => {
  const memo = new Memo<number>(3)
  t.equal(memo.set('a', 1), 1, 'set returns the value')
  memo.set('b', 2)
  memo.set('c', 3)
  t.same(['a', 'b', 'c'].map((k) => memo.get(k)), [1, 2, 3])
  memo.set('d', 4)
  t.same(['a', 'b', 'c', 'd'].map((k) => memo.get(k)), [undefined, undefined, undefined, 4], 'full: the old entries are gone, the new one stays')
})
