// Structured JSON logs (pino): one line per request, plus the gateway's notices.
import cluster from 'node:cluster'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import pino, { type Logger } from 'pino'
import type { Ctx } from '../pipeline.ts'
import { CHANNELS, type Notice } from './events.ts'
import { outcomeLabel } from '../cache/status.ts'
import { withoutQuery } from '../routing/router.ts'

export function createLogger(level: string): Logger {
  const base = cluster.isWorker ? { service: 'gateway', worker: cluster.worker!.id, pid: process.pid } : { service: 'gateway' }
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime })
}

/** Subscribes the logger to the notice channel and, for an access log, the request channel. */
export function logEvents(logger: Logger, options: { requests: boolean }): () => void {
  const onRequest = (message: unknown) => logger.info(requestLine(message as Ctx), 'request')
  const onNotice = (message: unknown) => {
    const { level, msg, err, ...fields } = message as Notice
    logger[level]({ ...fields, ...(err ? { err } : {}) }, msg)
  }
  if (options.requests) subscribe(CHANNELS.request, onRequest)
  subscribe(CHANNELS.notice, onNotice)
  return () => {
    unsubscribe(CHANNELS.request, onRequest)
    unsubscribe(CHANNELS.notice, onNotice)
  }
}

export function requestLine(ctx: Ctx): Record<string, unknown> {
  return {
    requestId: ctx.id,
    route: ctx.route?.name ?? null,
    method: ctx.req.method,
    path: withoutQuery(ctx.req.url ?? '/'),
    status: ctx.error?.code === 'client_closed' ? 499 : ctx.status ?? 0,
    durationMs: round(performance.now() - ctx.t0),
    bytesOut: ctx.bytesOut,
    upstreamMs: ctx.upstreamResponse ? round(ctx.upstreamResponse.headersMs) : null,
    upstreamStatus: ctx.upstreamResponse?.status ?? null,
    clientIp: ctx.clientIp,
    cache: outcomeLabel(ctx.cache),
    ...(ctx.error ? { error: ctx.error.code, errorSource: ctx.error.source } : {}),
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}
