// The one Redis connection a gateway process shares between its limiters and its cache: one Redis (url),
// the master a Redis Sentinel names (sentinels + name, following failovers), or a Redis Cluster (cluster).
// Commands never queue while Redis is away and never wait longer than redis.timeout: callers fall back
// to in-process state instead. An outage is announced once per episode, not once per request.
//
// On a Cluster every command must touch keys of one hash slot. The gateway's commands are single-key
// (GET/SET/DEL of an entry, SADD/SMEMBERS of a tag set, the limiters' INCR script) or, where they touch
// several keys without needing atomicity, issued per key and batched by auto-pipelining; see
// cache/invalidation.ts and deploy/REDIS-TOPOLOGY.md.
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { Config } from './config/schema.ts'
import { publishNotice } from './observability/events.ts'

/** Either kind of client: both speak the same commands; only pipelines and MULTI differ (one slot each). */
export type RedisClient = Redis | Cluster

export type RedisTopology = 'single' | 'sentinel' | 'cluster'

/** What openRedis needs: `timeout` and one of url, sentinels (+ name) or cluster; the rest as in the config. */
export type RedisSettings = Pick<Config['redis'], 'timeout'> & Partial<Config['redis']>

export interface SharedRedis {
  readonly client: RedisClient
  readonly topology: RedisTopology
  /** True while commands can be sent; false during an outage. */
  isUp(): boolean
  /** Resolves once connected, or after `ms` (the gateway then starts on its in-process fallback). */
  waitUntilUp(ms: number): Promise<boolean>
  /** A command failed or timed out while connected (slow Redis): reported once per episode. */
  reportFailure(err: unknown): void
  /** A command succeeded: ends an episode begun by reportFailure once none failed for EPISODE_SETTLE_MS. */
  reportSuccess(): void
  /** A second connection for pub/sub (a subscribed connection can do nothing else). */
  duplicate(): RedisClient
  close(): Promise<void>
}

/**
 * How long commands must succeed with no failure before an episode begun by a failed command ends. Without it
 * a Redis whose latency hovers around redis.timeout (a fork for BGSAVE, a busy shard) began and ended an
 * episode every few commands: an error log line, a counted outage and a Sentry event each time, where the
 * operator needs one. A reconnection ('ready') still ends an episode at once: the connection itself is new.
 */
export const EPISODE_SETTLE_MS = 2000

export function openRedis(settings: RedisSettings): SharedRedis | null {
  const client = createClient(settings)
  if (!client) return null
  const topology: RedisTopology = client instanceof Cluster ? 'cluster' : settings.sentinels?.length ? 'sentinel' : 'single'
  let up = false
  let everUp = false
  let outageSince = 0
  let lastFailureAt = 0
  client.on('ready', () => {
    up = true
    if (outageSince) publishNotice({ level: 'info', msg: 'redis is back; shared counters resume', event: 'redis_recovered', downForMs: Date.now() - outageSince })
    else if (!everUp) publishNotice({ level: 'info', msg: 'redis connected', topology })
    everUp = true
    outageSince = 0
  })
  const startEpisode = (err: unknown) => {
    lastFailureAt = Date.now()
    if (outageSince) return
    outageSince = Date.now()
    publishNotice({ level: 'error', msg: 'redis unavailable; in-process fallback in use', event: 'redis_outage', err: (err as Error | undefined)?.message })
  }
  const down = (err?: Error) => {
    up = false
    startEpisode(err)
  }
  if (client instanceof Cluster) {
    // A Cluster stays 'ready' while single nodes come and go (commands to them fail and report
    // themselves), so up follows the cluster's own state only: 'ready' up, 'close' down. Its 'error' (no
    // node answered) starts an episode, which 'ready' or the next successful command ends.
    client.on('error', startEpisode)
    // Node connections are lazy: the first command to each node would also pay for connecting (and the
    // node's ready check) within redis.timeout. Connect to every master as soon as the cluster names it.
    client.on('+node', (node: Redis) => { if (node.status === 'wait' && !node.options.readOnly) node.connect().catch(() => {}) })
  } else {
    client.on('error', down)
  }
  client.on('close', () => { if (up) down() })
  return {
    client,
    topology,
    isUp: () => up,
    reportFailure: startEpisode,
    reportSuccess() {
      if (!outageSince || !up || Date.now() - lastFailureAt < EPISODE_SETTLE_MS) return
      publishNotice({ level: 'info', msg: 'redis is back; shared counters resume', event: 'redis_recovered', downForMs: Date.now() - outageSince })
      outageSince = 0
    },
    // The subscriber may queue (it subscribes once, on 'ready') and has no command timeout: SUBSCRIBE
    // holds the connection open. A Cluster's duplicate subscribes through one node of its choosing and
    // moves to another if that node goes; PUBLISH reaches every node of a cluster.
    duplicate: () => client instanceof Cluster
      ? client.duplicate([], { enableOfflineQueue: true, redisOptions: { commandTimeout: undefined } })
      : client.duplicate({ enableOfflineQueue: true, commandTimeout: undefined }),
    waitUntilUp: (ms) => up ? Promise.resolve(true) : new Promise((resolve) => {
      const timer = setTimeout(() => { client.off('ready', onReady); resolve(false) }, ms)
      const onReady = () => { clearTimeout(timer); resolve(true) }
      client.once('ready', onReady)
    }),
    async close() {
      client.removeAllListeners('close')
      await client.quit().catch(() => client.disconnect())
      // QUIT leaves the failover detector's sentinel connections open; disconnect() closes them too.
      if (topology === 'sentinel') client.disconnect()
    },
  }
}

/** The same bounds for every topology; null when no Redis is configured. */
function createClient(settings: RedisSettings): RedisClient | null {
  const perConnection = {
    commandTimeout: settings.timeout,
    connectTimeout: Math.max(settings.timeout, 1000),
    maxRetriesPerRequest: 0,
  } satisfies RedisOptions
  // Keep trying, a little slower each time, so shared state resumes by itself when Redis returns.
  const retry = (attempt: number) => Math.min(100 * attempt, 2000)
  const credentials = {
    ...(settings.username ? { username: settings.username } : {}),
    ...(settings.password ? { password: settings.password } : {}),
  }
  if (settings.cluster?.length) {
    const options: ClusterOptions = {
      enableOfflineQueue: false,
      // Commands issued in the same tick share one write per node: under load, far fewer syscalls.
      enableAutoPipelining: true,
      clusterRetryStrategy: retry,
      redisOptions: { ...perConnection, ...credentials },
    }
    return new Cluster(settings.cluster.map(({ host, port }) => ({ host, port })), options)
  }
  const common: RedisOptions = {
    ...perConnection,
    enableOfflineQueue: false,
    // Commands issued in the same tick share one write: under load, far fewer syscalls per request.
    enableAutoPipelining: true,
    retryStrategy: retry,
  }
  if (settings.sentinels?.length) {
    return new Redis({
      ...common,
      ...credentials,
      sentinels: settings.sentinels.map(({ host, port }) => ({ host, port })),
      name: settings.name,
      ...(settings.sentinelPassword ? { sentinelPassword: settings.sentinelPassword } : {}),
      // Subscribe to the sentinels' +switch-master: reconnect to a promoted master at once, not on the
      // next error.
      failoverDetector: true,
    })
  }
  if (!settings.url) return null
  return new Redis(settings.url, common)
}
