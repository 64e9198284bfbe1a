// Waiting for something a test cannot be told about directly (an entry reaching Redis, a background refresh).
import { setTimeout as sleep } from 'node:timers/promises'

/** Polls until check() is true or the (generous) bound passes; returns whether it became true. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= deadline) return false
    await sleep(stepMs)
  }
}

/** The promise's value, or 'timeout' if `ms` pass first (the timer is cleared either way). */
export function orTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms) }),
  ])
}

/** The promise's value; rejects with "<what>: nothing after <ms>ms" if `ms` pass first. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms}ms`)), ms)
  })
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer))
}
