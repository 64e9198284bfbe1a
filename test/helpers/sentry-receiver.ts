// A local stand-in for Sentry's ingest: accepts envelopes on /api/<project>/envelope/ (gzip or not) and
// keeps them parsed, so tests assert on what really left the gateway.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gunzipSync, inflateSync } from 'node:zlib'

export interface EnvelopeItem { header: Record<string, unknown>; payload: Record<string, unknown> | string }
export interface Envelope { header: Record<string, unknown>; items: EnvelopeItem[]; raw: string; path: string }

export interface SentryReceiver {
  server: Server
  port: number
  /** A DSN pointing at this receiver, for project `project`. */
  dsn(project?: number): string
  envelopes: Envelope[]
  /** Every item of a type across envelopes (event, transaction, …). */
  items(type: string): Array<Record<string, unknown>>
  waitFor(predicate: (envelopes: Envelope[]) => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

export async function startSentryReceiver(): Promise<SentryReceiver> {
  const envelopes: Envelope[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      let body = Buffer.concat(chunks)
      const encoding = req.headers['content-encoding']
      if (encoding === 'gzip') body = gunzipSync(body)
      else if (encoding === 'deflate') body = inflateSync(body)
      try {
        envelopes.push({ ...parseEnvelope(body.toString('utf8')), path: req.url ?? '' })
      } catch {
        envelopes.push({ header: {}, items: [], raw: body.toString('utf8'), path: req.url ?? '' })
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    server,
    port,
    dsn: (project = 1) => `http://publickey@127.0.0.1:${port}/${project}`,
    envelopes,
    items: (type) => envelopes.flatMap((e) => e.items.filter((i) => i.header.type === type).map((i) => i.payload as Record<string, unknown>)),
    async waitFor(predicate, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs
      while (!predicate(envelopes)) {
        if (Date.now() > deadline) throw new Error(`the expected envelopes did not arrive within ${timeoutMs}ms (got ${envelopes.length})`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }),
  }
}

/** Newline-delimited: the envelope header, then for each item its header and payload (length-prefixed or one line). */
export function parseEnvelope(text: string): { header: Record<string, unknown>; items: EnvelopeItem[]; raw: string } {
  let offset = text.indexOf('\n')
  const header = JSON.parse(offset === -1 ? text : text.slice(0, offset)) as Record<string, unknown>
  const items: EnvelopeItem[] = []
  while (offset !== -1 && offset < text.length - 1) {
    const headerEnd = text.indexOf('\n', offset + 1)
    const itemHeader = JSON.parse(text.slice(offset + 1, headerEnd === -1 ? undefined : headerEnd)) as Record<string, unknown>
    if (headerEnd === -1) break
    let payloadText: string
    if (typeof itemHeader.length === 'number') {
      const bytes = Buffer.from(text.slice(headerEnd + 1), 'utf8').subarray(0, itemHeader.length)
      payloadText = bytes.toString('utf8')
      offset = headerEnd + 1 + payloadText.length
    } else {
      const payloadEnd = text.indexOf('\n', headerEnd + 1)
      payloadText = text.slice(headerEnd + 1, payloadEnd === -1 ? undefined : payloadEnd)
      offset = payloadEnd
    }
    let payload: Record<string, unknown> | string = payloadText
    try { payload = JSON.parse(payloadText) as Record<string, unknown> } catch { /* raw item (attachments, replays) */ }
    items.push({ header: itemHeader, payload })
  }
  return { header, items, raw: text }
}
