// Running the gateway: listeners, signals (SIGTERM/SIGINT drain, SIGHUP reload) and shutdown. Imported by
// main.ts only after error reporting is initialised, so that everything here is loaded after it.
import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { ConfigError, loadPlan } from './config/load.ts'
import type { Plan } from './config/compile.ts'
import { createProxyServer, type GatewayState } from './server.ts'
import { createAdminServer, type ReloadResult } from './admin.ts'
import { reloadOtherWorkers } from './cluster.ts'
import { closeUpstream } from './upstream/pool.ts'
import { openServices, retireServices } from './services.ts'
import { openRedis, type SharedRedis } from './redis.ts'
import { createLogger, logEvents } from './observability/logs.ts'
import { flushAll, publishNotice } from './observability/events.ts'

export async function run(plan: Plan, file: string | null): Promise<void> {
  const logger = createLogger(process.env.LOG_LEVEL ?? plan.config.log.level)
  logEvents(logger, { requests: plan.config.log.requests })
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception')
    void flushAll(2000).finally(() => process.exit(1))
  })
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'))

  // Until the listeners are up there is nothing to drain: a SIGTERM then (say, while waiting for Redis)
  // exits at once instead of being ignored, which as a container's PID 1 would end in SIGKILL.
  const exitNow = () => process.exit(0)
  process.once('SIGTERM', exitNow)
  process.once('SIGINT', exitNow)
  const redis = openRedis(plan.config.redis)
  // Serving before Redis answers would count on fresh in-process counters: wait a moment for it.
  await redis?.waitUntilUp(2000)
  const state: GatewayState = { plan, services: openServices(plan, redis), draining: false }
  const proxy = createProxyServer(state)
  const admin = createAdminServer(state, {
    reload: () => {
      const result = reload(state, file, logger)
      if (result.ok) reloadOtherWorkers()
      return result
    },
  })
  try {
    await Promise.all([
      listen(proxy, plan.config.listen.port, plan.config.listen.host),
      listen(admin, plan.config.admin.port, plan.config.admin.host),
    ])
  } catch (err) {
    logger.fatal({ code: (err as NodeJS.ErrnoException).code }, `cannot listen: ${(err as Error).message}`)
    logger.flush()
    process.exit(1)
  }
  logger.info({
    port: (proxy.address() as AddressInfo).port,
    adminPort: (admin.address() as AddressInfo).port,
    upstream: state.services.upstream.origin,
    redis: redis ? redis.topology : 'in-process',
    config: file ?? '(embedded defaults)',
    routes: plan.routes.length,
  }, 'gateway listening')

  process.on('SIGHUP', () => reload(state, file, logger))
  const stop = async (signal: string) => {
    if (state.draining) return
    logger.info({ signal, drainTimeoutMs: state.plan.config.shutdown.drainTimeout }, 'draining')
    await drain(state, proxy, admin, redis)
    await flushAll(2000)
    logger.info('stopped')
    logger.flush()
    process.exit(0)
  }
  process.off('SIGTERM', exitNow)
  process.off('SIGINT', exitNow)
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

/** Stop accepting, let in-flight requests finish (bounded by the drain timeout), then close the pool. */
async function drain(state: GatewayState, proxy: Server, admin: Server, redis: SharedRedis | null): Promise<void> {
  state.draining = true
  const closed = once(proxy, 'close')
  proxy.close()
  proxy.closeIdleConnections()
  const deadline = setTimeout(() => proxy.closeAllConnections(), state.plan.config.shutdown.drainTimeout)
  await closed
  clearTimeout(deadline)
  await closeUpstream(state.services.upstream, 1000)
  await state.services.cache?.close()
  await redis?.close()
  admin.close()
  admin.closeAllConnections()
}

/**
 * SIGHUP or POST /reload: load the file again; a valid one replaces the Plan (and the pool, if the upstream
 * changed). An invalid one changes nothing and says why.
 */
function reload(state: GatewayState, file: string | null, logger: Logger): ReloadResult {
  let next: Plan
  try {
    next = loadPlan(file)
  } catch (err) {
    const problems = (err as ConfigError).problems ?? [String(err)]
    publishNotice({ level: 'error', msg: 'config reload failed; the old config keeps serving', event: 'config_reload_failed', problems })
    return { ok: false, problems }
  }
  const before = state.plan.config
  const old = state.services
  state.services = openServices(next, old.redis, old)
  state.plan = next
  void retireServices(old, state.services, next.config.shutdown.drainTimeout)
  const needsRestart = (['listen', 'admin', 'redis', 'log'] as const).filter((key) =>
    JSON.stringify(next.config[key]) !== JSON.stringify(before[key]))
  if (needsRestart.length) logger.warn({ keys: needsRestart }, 'these settings change only on restart')
  publishNotice({ level: 'info', msg: 'config reloaded', event: 'config_reloaded', routes: next.routes.length })
  return { ok: true, routes: next.routes.length }
}

async function listen(server: Server, port: number, host: string): Promise<void> {
  server.listen(port, host)
  await once(server, 'listening')
}

