// A stand-in for Sentry's ingest in benchmarks: reads and drops every body, in its own process so that
// receiving events does not take CPU from the load generator. Listens on PORT (0: any) and prints
// {"port": N} on stdout.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => res.end('{}'))
})
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as AddressInfo).port })))
process.on('SIGTERM', () => process.exit(0))
