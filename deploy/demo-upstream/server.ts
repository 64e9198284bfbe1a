// CLI entry for the demo upstream; all behaviour lives in app.ts.
import { DEFAULT_JWT_SECRET, startDemoUpstream } from './app.ts'

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0) {
    console.error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`)
    process.exit(1)
  }
  return value
}

const upstream = await startDemoUpstream({
  port: intEnv('DEMO_PORT', 8000),
  host: process.env.DEMO_HOST || '0.0.0.0',
  jwtSecret: process.env.JWT_SECRET || DEFAULT_JWT_SECRET,
  latencyMs: intEnv('DEMO_LATENCY_MS', 0),
})
console.log(`demo upstream listening on ${upstream.url}`)

let stopping = false
const stop = (): void => {
  // A second signal while closing should not start another close.
  if (stopping) return
  stopping = true
  upstream.close().then(() => process.exit(0), () => process.exit(1))
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
