import t from 'tap'
import { fillTags, normalizeTarget, parentPath, primaryKey, varyMatches, varyValues } from '../../../gateway/cache/keys.ts'

t.test('targets are normalised: query sorted, unreserved escapes decoded', async (t) => {
  t.equal(normalizeTarget('/a?b=2&a=1&a=0'), '/a?a=1&a=0&b=2', 'by name; repeated names keep their order')
  t.equal(normalizeTarget('/%7Euser/%2Fx'), '/~user/%2Fx')
  t.equal(normalizeTarget('/a?'), '/a')
  t.equal(normalizeTarget('/a'), '/a')
})

t.test('the primary key separates scopes, hosts and protocols, and hides what it keys', async (t) => {
  const base = { scope: 'user:alice', host: 'api.example', proto: 'http', url: '/api/leads?b=1&a=2' }
  const key = primaryKey(base)
  t.equal(primaryKey({ ...base, url: '/api/leads?a=2&b=1' }), key, 'query order does not matter')
  t.not(primaryKey({ ...base, scope: 'user:bob' }), key)
  t.not(primaryKey({ ...base, host: 'other.example' }), key)
  t.not(primaryKey({ ...base, proto: 'https' }), key)
  t.notMatch(key, /alice|leads/, 'hashed before it reaches any store')
})

t.test('remembered keys never answer for other inputs, however the requests for one target interleave', async (t) => {
  const url = '/api/dashboard'
  const inputs = [
    { scope: 'user:alice', host: 'api.example|', proto: 'http', url },
    { scope: 'user:bob', host: 'api.example|', proto: 'http', url },
    { scope: 'user:alice', host: 'api.example|evil.example', proto: 'http', url },
    { scope: 'user:alice', host: 'api.example|', proto: 'https', url },
    { scope: 'public', host: 'api.example|', proto: 'http', url },
  ]
  // Fresh string objects each time, as node parses them, so no answer can hang on string identity.
  const fresh = (text: string) => Buffer.from(text).toString('latin1')
  const first = inputs.map((input) => primaryKey({ scope: fresh(input.scope), host: fresh(input.host), proto: fresh(input.proto), url: fresh(url) }))
  t.equal(new Set(first).size, inputs.length, 'one key per scope, host and proto')
  // Every input right after every other (and itself): each pair differs in one field or more.
  for (let i = 0; i < inputs.length; i++) {
    for (let j = 0; j < inputs.length; j++) {
      for (const k of [i, j]) {
        const input = inputs[k]!
        t.equal(primaryKey({ scope: fresh(input.scope), host: fresh(input.host), proto: fresh(input.proto), url: fresh(url) }), first[k], `input ${k} keeps its key after input ${i}`)
      }
    }
  }
})

t.test('parent collections', async (t) => {
  t.equal(parentPath('/api/leads/5'), '/api/leads')
  t.equal(parentPath('/api/leads/'), '/api')
  t.equal(parentPath('/api'), '/')
  t.equal(parentPath('/'), null)
})

t.test('vary values', async (t) => {
  const values = varyValues(['accept-language', 'accept'], { 'accept-language': ' de ', accept: undefined })
  t.same(values, { 'accept-language': 'de', accept: '' })
  t.ok(varyMatches(values, { 'accept-language': 'de' }))
  t.notOk(varyMatches(values, { 'accept-language': 'en' }))
})

t.test('tag templates are filled from params and the user; incomplete ones are left out', async (t) => {
  const lead = { parts: [{ literal: 'lead:' }, { param: 'id' }] }
  const user = { parts: [{ literal: 'user:' }, { param: 'user' }] }
  t.same(fillTags([lead, user], { id: '5' }, 'alice'), ['lead:5', 'user:alice'])
  t.same(fillTags([lead, user], {}, null), [])
})
