// `npm run demo`: the demo API and a gateway with config/gateway.yaml in front of it, in one command.
// Spawned as the script does (node deploy/demo-upstream/demo.ts) on free ports, used as its printed
// curl lines suggest, then stopped with SIGTERM.
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { join } from 'node:path'
import { ROOT } from '../helpers/gateway.ts'
import { refusingPort } from '../helpers/upstreams.ts'
import { orTimeout } from '../helpers/wait.ts'

function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}


// Three distinct free ports (distinct even if the OS hands one out twice in a row).
const ports = new Set<number>()
while (ports.size < 3) ports.add(await refusingPort())
const [demoPort, port, adminPort] = [...ports] as [number, number, number]
const base = `http://127.0.0.1:${port}`

const env: NodeJS.ProcessEnv = { ...process.env, DEMO_PORT: String(demoPort), PORT: String(port), ADMIN_PORT: String(adminPort) }
for (const name of ['GATEWAY_CONFIG', 'UPSTREAM_URL', 'REDIS_URL', 'DEMO_LATENCY_MS']) delete env[name]
env.LOG_LEVEL = 'info'
const demo = spawn(process.execPath, [join(ROOT, 'deploy', 'demo-upstream', 'demo.ts')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
let stdout = ''
let stderr = ''
demo.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
demo.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
  demo.once('exit', (code, signal) => resolve({ code, signal }))
})
t.teardown(async () => {
  if (demo.exitCode === null && demo.signalCode === null) {
    demo.kill('SIGTERM')
    if (await orTimeout(exited, 5000) === 'timeout') demo.kill('SIGKILL')
  }
})

/** Resolves once the demo has printed its "Try:" block with the curl lines. */
const announced = new Promise<void>((resolve, reject) => {
  const check = () => { if (/Try:[\s\S]*curl -s "[^"]*\/api\/leads/.test(stdout)) resolve() }
  demo.stdout.on('data', check)
  void exited.then(({ code }) => reject(new Error(`demo exited (${code}) before announcing; stderr: ${stderr}; stdout: ${stdout}`)))
  setTimeout(() => reject(new Error(`demo did not announce within 15s; stderr: ${stderr}; stdout: ${stdout}`)), 15_000).unref()
})
announced.catch(() => {}) // each test awaits it and reports the failure; this only keeps it from being "unhandled"

t.test('the demo starts and prints the curl lines for its own ports', async (t) => {
  await announced
  t.match(stdout, `demo upstream on http://127.0.0.1:${demoPort}, gateway on ${base}, admin on http://127.0.0.1:${adminPort}`)
  t.match(stdout, `curl -s ${base}/auth/login -H 'content-type: application/json'`)
  t.match(stdout, `curl -s "${base}/api/leads?limit=3" -H "Authorization: Bearer $TOKEN"`)
  t.match(stdout, /"msg":"gateway listening"/, 'the gateway\'s own log passes through')
})

t.test('log in as alice through the gateway, then list her leads with the token', async (t) => {
  await announced
  // As the first curl line: a JSON body.
  const json = await fetch(`${base}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: 'demo' }),
  })
  t.equal(json.status, 200)
  t.match(await json.json(), { access_token: String, token_type: 'bearer' })
  // As the second: a form body (what curl -d sends).
  const form = await fetch(`${base}/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=alice&password=demo',
  })
  t.equal(form.status, 200)
  t.ok(form.headers.get('x-request-id'), 'answered through the gateway')
  const { access_token: token } = await form.json() as { access_token: string }

  const leads = await fetch(`${base}/api/leads?limit=3`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(leads.status, 200)
  t.equal(leads.headers.get('via'), '1.1 gateway')
  const body = await leads.json() as { items: Array<{ user_id: string }>; total: number }
  t.equal(body.items.length, 3)
  t.ok(body.total >= 3)
  t.ok(body.items.every((lead) => lead.user_id === 'alice'), 'every lead is alice\'s')

  t.equal((await fetch(`${base}/api/leads`)).status, 401, 'no token, no leads')
})

t.test('the admin port answers /healthz and /readyz', async (t) => {
  await announced
  const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })
  const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`)
  t.equal(ready.status, 200)
  t.match(await ready.json(), { status: 'ready', checks: { upstream: { ok: true, url: `http://127.0.0.1:${demoPort}` } } })
})

t.test('SIGTERM stops both the gateway and the demo upstream', async (t) => {
  await announced
  for (const p of [demoPort, port, adminPort]) t.equal(await tryConnect(p), 'connected', `port ${p} is open before`)
  demo.kill('SIGTERM')
  const result = await orTimeout(exited, 15_000)
  t.same(result, { code: 0, signal: null }, 'the demo exits with code 0')
  if (!demo.stdout.closed) await once(demo.stdout, 'close') // 'exit' can come before the last output is read
  t.match(stdout, /"msg":"stopped"/, 'the gateway drained and stopped')
  t.equal(await tryConnect(port), 'ECONNREFUSED', 'the gateway port is closed')
  t.equal(await tryConnect(adminPort), 'ECONNREFUSED', 'the admin port is closed')
  t.equal(await tryConnect(demoPort), 'ECONNREFUSED', 'the demo upstream port is closed')
})
