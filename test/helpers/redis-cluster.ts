// A real Redis Cluster for a test file: N masters (redis-server --cluster-enabled yes) on loopback, free
// ports, a temp dir for their nodes.conf files, no persistence, joined by `redis-cli --cluster create`.
// Resolves once every node reports cluster_state:ok and agrees on all 16384 slots.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { waitForPort } from './ports.ts'
import { run } from './run.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { refusingPort } from './upstreams.ts'

export interface ClusterNode { host: string; port: number }

export interface RunningCluster {
  nodes: ClusterNode[]
  /** "127.0.0.1:port" per node, as the gateway's redis.cluster takes them. */
  addresses: string[]
  /** Runs a redis-cli command against one node (-c follows MOVED) and returns its stdout. */
  cli(args: string[], node?: number): Promise<string>
  /** SIGKILL every node: the whole cluster is gone (an outage, not a shutdown). */
  kill(): Promise<void>
  /** Starts every node again on its ports; they find each other through their nodes.conf (data is gone). */
  restart(): Promise<void>
  stop(): Promise<void>
}

export async function startRedisCluster(masters = 3): Promise<RunningCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'))
  const nodes: ClusterNode[] = []
  let procs: ChildProcess[] = []
  const used = new Set<number>()
  const ports: Array<{ port: number; busPort: number }> = []
  // The cluster bus needs a second port per node; Redis 7's cluster-port lets both be free ones we pick.
  const freePort = async () => {
    for (;;) {
      const port = await refusingPort()
      if (!used.has(port)) { used.add(port); return port }
    }
  }
  const stop = async () => {
    await Promise.all(procs.map(stopProcess))
    rmSync(dir, { recursive: true, force: true })
  }
  const launch = async () => {
    procs = ports.map(({ port, busPort }) => spawn('redis-server', [
      '--port', String(port), '--cluster-port', String(busPort), '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000',
      '--dir', dir, '--save', '', '--appendonly', 'no',
    ], { stdio: 'ignore' }))
    await Promise.all(nodes.map((node) => waitForPort(node.port, 10_000)))
  }
  try {
    for (let i = 0; i < masters; i++) {
      ports.push({ port: await freePort(), busPort: await freePort() })
      nodes.push({ host: '127.0.0.1', port: ports[i]!.port })
    }
    await launch()
    const addresses = nodes.map((node) => `${node.host}:${node.port}`)
    const created = await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'])
    if (created.code !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`)
    await waitForClusterOk(nodes, 20_000)
    return {
      nodes,
      addresses,
      async cli(args, node = 0) {
        const result = await run('redis-cli', ['-c', '-h', nodes[node]!.host, '-p', String(nodes[node]!.port), ...args])
        return result.stdout.trim()
      },
      kill: () => Promise.all(procs.map(stopProcess)).then(() => {}),
      async restart() {
        await launch()
        await waitForClusterOk(nodes, 20_000)
      },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

async function waitForClusterOk(nodes: ClusterNode[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    const infos = await Promise.all(nodes.map((node) => run('redis-cli', ['-h', node.host, '-p', String(node.port), 'cluster', 'info'])))
    last = infos.map((info) => info.stdout).join('\n')
    const ok = infos.every(({ stdout }) => /cluster_state:ok/.test(stdout) && /cluster_slots_ok:16384/.test(stdout)
      && new RegExp(`cluster_known_nodes:${nodes.length}\\b`).test(stdout))
    if (ok) return
    await sleep(100)
  }
  throw new Error(`the cluster did not reach cluster_state:ok within ${timeoutMs}ms:\n${last}`)
}


/** SIGKILL and wait for the exit: no persistence, nothing to flush. */
export async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const gone = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGKILL')
  await gone
}
