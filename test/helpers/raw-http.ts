// Raw HTTP/1.1 for hostile-input tests: bytes written to a socket exactly as given (fetch and node:http
// refuse to send malformed requests), a small response parser, and an upstream that records every request
// it receives (head, body, whether the body completed) and every byte, so a test can tell what crossed the
// gateway and what did not.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { until as pollUntil } from './wait.ts'

export interface ParsedResponse {
  status: number
  /** Header names lower-cased; repeated headers joined with ", ". */
  headers: Record<string, string>
  body: string
}

export interface Exchange {
  /** Every complete response read, in order. */
  responses: ParsedResponse[]
  /** Everything the server sent. */
  raw: string
  /** The server closed (or reset) the connection. */
  closed: boolean
  /** How many of the payload's parts were written before the exchange ended. */
  written: number
}

export interface ExchangeOptions {
  host?: string
  /** The client's own address (any 127.x.y.z works on Linux loopback): a distinct client per test. */
  localAddress?: string
  /** Resolve once this many complete responses are in (the connection may stay open); default: wait for close. */
  responses?: number
  /** Written one after the other, `pauseMs` apart (for trickling). */
  pauseMs?: number
  /** A guard, not an assertion: give up waiting after this long and resolve with what arrived. */
  giveUpMs?: number
}

/**
 * Writes `payload` (one buffer, or several parts written `pauseMs` apart) to host:port and collects the
 * answer until the server closes, `responses` responses are complete, or `giveUpMs` passes.
 */
export function exchange(port: number, payload: string | Buffer | Array<string | Buffer>, options: ExchangeOptions = {}): Promise<Exchange> {
  const parts = Array.isArray(payload) ? payload : [payload]
  return new Promise((resolve) => {
    const socket = connect({ port, host: options.host ?? '127.0.0.1', ...(options.localAddress ? { localAddress: options.localAddress } : {}) })
    const chunks: Buffer[] = []
    let settled = false
    let writer: NodeJS.Timeout | undefined
    let next = 0
    const finish = (closed: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(guard)
      clearTimeout(writer)
      const raw = Buffer.concat(chunks).toString('latin1')
      socket.destroy()
      resolve({ responses: parseResponses(raw), raw, closed, written: next })
    }
    const guard = setTimeout(() => finish(false), options.giveUpMs ?? 15_000)
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      if (options.responses !== undefined && parseResponses(Buffer.concat(chunks).toString('latin1')).length >= options.responses) finish(false)
    })
    socket.on('close', () => finish(true))
    socket.on('error', () => finish(true))
    socket.once('connect', () => {
      const writeNext = () => {
        if (settled || socket.destroyed) return
        socket.write(parts[next++]!)
        if (next < parts.length) writer = setTimeout(writeNext, options.pauseMs ?? 0)
      }
      writeNext()
    })
  })
}

/** Parses as many complete HTTP/1.1 responses as `raw` holds (Content-Length, chunked or bodiless). */
export function parseResponses(raw: string): ParsedResponse[] {
  const out: ParsedResponse[] = []
  let at = 0
  while (at < raw.length) {
    const headEnd = raw.indexOf('\r\n\r\n', at)
    if (headEnd === -1) break
    const [statusLine, ...lines] = raw.slice(at, headEnd).split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1])
    if (!status) break
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value
    }
    let bodyAt = headEnd + 4
    let body = ''
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      // no body
    } else if (headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
      let complete = false
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', bodyAt)
        if (lineEnd === -1) break
        const size = parseInt(raw.slice(bodyAt, lineEnd), 16)
        if (Number.isNaN(size)) break
        if (size === 0) {
          const trailerEnd = raw.indexOf('\r\n\r\n', lineEnd)
          if (trailerEnd === -1) break
          bodyAt = trailerEnd + 4
          complete = true
          break
        }
        if (raw.length < lineEnd + 2 + size + 2) break
        body += raw.slice(lineEnd + 2, lineEnd + 2 + size)
        bodyAt = lineEnd + 2 + size + 2
      }
      if (!complete) break
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length'])
      if (raw.length < bodyAt + length) break
      body = raw.slice(bodyAt, bodyAt + length)
      bodyAt += length
    } else {
      // Delimited by the connection closing: whatever is left.
      body = raw.slice(bodyAt)
      bodyAt = raw.length
    }
    out.push({ status, headers, body })
    at = bodyAt
    if (status >= 100 && status < 200) continue
  }
  return out
}

