// L1 keeps small bodies also as their latin1 text (what a hit hands node for its one write): made when an
// entry enters memory, counted against cache.memory, never written to L2.
import t from 'tap'
import { MemoryTier } from '../../../gateway/cache/l1.ts'
import { decodeVariants, encodeVariants } from '../../../gateway/cache/l2.ts'
import type { Entry } from '../../../gateway/cache/store.ts'
import { ONE_WRITE_MAX } from '../../../gateway/pipeline.ts'

const entry = (body: Buffer): Entry => {
  const now = Date.now()
  return {
    status: 200, headers: { 'content-type': 'application/octet-stream' }, body, storedAt: now, initialAgeS: 0,
    freshUntil: now + 60_000, staleWhileRevalidateUntil: 0, staleIfErrorUntil: 0, vary: {}, tags: [],
  }
}
const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

t.test('a small body is kept as its latin1 text too, byte for byte', async (t) => {
  const l1 = new MemoryTier(1024 * 1024, Date.now)
  l1.set('small', { entries: [entry(everyByte)] })
  const text = l1.get('small')!.entries[0]!.text
  t.type(text, 'string')
  t.ok(Buffer.from(text!, 'latin1').equals(everyByte), 'the text is the same 256 bytes')
})

t.test('a body too large for one write keeps no text', async (t) => {
  const l1 = new MemoryTier(1024 * 1024, Date.now)
  l1.set('edge', { entries: [entry(Buffer.alloc(ONE_WRITE_MAX, 1))] })
  l1.set('large', { entries: [entry(Buffer.alloc(ONE_WRITE_MAX + 1, 1))] })
  t.type(l1.get('edge')!.entries[0]!.text, 'string', `${ONE_WRITE_MAX} bytes still leave in one write`)
  t.equal(l1.get('large')!.entries[0]!.text, undefined)
})

t.test('the text counts against the memory bound', async (t) => {
  const withText = new MemoryTier(1024 * 1024, Date.now)
  const without = new MemoryTier(1024 * 1024, Date.now)
  withText.set('k', { entries: [entry(Buffer.alloc(ONE_WRITE_MAX, 1))] })
  without.set('k', { entries: [entry(Buffer.alloc(ONE_WRITE_MAX + 1, 1))] })
  // One byte more body, but no text: the entry with text weighs ONE_WRITE_MAX - 1 bytes more.
  t.equal(withText.lru.calculatedSize - without.lru.calculatedSize, ONE_WRITE_MAX - 1)
})

t.test('L2 never stores the text', async (t) => {
  const l1 = new MemoryTier(1024 * 1024, Date.now)
  const variants = { entries: [entry(everyByte)] }
  l1.set('k', variants)
  t.type(variants.entries[0]!.text, 'string', 'L1 made the text')
  const blob = encodeVariants(variants)
  t.equal(blob.length, encodeVariants({ entries: [entry(everyByte)] }).length, 'the blob is as large as without the text')
  const back = decodeVariants(blob).entries[0]!
  t.notOk('text' in back, 'nothing named text comes back')
  t.ok(back.body.equals(everyByte))
})
