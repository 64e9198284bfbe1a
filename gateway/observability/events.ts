// The only observability import the core modules make: named diagnostics channels. Logs, metrics and
// error reporting subscribe to them; nothing is computed when nobody listens.
import { channel } from 'node:diagnostics_channel'
import type { Ctx } from '../pipeline.ts'

export const CHANNELS = {
  /** A request has finished (response sent or connection gone): the Ctx, once per request. */
  request: 'gateway:request',
  /** Something the operator should hear about that is not a request: { level, msg, ...fields }. */
  notice: 'gateway:notice',
} as const

const requestChannel = channel(CHANNELS.request)
const noticeChannel = channel(CHANNELS.notice)

export function publishRequest(ctx: Ctx): void {
  if (requestChannel.hasSubscribers) requestChannel.publish(ctx)
}

export interface Notice { level: 'info' | 'warn' | 'error'; msg: string; err?: unknown; [field: string]: unknown }

export function publishNotice(notice: Notice): void {
  if (noticeChannel.hasSubscribers) noticeChannel.publish(notice)
}
