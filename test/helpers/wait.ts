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
