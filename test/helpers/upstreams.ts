// Throwaway upstream servers for tests: well-behaved ones built from a handler, and a port nothing listens on.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface TestUpstream { server: Server; url: string; port: number; close(): Promise<void> }

export async function startUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestUpstream> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

/** A port that was free a moment ago and has nothing listening: connections to it are refused. */
export async function refusingPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
