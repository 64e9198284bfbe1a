// A minimal upstream for benchmarks: answers at once (or after DELAY_MS) with a small JSON body from a
// preallocated buffer, so it is also the ceiling for one Node process. Paths under /nostore/ answer
// with Cache-Control: no-store (every request a cache miss). Prints its port on stdout.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const delayMs = Number(process.env.DELAY_MS ?? 0)
const body = Buffer.from(JSON.stringify({ id: 1, user_id: 'alice', name: 'Maya Adams', email: null, status: 'new', p_score: 91 }))
const headers = { 'content-type': 'application/json', 'content-length': body.length }
const noStore = { ...headers, 'cache-control': 'no-store' }
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
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as AddressInfo).port })))
process.on('SIGTERM', () => process.exit(0))
