// Waiting for a server a test (or the benchmark) started: does 127.0.0.1:port accept connections yet?
import { connect } from 'node:net'
import { until } from './wait.ts'

export function portIsOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

/** Resolves once the port accepts a connection; rejects after `timeoutMs` naming `what` did not start. */
export async function waitForPort(port: number, timeoutMs: number, what = 'a server'): Promise<void> {
  if (!(await until(() => portIsOpen(port), timeoutMs, 50))) throw new Error(`${what} did not listen on port ${port} within ${timeoutMs}ms`)
}
