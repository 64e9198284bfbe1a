// Starts a real gateway process (node gateway/main.ts) on free ports and lets a test talk to it,
// read its JSON log lines, signal it and rewrite its config file.
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const MAIN = join(ROOT, 'gateway', 'main.ts')

export interface RunningGateway {
  url: string
  adminUrl: string
  port: number
  adminPort: number
  configFile: string
  proc: ChildProcessByStdio<null, Readable, Readable>
  /** Every JSON line the gateway logged so far. */
  logs: Array<Record<string, unknown>>
  stderr: () => string
  /** Resolves with the first log line (past or future) the predicate accepts. */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>
  /** Rewrites the config file (YAML text) without signalling. */
  writeConfig(yaml: string): void
  /** Sends a signal and resolves with the exit code once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

/**
 * `yaml` is the config file's text. Unless it sets them, the proxy and admin listeners use port 0 and
 * the gateway reports the ports it got in its "gateway listening" log line.
 */
export async function startGateway(yaml: string, options: { env?: NodeJS.ProcessEnv } = {}): Promise<RunningGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-test-'))
  const configFile = join(dir, 'gateway.yaml')
  writeFileSync(configFile, yaml)
  const proc = spawn(process.execPath, [MAIN, '--config', configFile], {
    cwd: ROOT,
    env: { PORT: '0', ADMIN_PORT: '0', LOG_LEVEL: 'info', ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Array<Record<string, unknown>> = []
  const waiters = new Set<{ predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }>()
  let buffered = ''
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    let newline
    while ((newline = buffered.indexOf('\n')) !== -1) {
      const text = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      let line: Record<string, unknown>
      try { line = JSON.parse(text) } catch { line = { msg: text, notJson: true } }
      logs.push(line)
      for (const waiter of waiters) if (waiter.predicate(line)) { waiters.delete(waiter); waiter.resolve(line) }
    }
  })
  let stderr = ''
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))

  const waitForLog = (predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000) => {
    const seen = logs.find(predicate)
    if (seen) return Promise.resolve(seen)
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const waiter = { predicate, resolve: (line: Record<string, unknown>) => { clearTimeout(timer); resolve(line) } }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new Error(`no matching log line within ${timeoutMs}ms; stderr: ${stderr}; logs: ${JSON.stringify(logs.slice(-5))}`))
      }, timeoutMs)
      waiters.add(waiter)
      void exited.then(() => {
        if (!waiters.has(waiter)) return
        waiters.delete(waiter)
        clearTimeout(timer)
        reject(new Error(`gateway exited before logging the awaited line; stderr: ${stderr}`))
      })
    })
  }

  // Generous: on a loaded 2-core CI machine a cold start (type stripping, imports) can take seconds.
  const ready = await waitForLog((line) => line.msg === 'gateway listening', 30_000)
  const port = ready.port as number
  const adminPort = ready.adminPort as number
  return {
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    port,
    adminPort,
    configFile,
    proc,
    logs,
    stderr: () => stderr,
    waitForLog,
    writeConfig: (text) => writeFileSync(configFile, text),
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return exited
    },
  }
}

/** Runs the gateway CLI to completion (e.g. --check) and returns its exit code and output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    proc.once('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

/** A minimal config for a test: the given upstream, ports from the environment (0 in tests). */
export function configFor(upstreamUrl: string, extra = ''): string {
  return `listen: { port: \${PORT} }\nadmin: { port: \${ADMIN_PORT} }\nupstream: { url: ${upstreamUrl} }\n${extra}`
}