/** The gateway's answer to a request it refused: a problem document, or nothing but a closed connection. */
export function isRefusal(result: Exchange, status: number): boolean {
  const first = result.responses[0]
  if (!first) return result.closed
  return first.status === status && first.headers['content-type'] === 'application/problem+json'
}

export interface RecordedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
  /** The body arrived whole (its framing ended cleanly); false when the connection broke off mid-body. */
  complete: boolean
}

export interface RecordingUpstream {
  server: Server
  port: number
  url: string
  /** Every request node's (strict) parser accepted, in arrival order, updated as bodies arrive. */
  readonly requests: RecordedRequest[]
  /** Every byte received, all connections concatenated in arrival order. */
  raw(): string
  /** Connections accepted so far. */
  connections(): number
  close(): Promise<void>
}

export type RecordingHandler = (req: RecordedRequest, res: import('node:http').ServerResponse) => void

/**
 * An upstream that records what it receives. The default answer is JSON echoing the method, target,
 * body length and the headers. A custom `answer` runs once the request body is complete.
 */
export async function startRecordingUpstream(answer?: RecordingHandler, host = '127.0.0.1'): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = []
  const bytes: Buffer[] = []
  let connections = 0
  const server = createServer((req, res) => {
    const record: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers }, rawHeaders: [...req.rawHeaders], body: Buffer.alloc(0), complete: false }
    requests.push(record)
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('error', () => {})
    req.on('end', () => {
      record.body = Buffer.concat(chunks)
      record.complete = true
      if (answer) return answer(record, res)
      const text = JSON.stringify({ method: record.method, url: record.url, bodyLength: record.body.length, headers: record.headers })
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    })
    req.on('close', () => { if (!record.complete) record.body = Buffer.concat(chunks) })
  })
  server.on('connection', (socket: Socket) => {
    connections++
    socket.on('data', (chunk: Buffer) => bytes.push(chunk))
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const { port } = server.address() as AddressInfo
  return {
    server,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    requests,
    raw: () => Buffer.concat(bytes).toString('latin1'),
    connections: () => connections,
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/**
 * How a lenient framework resolves a request: case-insensitive, escapes decoded, ";params" ignored (Tomcat),
 * slashes and dot segments folded, method overrides honoured.
 */
export function asLenientUpstreamSeesIt(req: { url: string; method: string; headers: IncomingHttpHeaders }): { method: string; path: string } {
  let path = req.url.split('?')[0]!
  try { path = decodeURIComponent(path) } catch { /* keep it as sent */ }
  const segments: string[] = []
  for (const segment of path.toLowerCase().split('/').map((part) => part.split(';')[0]!)) {
    if (segment === '..') segments.pop()
    else if (segment !== '.' && segment !== '') segments.push(segment)
  }
  const override = req.headers['x-http-method-override'] ?? req.headers['x-http-method'] ?? req.headers['x-method-override']
  return { method: String(override ?? req.method).toUpperCase(), path: `/${segments.join('/')}` }
}

/** Resolves once `check` holds, polling; rejects after `giveUpMs` (a guard, so a broken gateway fails rather than hangs). */
export async function until(check: () => boolean, giveUpMs = 10_000): Promise<void> {
  if (!(await pollUntil(check, giveUpMs, 20))) throw new Error('condition not met in time')
}
