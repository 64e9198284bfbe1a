// The baseline a gateway's pass-through is held to: the smallest reasonable proxy on undici, a Pool of
// 64 keep-alive connections to UPSTREAM_URL, listening on PORT. No cache, no limits, no logs.
import { createServer } from 'node:http'
import { Pool } from 'undici'

const pool = new Pool(process.env.UPSTREAM_URL!, { connections: 64 })
const hopByHop = ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']
createServer((req, res) => {
  const headers = { ...req.headers }
  for (const name of hopByHop) delete headers[name]
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req
  pool.request({ method: req.method as 'GET', path: req.url!, headers, body }).then(({ statusCode, headers: head, body: answer }) => {
    for (const name of hopByHop) delete head[name]
    res.writeHead(statusCode, head as Record<string, string | string[]>)
    answer.pipe(res)
  }, () => {
    res.writeHead(502).end()
  })
}).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
