// Starting each kind of server the benchmark measures or needs, on 127.0.0.1 and free ports: the bench
// upstreams, the demo API, redis-server, gateway processes, nginx, Varnish and the Node baselines.
// A Lab starts each named target once, on first demand, and remembers whether it started, was skipped
// (its program is not installed) or failed.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT, freePort, spawnLogged, tail, waitForPort, which, type Pinning, type Running } from './procs.ts'
import { nginxConf } from './configs.ts'

export interface ConnStats { open: number; maxOpen: number; accepted: number }

export interface Started {
  url: string
  /** The process whose tree's RSS is reported. */
  pid?: number
  /** The gateway's admin listener. */
  adminUrl?: string
  note?: string
}

/** A target whose program is not installed: reported as skipped, never as a failure. */
export class Skip extends Error {}

export interface Env {
  dir: string
  pinning: Pinning
}

export type TargetStatus = { state: 'started'; note?: string } | { state: 'skipped'; reason: string } | { state: 'failed'; reason: string }

export interface TargetDef {
  label: string
  /** key: the target's name in the catalogue (names its log file). */
  start(lab: Lab, key: string): Promise<Started>
}

export class Lab {
  readonly env: Env
  readonly defs: Record<string, TargetDef>
  readonly status = new Map<string, TargetStatus>()
  private readonly started = new Map<string, Promise<Started>>()

  constructor(env: Env, defs: Record<string, TargetDef>) {
    this.env = env
    this.defs = defs
  }

  /** A bench upstream target (instant-upstream.ts). */
  async upstream(key: string): Promise<Upstream> {
    const started = await this.get(key)
    if (!('listener' in started)) throw new Error(`${key} is not a bench upstream`)
    return started as Upstream
  }

  /** Starts the target (and whatever it needs) once; rejects with Skip or the start error. */
  get(key: string): Promise<Started> {
    let pending = this.started.get(key)
    if (!pending) {
      const def = this.defs[key]
      if (!def) throw new Error(`no target ${key}`)
      pending = startOnFreePorts(def, this, key).then((started) => {
        this.status.set(key, { state: 'started', note: started.note })
        return started
      }, (err: unknown) => {
        const reason = err instanceof Error ? err.message : String(err)
        this.status.set(key, err instanceof Skip ? { state: 'skipped', reason } : { state: 'failed', reason })
        throw err
      })
      pending.catch(() => undefined)
      this.started.set(key, pending)
    }
    return pending
  }
}

/**
 * Targets start side by side, and a port freePort() found free is only free until something binds it: another
 * target's listen(0) can take it first, and ours then exits with EADDRINUSE. Such a start is tried again on
 * new ports (twice at most); any other failure is the target's own.
 */
async function startOnFreePorts(def: TargetDef, lab: Lab, key: string): Promise<Started> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await def.start(lab, key)
    } catch (err) {
      if (attempt === 3 || !/EADDRINUSE|Address already in use/.test(err instanceof Error ? err.message : String(err))) throw err
    }
  }
}

/** A Node script that listens on PORT (every bench helper does). */
export async function startNodeScript(env: Env, name: string, script: string, vars: NodeJS.ProcessEnv = {}, options: { ipc?: boolean; cpus?: string | null; backend?: boolean } = {}): Promise<Started & { proc: Running }> {
  const port = await freePort()
  const cpus = options.cpus === undefined ? env.pinning.targets : options.cpus
  const proc = spawnLogged(name, env.dir, process.execPath, [join(ROOT, script)], { cpus, env: { PORT: String(port), ...vars }, cwd: ROOT, ipc: options.ipc, backend: options.backend })
  await waitForPort(port, proc)
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid, proc }
}

/** A bench upstream: one listener per client, so that each proxy's connections are counted apart. */
export interface Upstream extends Started {
  /** The listener reserved for `client` (opened on first use). */
  listener(client: string): Promise<{ url: string; stats(reset: boolean): Promise<ConnStats | null> }>
}

/** test/bench/instant-upstream.ts, with a listener per client and connection counts over IPC. */
export async function startInstantUpstream(env: Env, name: string, delayMs = 0): Promise<Upstream> {
  const started = await startNodeScript(env, name, 'test/bench/instant-upstream.ts', { DELAY_MS: String(delayMs) }, { ipc: true, backend: true })
  const child = started.proc.proc
  let nextId = 0
  const waiting = new Map<number, (reply: unknown) => void>()
  child.on('message', (reply: { id?: number }) => {
    const resolve = reply.id === undefined ? undefined : waiting.get(reply.id)
    if (resolve) resolve(reply)
  })
  const ask = <T>(message: Record<string, unknown>): Promise<T | null> => new Promise((resolve) => {
    if (!started.proc.alive() || !child.connected) return resolve(null)
    const id = ++nextId
    const timer = setTimeout(() => { waiting.delete(id); resolve(null) }, 5000)
    waiting.set(id, (reply) => {
      clearTimeout(timer)
      waiting.delete(id)
      resolve(reply as T)
    })
    child.send({ ...message, id })
  })
  const listeners = new Map<string, Promise<{ url: string; stats(reset: boolean): Promise<ConnStats | null> }>>()
  const listener = (client: string) => {
    let pending = listeners.get(client)
    if (!pending) {
      pending = ask<{ port: number }>({ type: 'listen' }).then((reply) => {
        if (!reply) throw new Error(`${name} opened no listener for ${client}`)
        const stats = async (reset: boolean) => {
          const counts = await ask<ConnStats>({ type: 'stats', port: reply.port, reset })
          return counts && { open: counts.open, maxOpen: counts.maxOpen, accepted: counts.accepted }
        }
        return { url: `http://127.0.0.1:${reply.port}`, stats }
      })
      listeners.set(client, pending)
    }
    return pending
  }
  return { url: started.url, pid: started.pid, listener }
}

