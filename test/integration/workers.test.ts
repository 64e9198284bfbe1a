// `workers: N` through a real gateway (a node:cluster primary and its workers) with a real redis-server:
// both workers serve the one port, a rate limit is counted once across them, a write invalidates the L1 of
// every worker, /metrics sums all workers, a reload reaches all of them, a dead worker is replaced and
// SIGTERM stops the lot. Every request opens its own connection, so round-robin spreads them over workers.
import t from 'tap'
import { startGateway, runCli, type RunningGateway } from '../helpers/gateway.ts'
import { startUpstream } from '../helpers/upstreams.ts'
import { httpRequest } from '../helpers/http.ts'
import { startRedis } from '../helpers/redis.ts'
import { run } from '../helpers/run.ts'
import { until } from '../helpers/wait.ts'

/** Worker ids that served the logged requests whose path starts with `prefix`. */
function workersThatServed(gw: RunningGateway, prefix: string): Set<unknown> {
  return new Set(gw.logs.filter((line) => line.msg === 'request' && String(line.path).startsWith(prefix)).map((line) => line.worker))
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  if (!(await until(check, ms, 50))) throw new Error(`${what}: not within ${ms}ms`)
}

t.test('two workers behind one port, sharing Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  let version = 1
  let reads = 0
  const upstream = await startUpstream((req, res) => {
    if (req.method === 'PATCH') version++
    if (req.method === 'GET') reads++
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ id: 1, version }))
  })
  t.teardown(() => upstream.close())
  const config = (unmatched: string) => `listen: { port: \${PORT} }
admin: { port: \${ADMIN_PORT}, token: s3cret }
upstream: { url: ${upstream.url} }
redis: { url: ${redis.url} }
workers: 2
unmatched: ${unmatched}
rateLimits:
  login: { key: ip, limit: 5/min }
routes:
  - { name: login, match: POST /login, rateLimit: login }
  - { name: lead, match: GET /leads/:id, cache: { ttl: 5m, tags: ["lead:{id}"] } }
  - { name: lead write, match: PATCH /leads/:id, invalidate: ["lead:{id}"] }
`
  const gw = await startGateway(config('forward'))
  t.teardown(() => gw.stop())
  await waitFor(() => gw.logs.filter((line) => line.msg === 'gateway listening').length === 2, 'both workers listening', 30_000)

  const statuses = []
  for (let i = 0; i < 8; i++) statuses.push((await httpRequest(`${gw.url}/login`, { method: 'POST', body: '{}' })).status)
  t.same(statuses, [200, 200, 200, 200, 200, 429, 429, 429], 'the limit of 5 is counted once across both workers')
  t.same(workersThatServed(gw, '/login'), new Set([1, 2]), 'both workers answered')

  t.equal(JSON.parse((await httpRequest(`${gw.url}/leads/1`)).body).version, 1)
  // The entry reaches Redis just after the answer: wait for it, or the next request may beat it there.
  const entriesInL2 = async () => (await run('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*c:*'])).stdout.trim() !== ''
  await waitFor(entriesInL2, 'the entry stored in Redis')
  for (let i = 0; i < 5; i++) t.equal(JSON.parse((await httpRequest(`${gw.url}/leads/1`)).body).version, 1)
  t.equal(reads, 1, 'one upstream read: the other worker found the entry in L2')
  t.equal((await httpRequest(`${gw.url}/leads/1`, { method: 'PATCH', body: '{}' })).status, 200)
  const after = []
  for (let i = 0; i < 6; i++) after.push(JSON.parse((await httpRequest(`${gw.url}/leads/1`)).body).version)
  t.same(after, [2, 2, 2, 2, 2, 2], 'no worker serves its old L1 entry after the write')

  const metrics = (await httpRequest(`${gw.adminUrl}/metrics`)).body
  const served = [...metrics.matchAll(/^gateway_requests_total\{[^}]*\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0)
  t.equal(served, 8 + 6 + 1 + 6, '/metrics counts the requests of both workers')

  gw.writeConfig(config('reject'))
  const reload = await httpRequest(`${gw.adminUrl}/reload`, { method: 'POST', headers: { authorization: 'Bearer s3cret' } })
  t.equal(reload.status, 200)
  await waitFor(() => gw.logs.filter((line) => line.msg === 'config reloaded').length === 2, 'both workers reloaded')
  const unmatched = []
  for (let i = 0; i < 4; i++) unmatched.push((await httpRequest(`${gw.url}/elsewhere`)).status)
  t.same(unmatched, [404, 404, 404, 404], 'every worker runs the new config')

  const victim = gw.logs.find((line) => line.msg === 'gateway listening' && line.worker === 1)!
  const listening = () => gw.logs.filter((line) => line.msg === 'gateway listening').length
  process.kill(victim.pid as number, 'SIGKILL')
  await gw.waitForLog((line) => line.msg === 'worker exited; starting another')
  await waitFor(() => listening() === 3, 'a new worker listening', 30_000)
  for (let i = 0; i < 4; i++) t.equal((await httpRequest(`${gw.url}/leads/1`)).status, 200, 'served after a worker died')

  t.equal(await gw.stop('SIGTERM'), 0, 'SIGTERM stops the primary and its workers, exit 0')
  t.equal(gw.logs.filter((line) => line.msg === 'stopped').length, 3, 'two workers and the primary said stopped')
})

t.test('more than one worker without Redis is a config error naming the key', async (t) => {
  const { writeFileSync, mkdtempSync } = await import('node:fs')
  const { join } = await import('node:path')
  const { tmpdir } = await import('node:os')
  const file = join(mkdtempSync(join(tmpdir(), 'workers-')), 'gateway.yaml')
  writeFileSync(file, 'upstream: { url: http://127.0.0.1:1 }\nworkers: 4\n')
  const result = await runCli(['--check', '--config', file])
  t.equal(result.code, 1)
  t.match(result.stderr, `${file}:2 workers: more than one worker shares rate limits and cache invalidation through Redis`)
})
