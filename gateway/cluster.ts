// Many processes, one port (node:cluster, `workers: N`). The primary only supervises: it forks workers
// that each run the whole gateway and share Redis as replicas do, starts a new one when one dies, passes
// signals on, and answers the two questions no single worker can: metrics summed over all workers, and a
// reload that must reach every worker. Nothing of the request path runs in the primary.
import cluster from 'node:cluster'
import { AggregatorRegistry, type Registry } from 'prom-client'
import type { Plan } from './config/compile.ts'
import { loadPlan } from './config/load.ts'
import { createLogger } from './observability/logs.ts'

/** A worker that dies is replaced after this pause, so a crash loop cannot spin the CPU. */
const RESTART_DELAY_MS = 1000
/** Past the drain timeout, workers that still run are killed; this much later. */
const KILL_MARGIN_MS = 5000

type Message =
  | { gateway: 'reload-others' }
  | { gateway: 'metrics'; id: number }
  | { gateway: 'metrics-result'; id: number; text?: string; error?: string }

export function runPrimary(plan: Plan, file: string | null): void {
  const logger = createLogger(process.env.LOG_LEVEL ?? plan.config.log.level)
  const aggregator = new AggregatorRegistry()
  let drainTimeout = plan.config.shutdown.drainTimeout
  let stopping = false
  const workers = () => Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined)

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return
    logger.error({ worker: worker.id, pid: worker.process.pid, code, signal }, 'worker exited; starting another')
    setTimeout(() => cluster.fork(), RESTART_DELAY_MS)
  })
  cluster.on('message', (worker, message: Message) => {
    if (message.gateway === 'reload-others') {
      refreshPlan()
      for (const other of workers()) if (other !== worker) other.process.kill('SIGHUP')
    } else if (message.gateway === 'metrics') {
      aggregator.clusterMetrics().then(
        (text) => worker.send({ gateway: 'metrics-result', id: message.id, text } satisfies Message),
        (err: Error) => worker.send({ gateway: 'metrics-result', id: message.id, error: err.message } satisfies Message),
      )
    }
  })

  /** The primary keeps only the drain timeout of the config; a broken file is the workers' to report. */
  const refreshPlan = () => {
    try {
      drainTimeout = loadPlan(file).config.shutdown.drainTimeout
    } catch {
      // the workers log the problems and keep their config; so does the primary
    }
  }
  process.on('SIGHUP', () => {
    refreshPlan()
    for (const worker of workers()) worker.process.kill('SIGHUP')
  })
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    logger.info({ signal, workers: workers().length }, 'stopping workers')
    for (const worker of workers()) worker.process.kill('SIGTERM')
    const deadline = setTimeout(() => {
      for (const worker of workers()) worker.process.kill('SIGKILL')
    }, drainTimeout + KILL_MARGIN_MS)
    const exitWhenAllGone = () => {
      if (workers().some((worker) => !worker.isDead())) return
      clearTimeout(deadline)
      logger.info('stopped')
      logger.flush()
      process.exit(0)
    }
    cluster.on('exit', exitWhenAllGone)
    exitWhenAllGone()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)

  for (let i = 0; i < plan.workers; i++) cluster.fork()
  logger.info({ workers: plan.workers, config: file ?? '(embedded defaults)' }, 'gateway primary started')
}

export const isWorker = cluster.isWorker

/** In a worker: lets the primary collect this registry's metrics (prom-client's cluster aggregation). */
export function shareMetrics(registry: Registry): void {
  if (!cluster.isWorker) return
  AggregatorRegistry.setRegistries([registry])
  new AggregatorRegistry() // its constructor installs the worker's answer to the primary's requests
}

let nextRequest = 0
/** In a worker: the metrics of every worker, summed by the primary. */
export function metricsOfAllWorkers(timeoutMs = 5000): Promise<string> {
  const id = nextRequest++
  return new Promise((resolve, reject) => {
    const onMessage = (message: Message) => {
      if (message.gateway !== 'metrics-result' || message.id !== id) return
      done()
      if (message.text !== undefined) resolve(message.text)
      else reject(new Error(message.error ?? 'no metrics'))
    }
    const timer = setTimeout(() => { done(); reject(new Error('the primary did not answer')) }, timeoutMs)
    const done = () => {
      clearTimeout(timer)
      process.off('message', onMessage)
    }
    process.on('message', onMessage)
    process.send!({ gateway: 'metrics', id } satisfies Message)
  })
}

/** In a worker, after it reloaded for POST /reload: the primary has every other worker reload too. */
export function reloadOtherWorkers(): void {
  if (cluster.isWorker) process.send!({ gateway: 'reload-others' } satisfies Message)
}
