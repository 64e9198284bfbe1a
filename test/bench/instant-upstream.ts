// A minimal upstream for benchmarks: answers every request at once with a small JSON body, so the
// figures measure the gateway, not the API behind it. Prints its port on stdout.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const body = Buffer.from(JSON.stringify({ id: 1, name: 'Maya Adams', status: 'new', p_score: 91 }))
const server = createServer((req, res) => {
  req.resume()
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length })
  res.end(body)
})
server.keepAliveTimeout = 65_000
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as AddressInfo).port })))
process.on('SIGTERM', () => process.exit(0))
