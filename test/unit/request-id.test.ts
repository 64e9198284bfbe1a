import t from 'tap'
import { freshRequestId, requestIdFor } from '../../gateway/request-id.ts'

const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('a well-formed incoming id is kept; anything else is replaced', async (t) => {
  t.equal(requestIdFor({ 'x-request-id': 'abc-123.x:y_z' }), 'abc-123.x:y_z')
  for (const bad of ['', 'a b', 'x'.repeat(129), 'evil\r\nx', '<script>']) {
    t.match(requestIdFor({ 'x-request-id': bad }), UUID_SHAPE, `${JSON.stringify(bad).slice(0, 20)} is replaced`)
  }
  t.match(requestIdFor({ 'x-request-id': ['a', 'b'] as unknown as string }), UUID_SHAPE, 'a repeated header is replaced')
})

t.test('fresh ids are UUID-shaped and never repeat', async (t) => {
  const ids = Array.from({ length: 10_000 }, freshRequestId)
  t.equal(new Set(ids).size, ids.length, '10,000 fresh ids, all different')
  t.ok(ids.every((id) => UUID_SHAPE.test(id)), 'each one UUID-shaped')
  t.equal(new Set(ids.map((id) => id.slice(0, 24))).size, 1, 'one process prefix; the counter makes them unique')
})
