// Child processes of the benchmark: spawned (pinned to CPUs with taskset when it is there), their output
// written to log files in the run's temp dir so that nothing they print costs the load generator, and
// all stopped at the end, on error and on Ctrl-C. Also free ports, port waits and RSS sampling.
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process'
import { accessSync, constants, existsSync, openSync, readFileSync, readdirSync, closeSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { portIsOpen } from '../helpers/ports.ts'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface Running {
  name: string
  backend: boolean
  proc: ChildProcess
  pid: number
  /** stdout and stderr of the process. */
  logFile: string
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited: Promise<number | string | null>
  alive(): boolean
  stop(): Promise<void>
}

const running: Running[] = []

/** The full path of an executable found in PATH or the sbin directories (nginx, varnishd live there), else null. */
export function which(command: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const dir of dirs) {
    if (!dir) continue
    const file = join(dir, command)
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch { /* not here */ }
  }
  return null
}

/**
 * Where the load generator and the targets run. With taskset and at least two CPUs, the load generator
 * (this process, wrk, ab) gets CPU 0 and every target the others, so they do not take turns on a core.
 */
export interface Pinning {
  load: string | null
  targets: string | null
  /** For the workers comparison: CPUs 1..N when there are that many besides the load generator's, else all. */
  wide(workers: number): string | null
  note: string
}

export function choosePinning(enabled: boolean): Pinning {
  const n = cpus().length
  const taskset = which('taskset')
  const all = `0-${n - 1}`
  if (!enabled || !taskset || n < 2) {
    const why = !enabled ? 'pinning off (--no-pin)' : !taskset ? 'taskset not found' : 'only one CPU'
    return { load: null, targets: null, wide: () => null, note: `not pinned (${why}): load generator and targets share ${n} CPU(s)` }
  }
  const targets = n === 2 ? '1' : `1-${n - 1}`
  // Pin this process (every thread: autocannon runs here) to CPU 0; children started later inherit it.
  spawnSync(taskset, ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' })
  return {
    load: '0',
    targets,
    wide: (workers) => (n - 1 >= workers ? (workers === 1 ? '1' : `1-${workers}`) : all),
    note: `taskset: load generator on CPU 0, targets on CPU ${targets} (${n} CPUs)`,
  }
}

/** argv prefixed with taskset when cpus is set. */
export function pinned(cpus: string | null, command: string, args: string[]): [string, string[]] {
  return cpus ? ['taskset', ['-c', cpus, command, ...args]] : [command, args]
}

export interface SpawnOptions {
  cpus?: string | null
  /** Upstreams, Redis, the sink: stopped after the proxies in front of them. */
  backend?: boolean
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** An IPC channel (node children only). */
  ipc?: boolean
}

export function spawnLogged(name: string, logDir: string, command: string, args: string[], options: SpawnOptions = {}): Running {
  const logFile = join(logDir, `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}.log`)
  const fd = openSync(logFile, 'a')
  const stdio: StdioOptions = options.ipc ? ['ignore', fd, fd, 'ipc'] : ['ignore', fd, fd]
  const [cmd, argv] = pinned(options.cpus ?? null, command, args)
  const proc = spawn(cmd, argv, { stdio, env: { ...process.env, ...options.env }, cwd: options.cwd })
  closeSync(fd)
  const exited = new Promise<number | string | null>((resolve) => {
    proc.once('exit', (code, signal) => resolve(code ?? signal))
    proc.once('error', (err) => resolve(`spawn error: ${err.message}`))
  })
  const alive = () => proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined
  const entry: Running = {
    name, backend: options.backend ?? false, proc, pid: proc.pid ?? -1, logFile, exited, alive,
    async stop() {
      if (!alive()) return
      proc.kill('SIGTERM')
      const timer = setTimeout(() => { if (alive()) proc.kill('SIGKILL') }, 5000)
      await exited
      clearTimeout(timer)
    },
  }
  running.push(entry)
  return entry
}

/** Stops every process started here: the proxies first, then the upstreams, Redis and the sink. */
export async function stopAll(): Promise<void> {
  const list = running.splice(0)
  const stop = (entries: Running[]) => Promise.all(entries.map((entry) => entry.stop().catch(() => undefined)))
  await stop(list.filter((entry) => !entry.backend))
  await stop(list.filter((entry) => entry.backend))
}

/** Ctrl-C, SIGTERM or a crash: stop the children, then exit. */
export function stopOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping every process the benchmark started`)
      void stopAll().finally(() => process.exit(130))
    })
  }
  process.once('uncaughtException', (err) => {
    console.error(err)
    void stopAll().finally(() => process.exit(1))
  })
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

/** Resolves once 127.0.0.1:port accepts a connection; rejects if `proc` exits first or time runs out. */
export async function waitForPort(port: number, proc: Running, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!proc.alive()) throw new Error(`${proc.name} exited (${await proc.exited}) before listening on ${port}:\n${tail(proc.logFile)}`)
    if (await portIsOpen(port)) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${proc.name} did not listen on ${port} within ${timeoutMs} ms:\n${tail(proc.logFile)}`)
}

