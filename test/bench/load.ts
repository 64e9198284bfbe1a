// The load generators: autocannon (in this process, from npm), wrk (a child process, when installed)
// and ab for the original plan's check. Each run gives one Sample; errors are non-2xx answers plus
// socket errors and timeouts.
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { pinned, which } from './procs.ts'

/** One request of a mix (method, path with query, headers, body). */
export interface MixRequest { method: string; path: string; headers: Record<string, string>; body?: string }

export interface LoadSpec {
  /** Origin plus path; with a mix, only the origin is used. */
  url: string
  connections: number
  seconds: number
  headers?: Record<string, string>
  /** Cycled through in order, across all connections, instead of GET url. */
  mix?: readonly MixRequest[]
}

export interface Sample {
  rps: number
  p50: number
  p99: number
  /** non2xx + socketErrors */
  errors: number
  non2xx: number
  /** connect/read/write errors and timeouts */
  socketErrors: number
  requests: number
}

export interface LoadGenerator {
  name: string
  /** Milliseconds with this precision in p50 and p99. */
  resolution: string
  run(spec: LoadSpec): Promise<Sample>
}

const TIMEOUT_S = 10

export function autocannonGenerator(): LoadGenerator {
  return {
    name: `autocannon (in process)`,
    resolution: '1 ms',
    async run(spec) {
      const options: autocannon.Options = {
        url: spec.url, connections: spec.connections, duration: spec.seconds, pipelining: 1, timeout: TIMEOUT_S, headers: spec.headers,
      }
      if (spec.mix) {
        const mix = spec.mix
        let next = 0
        options.requests = [{
          setupRequest: (request) => {
            const item = mix[next++ % mix.length]!
            return { ...request, ...item, headers: { ...item.headers } } as autocannon.Request
          },
        }]
      }
      const result = await autocannon(options)
      const requests = result.requests.total
      const socketErrors = result.errors + result.timeouts
      return {
        rps: requests / Math.max(0.001, result.duration),
        p50: result.latency.p50,
        p99: result.latency.p99,
        errors: result.non2xx + socketErrors,
        non2xx: result.non2xx,
        socketErrors,
        requests,
      }
    },
  }
}

/** wrk's "1.23ms", "850.00us", "2.01s" → milliseconds. */
export function wrkMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim())
  if (!match) return NaN
  const value = Number(match[1])
  return match[2] === 'us' ? value / 1000 : match[2] === 'ms' ? value : match[2] === 's' ? value * 1000 : value * 60_000
}

export function parseWrk(output: string): Sample {
  const num = (re: RegExp) => Number(re.exec(output)?.[1] ?? 0)
  const requests = num(/(\d+) requests in/)
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/)
  const rps = num(/Requests\/sec:\s+([\d.]+)/)
  if (!/Requests\/sec:/.test(output)) throw new Error(`wrk printed no summary:\n${output}`)
  return {
    rps,
    p50: wrkMs(/^\s+50%\s+(\S+)/m.exec(output)?.[1] ?? ''),
    p99: wrkMs(/^\s+99%\s+(\S+)/m.exec(output)?.[1] ?? ''),
    errors: non2xx + socketErrors,
    non2xx,
    socketErrors,
    requests,
  }
}