/** deploy/demo-upstream/server.ts: the SalesFlow-like API (JWTs, leads, dashboard). */
export async function startDemoUpstream(env: Env, latencyMs: number): Promise<Started> {
  const port = await freePort()
  const proc = spawnLogged('demo-upstream', env.dir, process.execPath, [join(ROOT, 'deploy/demo-upstream/server.ts')], {
    cpus: env.pinning.targets, backend: true, cwd: ROOT, env: { DEMO_PORT: String(port), DEMO_HOST: '127.0.0.1', DEMO_LATENCY_MS: String(latencyMs) },
  })
  await waitForPort(port, proc)
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid }
}

export async function startRedis(env: Env): Promise<Started> {
  const bin = which('redis-server')
  if (!bin) throw new Skip('redis-server not installed')
  const port = await freePort()
  const proc = spawnLogged('redis', env.dir, bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { cpus: env.pinning.targets, backend: true })
  await waitForPort(port, proc)
  return { url: `redis://127.0.0.1:${port}`, pid: proc.pid }
}

/**
 * A real gateway process: `node gateway/main.ts --config <file>`. The YAML may use ${PORT} and
 * ${ADMIN_PORT}, which are set to free ports. Ready once both listeners accept connections and every
 * worker (`workers: N`) has logged "gateway listening".
 */
export async function startGateway(env: Env, name: string, yaml: string, options: { cpus?: string | null; vars?: NodeJS.ProcessEnv; workers?: number } = {}): Promise<Started> {
  const file = join(env.dir, `${name}.yaml`)
  writeFileSync(file, yaml)
  const [port, adminPort] = [await freePort(), await freePort()]
  const proc = spawnLogged(name, env.dir, process.execPath, [join(ROOT, 'gateway/main.ts'), '--config', file], {
    cpus: options.cpus === undefined ? env.pinning.targets : options.cpus,
    cwd: ROOT,
    env: { LOG_LEVEL: 'info', ...options.vars, PORT: String(port), ADMIN_PORT: String(adminPort) },
  })
  await waitForPort(port, proc, 60_000)
  await waitForPort(adminPort, proc, 10_000)
  await waitForLines(proc, '"msg":"gateway listening"', options.workers ?? 1, 60_000)
  return { url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}`, pid: proc.pid }
}

/** Resolves once the process's log holds `count` lines containing `text`. */
async function waitForLines(proc: Running, text: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const seen = readFileSync(proc.logFile, 'utf8').split(text).length - 1
    if (seen >= count) return
    if (!proc.alive()) throw new Error(`${proc.name} exited (${await proc.exited}):\n${tail(proc.logFile)}`)
    if (Date.now() > deadline) throw new Error(`${proc.name}: ${seen} of ${count} "${text}" lines within ${timeoutMs} ms:\n${tail(proc.logFile)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** nginx in the foreground with everything (pid, logs, temp and cache paths) in its own directory. */
export async function startNginx(env: Env, name: string, mode: 'proxy' | 'cache', upstreamUrl: string): Promise<Started> {
  const bin = which('nginx')
  if (!bin) throw new Skip('nginx not installed')
  const dir = join(env.dir, name)
  mkdirSync(dir, { recursive: true })
  chmodSync(dir, 0o777) // the workers run as nobody when the master is root
  const port = await freePort()
  const conf = join(dir, 'nginx.conf')
  writeFileSync(conf, nginxConf({ dir, port, upstream: new URL(upstreamUrl).host, cache: mode === 'cache' }))
  const proc = spawnLogged(name, env.dir, bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf, '-g', 'daemon off;'], { cpus: env.pinning.targets })
  try {
    await waitForPort(port, proc, 10_000)
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${tail(join(dir, 'error.log'))}`)
  }
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid }
}

/**
 * varnishd in the foreground (-F) with the built-in VCL in front of one backend, malloc storage and its
 * working directory (-n) in the run's temp dir. As root it drops to its own users (varnish, vcache),
 * which is why the temp dir is world-readable.
 */
export async function startVarnish(env: Env, upstreamUrl: string): Promise<Started> {
  const bin = which('varnishd')
  if (!bin) throw new Skip('varnishd not installed')
  const port = await freePort()
  const workdir = join(env.dir, 'varnish')
  const proc = spawnLogged('varnish', env.dir, bin, [
    '-F', '-a', `127.0.0.1:${port}`, '-b', new URL(upstreamUrl).host, '-n', workdir, '-s', 'malloc,256m', '-t', '600',
  ], { cpus: env.pinning.targets })
  await waitForPort(port, proc, 30_000)
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid }
}
