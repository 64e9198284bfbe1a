import t from 'tap'
import type { RouteCache } from '../../../gateway/config/compile.ts'
import { ageSeconds, clientWantsRevalidation, freshness, mergeNotModified, notModified, storeDecision, validators, type StoreInput } from '../../../gateway/cache/policy.ts'
import type { Entry } from '../../../gateway/cache/store.ts'

const NOW = Date.parse('2026-01-01T00:00:00Z')
const route = (over: Partial<RouteCache> = {}): RouteCache => ({
  ttlMs: 300_000, scope: 'user', tags: [], staleWhileRevalidateMs: 0, staleIfErrorMs: 0, storeSetCookie: false, force: false, ...over,
})
const decide = (responseHeaders: StoreInput['responseHeaders'], over: Partial<StoreInput> = {}) =>
  storeDecision({ route: route(), shared: false, method: 'GET', requestHeaders: {}, status: 200, responseHeaders, now: NOW, ...over })

t.test('silent APIs get the route ttl; explicit upstream freshness wins over it', async (t) => {
  t.match(decide({}), { store: true, freshUntil: NOW + 300_000 })
  t.match(decide({ 'cache-control': 'max-age=60' }), { store: true, freshUntil: NOW + 60_000 })
  t.match(decide({ 'cache-control': 'max-age=60', age: '20' }), { store: true, freshUntil: NOW + 40_000, initialAgeS: 20 })
  t.match(decide({ 'cache-control': 's-maxage=30, max-age=60' }, { shared: true }), { store: true, freshUntil: NOW + 30_000 })
  const date = new Date(NOW).toUTCString()
  t.match(decide({ date, expires: new Date(NOW + 90_000).toUTCString() }), { store: true, freshUntil: NOW + 90_000 })
})

t.test('what is never stored, and why', async (t) => {
  t.same(decide({ 'cache-control': 'no-store' }), { store: false, reason: 'no-store' })
  t.same(decide({ 'cache-control': 'private' }, { shared: true }), { store: false, reason: 'private' })
  t.match(decide({ 'cache-control': 'private' }, { shared: false }), { store: true }, 'a user-scoped entry is a private cache')
  t.same(decide({ 'set-cookie': 'a=1' }), { store: false, reason: 'set-cookie' })
  t.match(decide({ 'set-cookie': 'a=1' }, { route: route({ storeSetCookie: true }) }), { store: true })
  t.same(decide({ vary: 'Accept, *' }), { store: false, reason: 'vary-star' })
  t.same(decide({}, { status: 500 }), { store: false, reason: 'status' })
  t.same(decide({}, { method: 'POST' }), { store: false, reason: 'method' })
  t.same(decide({}, { requestHeaders: { 'cache-control': 'no-store' } }), { store: false, reason: 'request-no-store' })
  t.same(decide({ 'cache-control': 'max-age=0' }), { store: false, reason: 'not-storable' }, 'useless without validators')
})

t.test('force stores what the upstream refuses, for the route ttl', async (t) => {
  t.match(decide({ 'cache-control': 'no-store, private' }, { route: route({ force: true }), shared: true }), { store: true, freshUntil: NOW + 300_000 })
  t.same(decide({}, { route: route({ force: true }), status: 503 }), { store: false, reason: 'status' })
})

t.test('no-cache and must-revalidate: stored for revalidation, never served stale', async (t) => {
  const swr = route({ staleWhileRevalidateMs: 30_000, staleIfErrorMs: 60_000 })
  t.match(decide({ 'cache-control': 'no-cache', etag: '"a"' }, { route: swr }), { store: true, freshUntil: NOW, staleWhileRevalidateUntil: NOW, staleIfErrorUntil: NOW })
  t.match(decide({ 'cache-control': 'max-age=10, must-revalidate' }, { route: swr }), { store: true, staleWhileRevalidateUntil: NOW + 10_000 })
  t.match(decide({ 'cache-control': 'max-age=10' }, { route: swr }), { staleWhileRevalidateUntil: NOW + 40_000, staleIfErrorUntil: NOW + 70_000 })
  t.match(decide({ 'cache-control': 'max-age=10, stale-while-revalidate=100' }), { staleWhileRevalidateUntil: NOW + 110_000 }, 'RFC 5861 from the upstream')
})

const entry = (over: Partial<Entry> = {}): Entry => ({
  status: 200, headers: { etag: '"v1"', 'last-modified': 'Wed, 01 Jan 2025 00:00:00 GMT' }, body: Buffer.from('x'),
  storedAt: NOW, initialAgeS: 5, freshUntil: NOW + 10_000, staleWhileRevalidateUntil: NOW + 20_000, staleIfErrorUntil: NOW + 30_000,
  vary: {}, tags: [], ...over,
})

t.test('freshness and age with the clock passed in', async (t) => {
  t.equal(freshness(entry(), NOW + 9_999), 'fresh')
  t.equal(freshness(entry(), NOW + 10_000), 'stale-while-revalidate')
  t.equal(freshness(entry(), NOW + 20_000), 'stale')
  t.equal(ageSeconds(entry(), NOW + 2_500), 7)
})

t.test('conditional requests', async (t) => {
  t.ok(notModified(entry(), { 'if-none-match': '"v1"' }))
  t.ok(notModified(entry(), { 'if-none-match': '"x", W/"v1"' }), 'weak comparison')
  t.ok(notModified(entry(), { 'if-none-match': '*' }))
  t.notOk(notModified(entry(), { 'if-none-match': '"v2"' }))
  t.notOk(notModified(entry(), { 'if-none-match': '"v2"', 'if-modified-since': 'Thu, 01 Jan 2026 00:00:00 GMT' }), 'If-None-Match wins')
  t.ok(notModified(entry(), { 'if-modified-since': 'Wed, 01 Jan 2025 00:00:00 GMT' }))
  t.notOk(notModified(entry(), { 'if-modified-since': 'Tue, 31 Dec 2024 00:00:00 GMT' }))
  t.same(validators(entry()), { 'if-none-match': '"v1"', 'if-modified-since': 'Wed, 01 Jan 2025 00:00:00 GMT' })
  t.ok(clientWantsRevalidation({ 'cache-control': 'no-cache' }))
  t.ok(clientWantsRevalidation({ 'cache-control': 'max-age=0' }))
  t.ok(clientWantsRevalidation({ pragma: 'no-cache' }))
  t.notOk(clientWantsRevalidation({ 'cache-control': 'max-age=60' }))
})

t.test('a 304 updates the stored headers but not the body\'s own', async (t) => {
  t.same(mergeNotModified({ etag: '"v1"', 'content-length': '1', 'content-type': 'text/plain', 'cache-control': 'max-age=1' },
    { etag: '"v1"', 'cache-control': 'max-age=60', 'content-length': '0', 'content-type': 'x/y' }),
  { etag: '"v1"', 'content-length': '1', 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
})
