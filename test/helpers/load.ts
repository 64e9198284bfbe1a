// A load generator for fault tests: a fixed number of workers, each sending one request after another
// (on keep-alive sockets by default), until a duration passes, a request budget is spent or the test says
// stop. Every response is counted by a label (its status, or what `classify` makes of it) and every
// client-side failure by its error code, so a test can assert that nothing was lost: sent = answered + failed.
import { Agent, request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'

export interface LoadRequest { method?: string; path: string; headers?: OutgoingHttpHeaders; body?: string | Buffer }

export interface LoadResponse { status: number; headers: IncomingHttpHeaders; body: Buffer }

/** One request's story, handed to `onSample` (and kept in `samples` when asked). */
export interface LoadSample {
  /** 0-based, in the order requests were started. */
  seq: number
  worker: number
  request: LoadRequest
  /** performance.now() when the request was started, and how long it took to end either way. */
  startedAt: number
  ms: number
  /** classify(response) for a whole response; `error:<code>` for a request that failed or a body that was cut. */
  label: string
  /** Set whenever a status line arrived, even if the body was then cut. */
  response?: LoadResponse
  error?: NodeJS.ErrnoException
}

export interface LoadOptions {
  /** Origin, e.g. http://127.0.0.1:8080. */
  url: string
  concurrency: number
  /** Stop starting requests after this long (requests already sent still finish and are counted). */
  durationMs?: number
  /** Stop after this many requests were started. */
  requests?: number
  /** Polled before each request: true stops that worker. */
  stop?: () => boolean
  /** The request for sequence number `seq`; default GET /. */
  next?: (seq: number, worker: number) => LoadRequest
  /** The counting label of a whole response; default its status code. */
  classify?: (res: LoadResponse) => string
  /** Default: a keep-alive agent with one socket per worker, destroyed when the load ends. */
  agent?: Agent | false
  /** A request not finished after this long is destroyed and counted as error:timeout. Default 30 s. */
  timeoutMs?: number
  /** A worker whose request failed client-side waits this long before its next one (refused connections
   * come back at once; without a pause a stopped server turns the load into a busy loop). Default 0. */
  errorPauseMs?: number
  /** Keep every sample in the report (bodies included): for small runs only. */
  keepSamples?: boolean
  onSample?: (sample: LoadSample) => void
}

export interface LoadReport {
  sent: number
  /** Whole responses received. */
  answered: number
  /** Requests that ended without a whole response (connection refused or reset, body cut, timeout). */
  failed: number
  /** By label: "200", "502 upstream_unreachable", "error:ECONNREFUSED", … */
  counts: Record<string, number>
  /** Failures by error code. */
  errors: Record<string, number>
  maxMs: number
  /** Every request's duration in ms, in completion order. */
  latencies: number[]
  samples: LoadSample[]
  elapsedMs: number
}

export interface RunningLoad {
  /** The counts so far (the same object the final report is). */
  readonly report: LoadReport
  /** Ask every worker to stop after its current request; resolves with the final report. */
  stop(): Promise<LoadReport>
  /** Resolves with the report once every worker has stopped. */
  readonly done: Promise<LoadReport>
  /** Resolves once at least `n` requests have ended (answered or failed), or when the load ends. */
  ended(n: number): Promise<void>
}

export function startLoad(options: LoadOptions): RunningLoad {
  const {
    url, concurrency, durationMs, requests, classify = (res) => String(res.status),
    next = (): LoadRequest => ({ path: '/' }), timeoutMs = 30_000, keepSamples = false, onSample, errorPauseMs = 0,
  } = options
  const ownAgent = options.agent === undefined ? new Agent({ keepAlive: true, maxSockets: concurrency }) : undefined
  const agent = options.agent ?? ownAgent!
  const report: LoadReport = { sent: 0, answered: 0, failed: 0, counts: {}, errors: {}, maxMs: 0, latencies: [], samples: [], elapsedMs: 0 }
  const started = performance.now()
  const deadline = durationMs === undefined ? Infinity : started + durationMs
  let stopped = false
  const waiters: Array<{ n: number; resolve: () => void }> = []

  const shouldStop = () => stopped || performance.now() >= deadline || (requests !== undefined && report.sent >= requests) || (options.stop?.() ?? false)

  const record = (sample: LoadSample) => {
    report.counts[sample.label] = (report.counts[sample.label] ?? 0) + 1
    if (sample.error) {
      report.failed++
      const code = sample.error.code ?? sample.error.message
      report.errors[code] = (report.errors[code] ?? 0) + 1
    } else {
      report.answered++
    }
    report.maxMs = Math.max(report.maxMs, sample.ms)
    report.latencies.push(sample.ms)
    if (keepSamples) report.samples.push(sample)
    onSample?.(sample)
    const ended = report.answered + report.failed
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (ended >= waiters[i]!.n) waiters.splice(i, 1)[0]!.resolve()
    }
  }

  /** Resolves true when the request failed client-side. */
  const one = (seq: number, worker: number) => new Promise<boolean>((resolve) => {
    const spec = next(seq, worker)
    const startedAt = performance.now()
    let settled = false
    let timedOut: NodeJS.ErrnoException | undefined
    let response: LoadResponse | undefined
    const finish = (failure?: NodeJS.ErrnoException) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      const error = failure && (timedOut ?? failure)
      const label = error ? `error:${error.code ?? error.message}` : classify(response!)
      record({ seq, worker, request: spec, startedAt, ms: performance.now() - startedAt, label, ...(response ? { response } : {}), ...(error ? { error } : {}) })
      resolve(error !== undefined)
    }
    const req = request(`${url}${spec.path}`, { method: spec.method ?? 'GET', headers: spec.headers, agent }, (res) => {
      const chunks: Buffer[] = []
      response = { status: res.statusCode!, headers: res.headers, body: Buffer.alloc(0) }
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', () => { /* reported through 'close' with complete === false */ })
      res.on('close', () => {
        response!.body = Buffer.concat(chunks)
        if (res.complete) finish()
        else finish(Object.assign(new Error(`the body of a ${res.statusCode} response was cut`), { code: 'EBODYCUT' }))
      })
    })
    const timer = setTimeout(() => {
      timedOut = Object.assign(new Error(`not finished within ${timeoutMs}ms`), { code: 'timeout' })
      req.destroy(timedOut)
    }, timeoutMs)
    req.on('error', (err: NodeJS.ErrnoException) => { if (!response) finish(err) })
    req.end(spec.body)
  })

  const worker = async (id: number) => {
    while (!shouldStop()) {
      const seq = report.sent++
      if (await one(seq, id) && errorPauseMs) await new Promise((resolve) => setTimeout(resolve, errorPauseMs))
    }
  }
  const done = Promise.all(Array.from({ length: concurrency }, (_, id) => worker(id))).then(() => {
    report.elapsedMs = performance.now() - started
    ownAgent?.destroy()
    for (const waiter of waiters.splice(0)) waiter.resolve()
    return report
  })

  return {
    report,
    done,
    stop() {
      stopped = true
      return done
    },
    ended(n) {
      if (report.answered + report.failed >= n || stopped) return Promise.resolve()
      return new Promise((resolve) => {
        waiters.push({ n, resolve })
        void done.then(() => resolve())
      })
    },
  }
}

export function runLoad(options: LoadOptions): Promise<LoadReport> {
  return startLoad(options).done
}

/** "200×812, 429×40, error:ECONNREFUSED×3": a report's counts for assertion messages. */
export function describeCounts(report: Pick<LoadReport, 'counts'>): string {
  return Object.entries(report.counts).sort(([a], [b]) => a.localeCompare(b)).map(([label, n]) => `${label}×${n}`).join(', ') || '(nothing)'
}

/** Labels a problem+json answer "<status> <code>" and anything else by its status: counts then show the error kind. */
export function statusAndCode(res: LoadResponse): string {
  const type = String(res.headers['content-type'] ?? '')
  if (!type.startsWith('application/problem+json')) return String(res.status)
  try {
    return `${res.status} ${String((JSON.parse(res.body.toString()) as { code?: unknown }).code)}`
  } catch {
    return `${res.status} (unparsable problem)`
  }
}

/** The q-th quantile (0..1) of a list of numbers. */
export function quantile(values: readonly number[], q: number): number {
  if (!values.length) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}
