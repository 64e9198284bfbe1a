// `npm run demo`: the demo API on DEMO_PORT (8000) and the gateway on PORT (8080, admin on ADMIN_PORT 9090)
// in front of it, with config/gateway.yaml. Ctrl-C or SIGTERM stops both.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startDemoUpstream } from './app.ts'

const demoPort = Number(process.env.DEMO_PORT || 8000)
const port = process.env.PORT || '8080'
const adminPort = process.env.ADMIN_PORT || '9090'

const upstream = await startDemoUpstream({ port: demoPort, host: '127.0.0.1', latencyMs: Number(process.env.DEMO_LATENCY_MS || 0) })
const mainScript = fileURLToPath(new URL('../../gateway/main.ts', import.meta.url))
const configFile = fileURLToPath(new URL('../../config/gateway.yaml', import.meta.url))
const gateway = spawn(process.execPath, [mainScript, '--config', configFile], {
  env: { ...process.env, UPSTREAM_URL: upstream.url, PORT: port, ADMIN_PORT: adminPort },
  stdio: ['ignore', 'pipe', 'inherit'],
})

let announced = false
gateway.stdout.on('data', (chunk: Buffer) => {
  process.stdout.write(chunk)
  if (announced || !chunk.toString().includes('"gateway listening"')) return
  announced = true
  const base = `http://127.0.0.1:${port}`
  console.log(`
demo upstream on ${upstream.url}, gateway on ${base}, admin on http://127.0.0.1:${adminPort}
Try:
  curl -s ${base}/auth/login -H 'content-type: application/json' -d '{"username":"alice","password":"demo"}'
  TOKEN=$(curl -s ${base}/auth/login -d 'username=alice&password=demo' | sed -E 's/.*"access_token": ?"([^"]+)".*/\\1/')
  curl -s "${base}/api/leads?limit=3" -H "Authorization: Bearer $TOKEN"
`)
})

const stop = () => gateway.kill('SIGTERM')
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
gateway.on('exit', async (code) => {
  await upstream.close()
  process.exit(code ?? 0)
})
