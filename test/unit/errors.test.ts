// The error catalogue: the README's table must list exactly the codes in gateway/errors.ts.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { ERROR_CODES, GatewayError, problemDocument, toGatewayError } from '../../gateway/errors.ts'

t.test('the README error table matches the code table', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('<!-- error-codes:start -->'), readme.indexOf('<!-- error-codes:end -->'))
  const rows = [...section.matchAll(/^\| `(\w+)` \| (\d+) \| (\w+) \| (.+) \|$/gm)]
    .map(([, code, status, source, title]) => ({ code, status: Number(status), source, title }))
  const expected = Object.entries(ERROR_CODES).map(([code, { status, source, title }]) => ({ code, status, source, title }))
  t.same(rows, expected)
})

t.test('a problem document carries code, status and request id, never a stack', async (t) => {
  const err = new GatewayError('upstream_timeout', { cause: new Error('secret internals at /srv/app.py:12') })
  const doc = problemDocument(err, 'req-1')
  t.same(doc, { type: 'urn:gateway:error:upstream_timeout', title: ERROR_CODES.upstream_timeout.title, status: 504, code: 'upstream_timeout', requestId: 'req-1' })
  t.notMatch(JSON.stringify(doc), /secret|stack|\.py/)
})

t.test('unknown errors are internal 500s', async (t) => {
  const err = toGatewayError(new TypeError('boom'))
  t.equal(err.code, 'internal')
  t.equal(err.status, 500)
  t.equal(err.source, 'internal')
})
