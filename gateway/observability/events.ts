// The only observability import the core modules make: named diagnostics channels. Logs, metrics and
// error reporting subscribe to them; a channel nobody listens to costs one boolean check.
import { channel } from 'node:diagnostics_channel'
import type { Ctx } from '../pipeline.ts'

export const CHANNELS = {
  /** A request has finished (response sent or connection gone): the Ctx, once per request. */
  request: 'gateway:request',
  /**
   * Something the operator should hear about that is not a request: { level, msg, event?, ...fields }.
   * `event` names the ones other subscribers act on: redis_outage, redis_recovered, config_reloaded,
   * config_reload_failed.
   */
  notice: 'gateway:notice',
  /** L1 dropped an entry to stay within cache.memory: { reason }. */
  cacheEvict: 'gateway:cache-evict',
} as const

const requestChannel = channel(CHANNELS.request)
const noticeChannel = channel(CHANNELS.notice)
const evictChannel = channel(CHANNELS.cacheEvict)

export function publishRequest(ctx: Ctx): void {
  if (requestChannel.hasSubscribers) requestChannel.publish(ctx)
}

export type NoticeEvent = 'redis_outage' | 'redis_recovered' | 'config_reloaded' | 'config_reload_failed'

export interface Notice { level: 'info' | 'warn' | 'error'; msg: string; event?: NoticeEvent; err?: unknown; [field: string]: unknown }

export function publishNotice(notice: Notice): void {
  if (noticeChannel.hasSubscribers) noticeChannel.publish(notice)
}

export function publishCacheEviction(reason: string): void {
  if (evictChannel.hasSubscribers) evictChannel.publish({ reason })
}

/**
 * Trace propagation, installed by the Sentry integration when it is on: the trace headers the upstream gets
 * instead of the client's (exactly one set).
 */
export interface TraceHooks { upstreamHeaders(ctx: Ctx): Record<string, string> | null }
let traceHooks: TraceHooks | null = null

export function setTraceHooks(hooks: TraceHooks | null): void {
  traceHooks = hooks
}

export function traceHeadersFor(ctx: Ctx): Record<string, string> | null {
  return traceHooks ? traceHooks.upstreamHeaders(ctx) : null
}

/** Work to finish before the process exits (sending buffered events). */
const flushers = new Set<(timeoutMs: number) => Promise<unknown>>()

export function onFlush(flush: (timeoutMs: number) => Promise<unknown>): void {
  flushers.add(flush)
}

export async function flushAll(timeoutMs: number): Promise<void> {
  await Promise.allSettled([...flushers].map((flush) => flush(timeoutMs)))
}
