// A real redis-server per test file, on a free port, with no persistence; it can be killed and restarted
// on the same port to simulate an outage.
import { spawn, type ChildProcess } from 'node:child_process'
import { waitForPort } from './ports.ts'
import { refusingPort } from './upstreams.ts'

export interface RunningRedis {
  port: number
  url: string
  /** SIGKILL: an outage, not a shutdown. */
  kill(): Promise<void>
  /** Starts it again on the same port (empty, as after a crash without persistence). */
  restart(): Promise<void>
  stop(): Promise<void>
}

export async function startRedis(): Promise<RunningRedis> {
  const port = await refusingPort()
  let proc: ChildProcess | null = null
  const launch = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    await waitForPort(port, 10_000, 'redis-server')
  }
  const kill = async () => {
    const running = proc
    if (!running || running.exitCode !== null || running.signalCode !== null) return
    const gone = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGKILL')
    await gone
  }
  await launch()
  return { port, url: `redis://127.0.0.1:${port}`, kill, restart: launch, stop: kill }
}

