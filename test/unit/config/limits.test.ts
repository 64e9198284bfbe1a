// Rate-limit configuration: what compiles, and each mistake named by file, line and key.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadPlan } from '../../../gateway/config/load.ts'

const dir = mkdtempSync(join(tmpdir(), 'limits-'))
const load = (yaml: string) => {
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `upstream: { url: http://127.0.0.1:8000 }\n${yaml}`)
  return { file, plan: () => loadPlan(file, {}) }
}
const problemsOf = (yaml: string): string[] => {
  try {
    load(yaml).plan()
    return []
  } catch (err) {
    return [...(err as { problems: string[] }).problems]
  }
}

t.test('default applies to every route, a route adds its own, names are shared', async (t) => {
  const plan = load(`
identity: { jwt: { secret: s } }
rateLimits:
  default: { limit: 100/min }
  strict: { key: user, limit: 10/min, burst: 30/10s, block: 15m, cost: 2 }
routes:
  - { name: a, match: GET /a, rateLimit: strict }
  - { name: b, match: GET /b, rateLimit: strict }
  - { name: c, match: GET /c, rateLimit: { key: "header:X-Api-Key", limit: 5/s } }
  - { name: d, match: GET /d, rateLimit: default }
`).plan()
  const [a, b, c, d] = plan.routes
  t.same(a!.rateLimits!.map((p) => p.name), ['default', 'strict'])
  t.equal(a!.rateLimits![1], b!.rateLimits![1], 'routes naming one limit share it')
  t.match(a!.rateLimits![1], { key: { kind: 'user' }, points: 10, windowS: 60, burst: { points: 30, windowS: 10 }, blockS: 900, cost: 2 })
  t.ok(a!.needsUser)
  t.same(c!.rateLimits![1]!.key, { kind: 'header', header: 'x-api-key' })
  t.notOk(c!.needsUser)
  t.same(d!.rateLimits!.map((p) => p.name), ['default'], 'naming default does not count twice')
  t.same(plan.unmatched.rateLimits!.map((p) => p.name), ['default'])
})

t.test('no limits at all: the hot path sees null', async (t) => {
  const plan = load('routes: [{ name: a, match: GET /a }]').plan()
  t.equal(plan.routes[0]!.rateLimits, null)
  t.equal(plan.unmatched.rateLimits, null)
})

t.test('each mistake is named with its line and key', async (t) => {
  t.match(problemsOf('rateLimits:\n  default: { limit: lots }'), [/gateway\.yaml:3 rateLimits\.default\.limit: expected a rate like 100\/min/])
  t.match(problemsOf('rateLimits:\n  default: { key: cookie, limit: 1/s }'), [/:3 rateLimits\.default\.key: expected ip, user, route or header:<name>/])
  t.match(problemsOf('rateLimits:\n  default: { block: 15m }'), [/:3 rateLimits\.default\.limit: required/])
  t.match(problemsOf('rateLimits:\n  default: { limit: 5/500ms }'), [/:3 rateLimits\.default\.limit: the window must be whole seconds/])
  t.match(problemsOf('rateLimits:\n  default: { key: user, limit: 5/s }'), [/:3 rateLimits\.default\.key: key "user" needs identity\.jwt/])
  t.match(problemsOf('routes:\n  - { name: a, match: GET /a, rateLimit: nope }'), [/:3 routes\[0\]\.rateLimit: no limit named "nope"/])
  t.match(problemsOf('rateLimiting: { allow: [10.0.0.0/8, "not an ip"] }'), [/:2 rateLimiting\.allow\[1\]: expected an IP address, a CIDR or user:<sub>/])
})
