// A real Redis Sentinel setup for a test file: a master, optionally a replica of it, and one sentinel
// (redis-server --sentinel, with its config file in a temp dir; a sentinel rewrites that file) that
// monitors the master with quorum 1. All on loopback, free ports, no persistence.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { refusingPort } from './upstreams.ts'
import { stopProcess, type ClusterNode } from './redis-cluster.ts'
import { run } from './run.ts'
import { until } from './wait.ts'
import { waitForPort } from './ports.ts'

export interface RunningSentinel {
  /** The master group name the sentinel monitors. */
  name: string
  sentinels: ClusterNode[]
  /** Port of the server the sentinel currently names as master. */
  masterPort(): Promise<number>
  /** Ports of every data server (master first, then the replica if any). */
  dataPorts: number[]
  /** SENTINEL FAILOVER, then waits until the sentinel names the replica as master (needs replica: true). */
  failover(timeoutMs?: number): Promise<number>
  stop(): Promise<void>
}

export async function startRedisSentinel(options: { name?: string; replica?: boolean } = {}): Promise<RunningSentinel> {
  const name = options.name ?? 'gateway-master'
  const dir = mkdtempSync(join(tmpdir(), 'redis-sentinel-'))
  const procs: ChildProcess[] = []
  const stop = async () => {
    await Promise.all(procs.map(stopProcess))
    rmSync(dir, { recursive: true, force: true })
  }
  const server = (port: number, extra: string[] = []) => {
    procs.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], { stdio: 'ignore' }))
    return waitForPort(port, 10_000)
  }
  try {
    const masterPort = await refusingPort()
    await server(masterPort)
    const dataPorts = [masterPort]
    if (options.replica) {
      const replicaPort = await refusingPort()
      await server(replicaPort, ['--replicaof', '127.0.0.1', String(masterPort)])
      dataPorts.push(replicaPort)
    }
    const sentinelPort = await refusingPort()
    const configFile = join(dir, 'sentinel.conf')
    writeFileSync(configFile, [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      '',
    ].join('\n'))
    procs.push(spawn('redis-server', [configFile, '--sentinel'], { stdio: 'ignore' }))
    await waitForPort(sentinelPort, 10_000)
    const sentinel = (args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(sentinelPort), ...args]).then((r) => r.stdout.trim())
    const masterPortNow = async () => Number((await sentinel(['sentinel', 'get-master-addr-by-name', name])).split('\n')[1])
    await waitUntil(async () => await masterPortNow() === masterPort, 10_000, 'the sentinel to name the master')
    return {
      name,
      sentinels: [{ host: '127.0.0.1', port: sentinelPort }],
      dataPorts,
      masterPort: masterPortNow,
      async failover(timeoutMs = 30_000) {
        const deadline = Date.now() + timeoutMs
        // The sentinel learns of replicas from the master's INFO, which it asks for every 10 s.
        await waitUntil(async () => /\bname\b/.test(await sentinel(['sentinel', 'replicas', name])), deadline - Date.now(), 'the sentinel to see the replica')
        const before = await masterPortNow()
        // FAILOVER refuses while another is in progress; ask again until it is accepted.
        await waitUntil(async () => (await sentinel(['sentinel', 'failover', name])) === 'OK', deadline - Date.now(), 'SENTINEL FAILOVER to be accepted')
        await waitUntil(async () => await masterPortNow() !== before, deadline - Date.now(), 'the replica to be promoted')
        return masterPortNow()
      },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  if (!(await until(check, timeoutMs, 100))) throw new Error(`timed out waiting for ${what}`)
}
