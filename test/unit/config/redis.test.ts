// The redis section: one Redis (url), Redis Sentinel (sentinels + name) or Redis Cluster (cluster), at most
// one of them, each mistake named by file, line and key.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadPlan } from '../../../gateway/config/load.ts'

const dir = mkdtempSync(join(tmpdir(), 'redis-config-'))
const load = (yaml: string) => {
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, `upstream: { url: http://127.0.0.1:8000 }\n${yaml}`)
  return loadPlan(file, {}).config.redis
}
const problemsOf = (yaml: string): string[] => {
  try {
    load(yaml)
    return []
  } catch (err) {
    return [...((err as { problems?: string[] }).problems ?? [String(err)])]
  }
}

t.test('nothing set: no Redis, everything in process', async (t) => {
  t.match(load(''), { url: '', sentinels: [], name: '', cluster: [], password: '', timeout: 100, keyPrefix: 'gw:' })
})

t.test('sentinels + name; the port defaults to 26379', async (t) => {
  const redis = load(`redis:
  sentinels: [{ host: sentinel-a, port: 26380 }, { host: sentinel-b }]
  name: gateway
  password: secret
  sentinelPassword: other
`)
  t.same(redis.sentinels, [{ host: 'sentinel-a', port: 26380 }, { host: 'sentinel-b', port: 26379 }])
  t.equal(redis.name, 'gateway')
  t.equal(redis.password, 'secret')
  t.equal(redis.sentinelPassword, 'other')
})

t.test('cluster nodes as objects, host:port or redis:// URLs, all normalised to { host, port }', async (t) => {
  const redis = load(`redis:
  cluster: [{ host: a.internal, port: 7000 }, "b.internal:7001", "redis://c.internal:7002", "redis://d.internal", "[::1]:7003"]
`)
  t.same(redis.cluster, [
    { host: 'a.internal', port: 7000 }, { host: 'b.internal', port: 7001 }, { host: 'c.internal', port: 7002 },
    { host: 'd.internal', port: 6379 }, { host: '::1', port: 7003 },
  ])
})

t.test('at most one of url, sentinels and cluster, named by key', async (t) => {
  const both = problemsOf(`redis:
  url: redis://one:6379
  cluster: ["a:7000"]
`)
  t.equal(both.length, 1)
  t.match(both[0], /gateway\.yaml:\d+ redis\.cluster: cannot be combined with redis\.url: set one of url, sentinels or cluster/)
  const three = problemsOf(`redis:
  url: redis://one:6379
  sentinels: [{ host: s }]
  name: m
  cluster: ["a:7000"]
`)
  t.same(three.map((p) => p.replace(/^\S+ /, '')), [
    'redis.sentinels: cannot be combined with redis.url: set one of url, sentinels or cluster',
    'redis.cluster: cannot be combined with redis.url: set one of url, sentinels or cluster',
  ])
})

t.test('sentinels need the master group name', async (t) => {
  t.match(problemsOf('redis: { sentinels: [{ host: s }] }'), [/redis\.name: required with redis\.sentinels/])
})

t.test('credentials with url belong in the URL', async (t) => {
  t.match(problemsOf('redis: { url: "redis://r:6379", password: x }'), [/redis\.password: with redis\.url, put the credentials in the URL/])
})

t.test('bad cluster entries', async (t) => {
  const problems = problemsOf(`redis:
  cluster: ["redis://user:pw@a:7000", "rediss://b:7000", "c:7000/1", 42]
`)
  t.equal(problems.length, 4, problems.join('\n'))
  problems.forEach((problem, i) => t.match(problem, new RegExp(`redis\\.cluster\\[${i}\\]: expected \\{ host, port \\}, host:port or redis://host:port \\(credentials go in redis\\.password\\)$`)))
})

t.test('a list from the environment: cluster: [${REDIS_CLUSTER:-}] is empty, so "not set", when the variable is', async (t) => {
  t.same(load('redis: { cluster: [${REDIS_CLUSTER:-}] }').cluster, [])
  t.same(load('redis: { cluster: [${REDIS_CLUSTER:-a:7000, b:7001}] }').cluster, [{ host: 'a', port: 7000 }, { host: 'b', port: 7001 }])
})
