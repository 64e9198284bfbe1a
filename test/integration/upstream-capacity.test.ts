// The upstream pool's edges, through a real gateway process: beyond `connections + maxQueue` requests in
// flight the gateway sheds load (503 overloaded + Retry-After) instead of queueing without bound, and a
// keep-alive connection reset by the upstream is retried once for idempotent requests only.
import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { startGateway } from '../helpers/gateway.ts'
import { startUpstream } from '../helpers/upstreams.ts'
import { httpRequest } from '../helpers/http.ts'

t.test('beyond connections + maxQueue, requests are shed with 503 and Retry-After, and capacity comes back', async (t) => {
  const held: ServerResponse[] = []
  let arrived = 0
  const upstream = await startUpstream((_req: IncomingMessage, res: ServerResponse) => {
    arrived++
    held.push(res)
  })
  t.teardown(() => upstream.close())
  const gateway = await startGateway(`listen: { port: \${PORT} }\nadmin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url}, connections: 2, maxQueue: 2 }\n`)
  t.teardown(() => gateway.stop())

  const answers = Array.from({ length: 10 }, (_, i) => httpRequest(`${gateway.url}/slow/${i}`))
  // Two requests occupy the connections and two wait; the other six are answered at once.
  const shed = await Promise.all(answers.map((answer) => Promise.race([answer, new Promise<null>((resolve) => setTimeout(resolve, 3000, null))])))
  const overloaded = shed.filter((answer) => answer?.status === 503)
  t.equal(overloaded.length, 6, 'six of ten are shed while four are in flight')
  for (const answer of overloaded) {
    t.equal(answer!.headers['retry-after'], '1')
    t.equal(JSON.parse(answer!.body).code, 'overloaded')
  }
  t.equal(arrived, 2, 'the upstream saw only as many requests as connections')

  const release = () => { while (held.length) held.shift()!.end('done') }
  const drain = setInterval(release, 20)
  t.teardown(() => clearInterval(drain))
  const settled = await Promise.all(answers)
  t.equal(settled.filter((answer) => answer.status === 200).length, 4, 'the four accepted requests complete')

  const again = await Promise.all(Array.from({ length: 4 }, (_, i) => httpRequest(`${gateway.url}/again/${i}`)))
  t.same(again.map((answer) => answer.status), [200, 200, 200, 200], 'finished requests free their places')
})

t.test('a reset on a reused connection is retried once for GET, never for POST', async (t) => {
  const requestsOn = new WeakMap<Socket, number>()
  const arrivals: string[] = []
  // The second request on every connection finds it closed: the race of an upstream's keep-alive timeout.
  const upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
    arrivals.push(req.method!)
    const seen = (requestsOn.get(req.socket) ?? 0) + 1
    requestsOn.set(req.socket, seen)
    if (seen === 2) return void req.socket.destroy()
    res.end('ok')
  })
  t.teardown(() => upstream.close())
  const gateway = await startGateway(`listen: { port: \${PORT} }\nadmin: { port: \${ADMIN_PORT} }
upstream: { url: ${upstream.url}, connections: 1 }\n`)
  t.teardown(() => gateway.stop())

  t.equal((await httpRequest(`${gateway.url}/a`)).status, 200)
  const retried = await httpRequest(`${gateway.url}/b`)
  t.equal(retried.status, 200, 'the GET that met the reset succeeds')
  t.same(arrivals, ['GET', 'GET', 'GET'], 'it reached the upstream twice: the reset one and the retry')

  // The retry's connection has served one request: the next one on it meets the reset.
  arrivals.length = 0
  const notRetried = await httpRequest(`${gateway.url}/d`, { method: 'POST', body: 'x' })
  t.equal(notRetried.status, 502, 'the POST that met the reset fails')
  t.equal(JSON.parse(notRetried.body).code, 'upstream_unreachable')
  t.same(arrivals, ['POST'], 'and reached the upstream once')
})