function luaString(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`
}

/** A wrk script cycling through the mix, each thread starting at its own offset. */
export function wrkMixScript(mix: readonly MixRequest[]): string {
  const entries = mix.map((r) => {
    const headers = Object.entries(r.headers).map(([k, v]) => `[${luaString(k)}] = ${luaString(v)}`).join(', ')
    return `  {${luaString(r.method)}, ${luaString(r.path)}, {${headers}}, ${r.body === undefined ? 'nil' : luaString(r.body)}}`
  })
  return `-- written by test/bench/load.ts: the request mix, cycled
local mix = {
${entries.join(',\n')}
}
local formatted = {}
local i = 0
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("start", threads * 7) end
init = function(args)
  for k, r in ipairs(mix) do formatted[k] = wrk.format(r[1], r[2], r[3], r[4]) end
  i = (start or 0) % #formatted
end
request = function()
  i = i % #formatted + 1
  return formatted[i]
end
`
}

export function wrkGenerator(bin: string, options: { cpus: string | null; dir: string }): LoadGenerator {
  let scripts = 0
  return {
    name: `wrk (${bin})`,
    resolution: '0.01 ms',
    run(spec) {
      // One thread when it has one CPU to itself; otherwise two, as many as there are cores here.
      const threads = Math.min(spec.connections, options.cpus ? 1 : 2)
      const args = ['-t', String(threads), '-c', String(spec.connections), '-d', `${Math.max(1, Math.round(spec.seconds))}s`, '--latency', '--timeout', `${TIMEOUT_S}s`]
      for (const [name, value] of Object.entries(spec.headers ?? {})) args.push('-H', `${name}: ${value}`)
      if (spec.mix) {
        const script = join(options.dir, `mix-${++scripts}.lua`)
        writeFileSync(script, wrkMixScript(spec.mix))
        args.push('-s', script)
      }
      args.push(spec.mix ? new URL(spec.url).origin : spec.url)
      return runCommand(bin, args, options.cpus).then(parseWrk)
    },
  }
}

function runCommand(bin: string, args: string[], cpus: string | null): Promise<string> {
  const [command, argv] = pinned(cpus, bin, args)
  return new Promise((resolve, reject) => {
    const proc = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    proc.stderr.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    proc.once('error', reject)
    // 'close', not 'exit': the output may still be arriving when the process has exited.
    proc.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${bin} exited with ${code}:\n${out}`))))
  })
}

/** `--wrk`, `--autocannon`, or wrk when it is installed. */
export function chooseGenerator(choice: 'auto' | 'wrk' | 'autocannon', options: { cpus: string | null; dir: string }): { generator: LoadGenerator; note: string } {
  const wrk = which('wrk')
  if (choice === 'wrk' && !wrk) throw new Error('--wrk: wrk is not installed (apt-get install wrk)')
  if (choice !== 'autocannon' && wrk) return { generator: wrkGenerator(wrk, options), note: `load generator: wrk${choice === 'auto' ? ' (installed, chosen automatically; --autocannon for autocannon)' : ''}` }
  return { generator: autocannonGenerator(), note: `load generator: autocannon${choice === 'auto' ? ' (wrk not installed)' : ''}` }
}

export interface AbResult {
  requests: number
  concurrency: number
  /** "Time per request (mean)": concurrency × wall time / requests, the time one client waits. */
  meanMs: number
  /** "Time per request (mean, across all concurrent requests)": wall time / requests. */
  meanAcrossMs: number
  rps: number
  failed: number
  non2xx: number
  p50: number
  p99: number
}

export function parseAb(output: string): AbResult {
  const num = (re: RegExp) => Number(re.exec(output)?.[1] ?? NaN)
  return {
    requests: num(/Complete requests:\s+(\d+)/),
    concurrency: num(/Concurrency Level:\s+(\d+)/),
    meanMs: num(/Time per request:\s+([\d.]+) \[ms\] \(mean\)/),
    meanAcrossMs: num(/Time per request:\s+([\d.]+) \[ms\] \(mean, across/),
    rps: num(/Requests per second:\s+([\d.]+)/),
    failed: num(/Failed requests:\s+(\d+)/),
    non2xx: /Non-2xx responses:\s+(\d+)/.test(output) ? num(/Non-2xx responses:\s+(\d+)/) : 0,
    p50: num(/^\s+50%\s+(\d+)/m),
    p99: num(/^\s+99%\s+(\d+)/m),
  }
}

/** `ab -n N -c C [-H …] url` (no keep-alive, as the original plan ran it). */
export async function runAb(bin: string, url: string, o: { requests: number; concurrency: number; headers?: Record<string, string>; cpus: string | null }): Promise<AbResult> {
  const args = ['-q', '-n', String(o.requests), '-c', String(o.concurrency), '-s', String(TIMEOUT_S)]
  for (const [name, value] of Object.entries(o.headers ?? {})) args.push('-H', `${name}: ${value}`)
  args.push(url)
  return parseAb(await runCommand(bin, args, o.cpus))
}