function statusKiB(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) : 0
  } catch {
    return 0
  }
}

/** The pid and all its descendants (cluster workers, nginx workers, varnish's child). */
export function processTree(pid: number): number[] {
  const out = [pid]
  for (let i = 0; i < out.length; i++) {
    const dir = `/proc/${out[i]}/task`
    if (!existsSync(dir)) continue
    for (const task of readdirSync(dir)) {
      try {
        for (const child of readFileSync(`${dir}/${task}/children`, 'utf8').split(/\s+/)) if (child) out.push(Number(child))
      } catch { /* gone */ }
    }
  }
  return out
}

/** RSS of a process tree in KiB (VmRSS summed over the root and its descendants). */
export function treeRssKiB(pid: number): number {
  return processTree(pid).reduce((total, p) => total + statusKiB(p), 0)
}

/** Clock ticks per second of /proc's CPU times (getconf CLK_TCK; 100 on Linux unless told otherwise). */
const TICKS_PER_S = (() => {
  const answer = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout)
  return answer > 0 ? answer : 100
})()

/**
 * CPU time (user + system) a process tree has used so far, in µs; null without /proc. Sampled around a run, it
 * gives the target's CPU per request: steadier than req/s on a shared VM, whose rounds differ by ±30%.
 */
export function treeCpuUs(pid: number): number | null {
  if (!existsSync(`/proc/${pid}/stat`)) return null
  let ticks = 0
  for (const p of processTree(pid)) {
    try {
      // Fields after the command (which may hold spaces, hence from the last ')'): utime and stime are 12 and 13.
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch { /* gone */ }
  }
  return (ticks / TICKS_PER_S) * 1e6
}

/** A set of CPUs' time as /proc/stat counts it, in ticks: all of it, and the part the hypervisor stole. */
export interface CpuTime { total: number; steal: number }

/**
 * The time of the CPUs in `list` ("1", "1-3", "0,2"; null: all of them) so far; null without /proc/stat.
 * Steal is time this VM's CPU was ready to run but the host ran another guest; on a shared host it comes and
 * goes from minute to minute, and a run that met more of it answers fewer requests for reasons not its own.
 */
export function cpuTime(list: string | null): CpuTime | null {
  let stat: string
  try {
    stat = readFileSync('/proc/stat', 'utf8')
  } catch {
    return null
  }
  const wanted = list === null ? null : cpuSet(list)
  let total = 0
  let steal = 0
  for (const line of stat.split('\n')) {
    const match = /^cpu(\d*) (.*)$/.exec(line)
    if (!match) continue
    // The aggregate line ("cpu") for all CPUs, else the numbered lines of the wanted ones.
    if (wanted === null ? match[1] !== '' : match[1] === '' || !wanted.has(Number(match[1]))) continue
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    const ticks = match[2]!.trim().split(/\s+/).slice(0, 8).map(Number)
    total += ticks.reduce((sum, x) => sum + x, 0)
    steal += ticks[7] ?? 0
  }
  return total > 0 ? { total, steal } : null
}

/** The share of the CPUs' time stolen between two readings, in percent. */
export function stealPercent(before: CpuTime | null, after: CpuTime | null): number | null {
  if (!before || !after || after.total <= before.total) return null
  return (100 * (after.steal - before.steal)) / (after.total - before.total)
}

function cpuSet(list: string): Set<number> {
  const set = new Set<number>()
  for (const part of list.split(',')) {
    const [from, to = from] = part.split('-').map(Number)
    for (let cpu = from!; cpu <= to!; cpu++) set.add(cpu)
  }
  return set
}

/** Samples the tree's RSS every `everyMs` until stopped; returns the peak in MiB. */
export function sampleRss(pid: number | undefined, everyMs = 200): () => number | null {
  if (!pid || pid < 0) return () => null
  let peak = treeRssKiB(pid)
  const timer = setInterval(() => { peak = Math.max(peak, treeRssKiB(pid)) }, everyMs)
  return () => {
    clearInterval(timer)
    peak = Math.max(peak, treeRssKiB(pid))
    return peak ? Math.round(peak / 1024) : null
  }
}
