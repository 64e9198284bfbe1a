// A minimal upstream for benchmarks: answers at once (or after DELAY_MS) with a small JSON body from a
// preallocated buffer, so it is also the ceiling for one Node process. Paths under /nostore/ answer
// with Cache-Control: no-store (every request a cache miss). Listens on PORT (0: any) and prints
// {"port": N} on stdout.
//
// Started with an IPC channel (by the benchmark), it opens one more listener per client that asks
// ({type: 'listen', id} → {type: 'listening', id, port}), so that each proxy in front of it has a port
// of its own, and counts connections per port ({type: 'stats', id, port, reset} → {type: 'stats', id,
// open, maxOpen, accepted}): open now, the most open at once since the last reset, and accepted since.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

const delayMs = Number(process.env.DELAY_MS ?? 0)
const body = Buffer.from(JSON.stringify({ id: 1, user_id: 'alice', name: 'Maya Adams', email: null, status: 'new', p_score: 91 }))
const headers = { 'content-type': 'application/json', 'content-length': body.length }
const noStore = { ...headers, 'cache-control': 'no-store' }

interface Counts { open: number; maxOpen: number; accepted: number }
const counts = new Map<number, Counts>()

function listen(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume()
    const answer = () => {
      res.writeHead(200, req.url?.startsWith('/nostore/') ? noStore : headers)
      res.end(body)
    }
    if (delayMs) setTimeout(answer, delayMs)
    else answer()
  })
  server.keepAliveTimeout = 65_000
  const tally: Counts = { open: 0, maxOpen: 0, accepted: 0 }
  server.on('connection', (socket) => {
    tally.open++
    tally.accepted++
    if (tally.open > tally.maxOpen) tally.maxOpen = tally.open
    socket.once('close', () => { tally.open-- })
  })
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => {
    counts.set((server.address() as AddressInfo).port, tally)
    resolve(server)
  }))
}

type Message = { type: 'listen'; id: number } | { type: 'stats'; id: number; port: number; reset?: boolean }
process.on('message', (message: Message) => {
  if (message.type === 'listen') {
    void listen(0).then((server) => process.send?.({ type: 'listening', id: message.id, port: (server.address() as AddressInfo).port }))
  } else if (message.type === 'stats') {
    const tally = counts.get(message.port) ?? { open: 0, maxOpen: 0, accepted: 0 }
    process.send?.({ type: 'stats', id: message.id, ...tally })
    if (message.reset) {
      tally.maxOpen = tally.open
      tally.accepted = 0
    }
  }
})

const first = await listen(Number(process.env.PORT ?? 0))
console.log(JSON.stringify({ port: (first.address() as AddressInfo).port }))
process.on('SIGTERM', () => process.exit(0))
