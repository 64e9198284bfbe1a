// A TCP proxy that holds every chunk, in both directions, for a configurable delay before passing it on:
// put it between the gateway and redis-server to make Redis slow without touching either. Order is kept
// per direction; the delay can change at any time (it applies to chunks that arrive afterwards).
import { createServer, connect, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'

export interface DelayProxy {
  server: Server
  port: number
  /** The proxy's address with the given scheme, e.g. redis://127.0.0.1:<port>. */
  url(scheme?: string): string
  readonly delayMs: number
  setDelay(ms: number): void
  /** Connections accepted so far. */
  readonly accepted: number
  close(): Promise<void>
}

export async function startDelayProxy(target: { host?: string; port: number }, delayMs = 0): Promise<DelayProxy> {
  let delay = delayMs
  let accepted = 0
  const sockets = new Set<Socket>()
  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  }
  const server = createServer((client) => {
    accepted++
    track(client)
    const upstream = connect(target.port, target.host ?? '127.0.0.1')
    track(upstream)
    relay(client, upstream, () => delay)
    relay(upstream, client, () => delay)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    server,
    port,
    url: (scheme = 'redis') => `${scheme}://127.0.0.1:${port}`,
    get delayMs() { return delay },
    setDelay(ms) { delay = ms },
    get accepted() { return accepted },
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    }),
  }
}

/** Copies `from` to `to`, each chunk held for delay() ms; an end or error on either side ends both. */
function relay(from: Socket, to: Socket, delay: () => number): void {
  const queue: Array<{ due: number; chunk: Buffer | null }> = [] // null: the end of the stream
  let timer: NodeJS.Timeout | undefined
  const deliver = (chunk: Buffer | null) => (chunk === null ? to.end() : to.write(chunk))
  const flush = () => {
    timer = undefined
    const now = Date.now()
    while (queue.length && queue[0]!.due <= now) deliver(queue.shift()!.chunk)
    if (queue.length) timer = setTimeout(flush, queue[0]!.due - now)
  }
  const push = (chunk: Buffer | null) => {
    const ms = delay()
    if (ms <= 0 && !queue.length) return void deliver(chunk)
    queue.push({ due: Date.now() + ms, chunk })
    timer ??= setTimeout(flush, Math.max(0, queue[0]!.due - Date.now()))
  }
  from.on('data', (chunk: Buffer) => push(chunk))
  from.on('end', () => push(null))
  from.on('error', () => to.destroy())
  from.on('close', (hadError: boolean) => {
    if (!hadError) return // a clean end: what is queued still goes out, then the end
    clearTimeout(timer)
    to.destroy()
  })
}
