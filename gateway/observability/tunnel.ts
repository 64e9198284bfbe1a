// The Sentry tunnel route: the browser SDK's `tunnel` option posts envelopes here (first party, so ad
// blockers let them through) and they are forwarded to Sentry's ingest. Only envelopes whose DSN is on
// sentry.tunnel.allow go anywhere, and only to that DSN's host: never an open relay. The size cap (413)
// and the per-IP limit (429) were applied by the admit and limit phases like on any route.
import type { ServerResponse } from 'node:http'
import type { Ctx } from '../pipeline.ts'
import { decorate } from '../pipeline.ts'

export async function serveTunnel(ctx: Ctx, res: ServerResponse): Promise<void> {
  // Loaded on first use: a gateway without a tunnel never pays for the SDK.
  const { handleTunnelRequest } = await import('@sentry/core')
  await handleTunnelRequest(ctx.req, {
    writeHead(status: number, headers?: Record<string, string>) {
      ctx.status = status
      res.writeHead(status, decorate(ctx, { ...headers }))
    },
    end(chunk: Uint8Array) {
      ctx.bytesOut += chunk.length
      res.end(chunk)
    },
    get headersSent() { return res.headersSent },
  }, { allowedDsns: [...ctx.route!.tunnel!.allow] })
}
