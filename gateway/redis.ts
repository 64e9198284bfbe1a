// The one Redis connection a gateway process shares between its limiters (and later its cache).
// Commands never queue while Redis is away and never wait longer than redis.timeout: callers fall back
// to in-process state instead. An outage is announced once per episode, not once per request.
import { Redis } from 'ioredis'
import type { Config } from './config/schema.ts'
import { publishNotice } from './observability/events.ts'

export interface SharedRedis {
  readonly client: Redis
  /** True while commands can be sent; false during an outage. */
  isUp(): boolean
  /** Resolves once connected, or after `ms` (the gateway then starts on its in-process fallback). */
  waitUntilUp(ms: number): Promise<boolean>
  /** A command failed or timed out while connected (slow Redis): reported once per episode. */
  reportFailure(err: unknown): void
  /** A command succeeded: ends an episode begun by reportFailure. */
  reportSuccess(): void
  /** A second connection for pub/sub (a subscribed connection can do nothing else). */
  duplicate(): Redis
  close(): Promise<void>
}

export function openRedis(settings: Config['redis']): SharedRedis | null {
  if (!settings.url) return null
  const client = new Redis(settings.url, {
    enableOfflineQueue: false,
    // Commands issued in the same tick share one write: under load, far fewer syscalls per request.
    enableAutoPipelining: true,
    commandTimeout: settings.timeout,
    connectTimeout: Math.max(settings.timeout, 1000),
    maxRetriesPerRequest: 0,
    // Keep trying, a little slower each time, so shared state resumes by itself when Redis returns.
    retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
  })
  let up = false
  let everUp = false
  let outageSince = 0
  client.on('ready', () => {
    up = true
    if (outageSince) publishNotice({ level: 'info', msg: 'redis is back; shared counters resume', event: 'redis_recovered', downForMs: Date.now() - outageSince })
    else if (!everUp) publishNotice({ level: 'info', msg: 'redis connected' })
    everUp = true
    outageSince = 0
  })
  const startEpisode = (err: unknown) => {
    if (outageSince) return
    outageSince = Date.now()
    publishNotice({ level: 'error', msg: 'redis unavailable; in-process fallback in use', event: 'redis_outage', err: (err as Error | undefined)?.message })
  }
  const down = (err?: Error) => {
    up = false
    startEpisode(err)
  }
  client.on('error', down)
  client.on('close', () => { if (up) down() })
  return {
    client,
    isUp: () => up,
    reportFailure: startEpisode,
    reportSuccess() {
      if (!outageSince || !up) return
      publishNotice({ level: 'info', msg: 'redis is back; shared counters resume', event: 'redis_recovered', downForMs: Date.now() - outageSince })
      outageSince = 0
    },
    duplicate: () => client.duplicate({ enableOfflineQueue: true, commandTimeout: undefined }),
    waitUntilUp: (ms) => up ? Promise.resolve(true) : new Promise((resolve) => {
      const timer = setTimeout(() => { client.off('ready', onReady); resolve(false) }, ms)
      const onReady = () => { clearTimeout(timer); resolve(true) }
      client.once('ready', onReady)
    }),
    async close() {
      client.removeAllListeners('close')
      await client.quit().catch(() => client.disconnect())
    },
  }
}
