// A throwaway Postgres for db:check and the tests: Debian's server binaries (apt package `postgresql`),
// initdb into a temp dir, the server on a free 127.0.0.1 port with its unix socket in that dir; stop()
// shuts it down and deletes the dir. Durability is switched off: nothing here outlives the process.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'

const run = promisify(execFile)

export interface TempCluster {
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust auth, superuser). */
  readonly url: string
  readonly port: number
  readonly dir: string
  /** Fast shutdown, then the data dir is deleted. Safe to call twice. */
  stop(): Promise<void>
}

/** The newest /usr/lib/postgresql/<major>/bin with initdb in it (PG_BIN overrides), or undefined. */
export function findPostgresBin(): string | undefined {
  const override = process.env.PG_BIN
  if (override) return existsSync(join(override, 'initdb')) ? override : undefined
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const majors = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
  for (const major of majors) {
    const bin = join(root, major, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin
  }
  return undefined
}

// initdb and postgres refuse to run as root. As root we run them as `nobody` through setpriv, which
// execs (no fork, unlike runuser/su), so the pid we hold is the postmaster itself and a signal reaches it.
async function unprivileged(dir: string): Promise<(cmd: string, args: string[]) => [string, string[]]> {
  if (process.getuid?.() !== 0) return (cmd, args) => [cmd, args]
  const uid = Number((await run('id', ['-u', 'nobody'])).stdout.trim())
  const gid = Number((await run('id', ['-g', 'nobody'])).stdout.trim())
  chownSync(dir, uid, gid)
  return (cmd, args) => ['setpriv', ['--reuid', String(uid), '--regid', String(gid), '--clear-groups', '--', cmd, ...args]]
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

export async function startTempCluster(options: { bin?: string } = {}): Promise<TempCluster> {
  const bin = options.bin ?? findPostgresBin()
  if (!bin) {
    throw new Error(process.env.PG_BIN
      ? `PG_BIN=${process.env.PG_BIN} has no initdb in it`
      : 'no Postgres server binaries in /usr/lib/postgresql/*/bin: apt-get install postgresql, or set PG_BIN')
  }
  // Under /tmp rather than a home dir, so `nobody` can reach it.
  const dir = mkdtempSync(join(tmpdir(), 'salesflow-pg-'))
  const remove = (): void => rmSync(dir, { recursive: true, force: true })
  let proc: ChildProcess | undefined
  try {
    const as = await unprivileged(dir)
    const data = join(dir, 'data')
    const [initCmd, initArgs] = as(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-sync'])
    await run(initCmd, initArgs)
    const port = await freePort()
    const logFile = join(dir, 'server.log')
    const log = openSync(logFile, 'a')
    const [cmd, args] = as(join(bin, 'postgres'), [
      '-D', data, '-p', String(port), '-k', dir,
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    ])
    // Logs go to a file: an unread pipe would eventually block the server.
    proc = spawn(cmd, args, { stdio: ['ignore', log, log] })
    closeSync(log)
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`
    await waitUntilReady(url, proc, logFile, 20_000)
    const started = proc
    let stopping: Promise<void> | undefined
    const stop = (): Promise<void> => (stopping ??= shutdown(started).finally(remove))
    return { url, port, dir, stop }
  } catch (err) {
    if (proc) await shutdown(proc)
    remove()
    throw err
  }
}

async function waitUntilReady(url: string, proc: ChildProcess, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`postgres exited during start-up:\n${readFileSync(logFile, 'utf8').slice(-2000)}`)
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
    try {
      await client.connect()
      await client.query('SELECT 1')
      return
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within ${timeoutMs}ms: ${String(err)}`)
    } finally {
      await client.end().catch(() => {})
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

// SIGINT is Postgres' "fast" shutdown: roll back sessions, checkpoint, exit. SIGKILL if that hangs.
async function shutdown(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  proc.kill('SIGINT')
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}
