// node:http requests for tests that need what fetch refuses to send (hop-by-hop headers, odd framing).
import { request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'

export interface RawResponse { status: number; headers: IncomingHttpHeaders; body: string }

export function httpRequest(url: string, options: { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(options.body)
  })
}
