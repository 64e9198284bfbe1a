// A plain node-http-proxy reverse proxy to UPSTREAM_URL on PORT: the common Node choice, given the same
// 64 keep-alive upstream connections as the gateway and the undici baseline (without an agent it would
// open a connection per request).
import { Agent, createServer } from 'node:http'
import httpProxy from 'http-proxy'

const proxy = httpProxy.createProxyServer({ target: process.env.UPSTREAM_URL, agent: new Agent({ keepAlive: true, maxSockets: 64 }) })
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502)
  res.end()
})
createServer((req, res) => proxy.web(req, res)).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
