// The only observability import the core modules make: named diagnostics channels. Logs, metrics and
// error reporting subscribe to them; nothing is computed when nobody listens.
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
