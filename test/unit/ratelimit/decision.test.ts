import t from 'tap'
import type { LimitPolicy } from '../../../gateway/config/compile.ts'
import { bindingDecision, decide, rateLimitHeaders, toDecision, type LimitDecision } from '../../../gateway/ratelimit/decision.ts'

const policy = (name: string, points: number, windowS = 60): LimitPolicy =>
  ({ name, key: { kind: 'ip' }, points, windowS, burst: null, blockS: 0, cost: 1 })
const decision = (over: Partial<LimitDecision>): LimitDecision =>
  ({ allowed: true, policy: 'p', limit: 10, remaining: 5, resetMs: 30_000, windowS: 60, ...over })

t.test('a resolved result allows, a rejected result limits, an error fails open and is reported', async (t) => {
  t.match(await decide(policy('a', 5), Promise.resolve({ remainingPoints: 4, msBeforeNext: 1000 }), () => t.fail("no error expected")), { allowed: true, remaining: 4, resetMs: 1000 })
  t.match(await decide(policy('a', 5), Promise.reject({ remainingPoints: -2, msBeforeNext: 9000 }), () => t.fail("no error expected")), { allowed: false, remaining: 0, resetMs: 9000 })
  const errors: unknown[] = []
  t.match(await decide(policy('a', 5), Promise.reject(new Error('store down')), (e) => errors.push(e)), { allowed: true, remaining: 5 })
  t.equal(errors.length, 1)
})

t.test('the binding decision is the strictest', async (t) => {
  const roomy = decision({ policy: 'default', remaining: 90 })
  const tight = decision({ policy: 'login', remaining: 1 })
  const refused = decision({ policy: 'login', allowed: false, remaining: 0, resetMs: 900_000 })
  const refusedSooner = decision({ policy: 'burst', allowed: false, remaining: 0, resetMs: 5_000 })
  t.equal(bindingDecision([roomy, tight]), tight)
  t.equal(bindingDecision([tight, roomy]), tight)
  t.equal(bindingDecision([roomy, refused]), refused)
  t.equal(bindingDecision([refusedSooner, refused, roomy]), refused, 'the longest wait among refusals')
  t.equal(bindingDecision([]), undefined)
})

t.test('headers follow draft-ietf-httpapi-ratelimit-headers-11', async (t) => {
  const a = toDecision(policy('default', 100), { remainingPoints: 99, msBeforeNext: 59_400 }, true)
  const b = toDecision(policy('login', 5), { remainingPoints: 0, msBeforeNext: 899_001 }, false)
  t.same(rateLimitHeaders([a, b], b, false), {
    'ratelimit-policy': '"default";q=100;w=60, "login";q=5;w=60',
    ratelimit: '"login";r=0;t=900',
    'retry-after': '900',
  })
  t.same(rateLimitHeaders([a], a, true), {
    'ratelimit-policy': '"default";q=100;w=60',
    ratelimit: '"default";r=99;t=60',
    'x-ratelimit-limit': '100',
    'x-ratelimit-remaining': '99',
    'x-ratelimit-reset': '60',
  })
})
