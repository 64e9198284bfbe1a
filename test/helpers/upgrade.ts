// A WebSocket upgrade asked for with node:http, for tests of what the gateway does with upgrades.
import { randomBytes } from 'node:crypto'
import { request, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

export type Handshake =
  | { kind: 'upgrade'; res: IncomingMessage; socket: Socket; head: Buffer; key: string }
  | { kind: 'response'; res: IncomingMessage; body: string; key: string }

/** Asks for a WebSocket upgrade with node:http; resolves with the 101 and its socket, or the refusal. */
export function openUpgrade(url: string, headers: Record<string, string> = {}): Promise<Handshake> {
  const key = randomBytes(16).toString('base64')
  return new Promise((resolve, reject) => {
    const req = request(url, {
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-key': key, 'sec-websocket-version': '13', ...headers },
    })
    req.on('upgrade', (res, socket, head) => resolve({ kind: 'upgrade', res, socket, head, key }))
    req.on('response', (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ kind: 'response', res, body, key }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}
