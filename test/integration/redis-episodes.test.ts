// Redis outages are announced once per episode, and a Redis that flaps (fails again soon after it came
// back) is one episode, not one announcement per flap. Real redis-server; the gateway's SharedRedis; the
// notices it publishes, as logs, metrics and Sentry receive them.
import t from 'tap'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { openRedis } from '../../gateway/redis.ts'
import { CHANNELS, type Notice } from '../../gateway/observability/events.ts'
import { startRedis } from '../helpers/redis.ts'
import { until } from '../helpers/wait.ts'

t.test('a flapping Redis is one outage; a failure well after the recovery is a new one', async (t) => {
  const server = await startRedis()
  t.teardown(() => server.stop())
  const notices: Notice[] = []
  const listen = (message: unknown) => { notices.push(message as Notice) }
  subscribe(CHANNELS.notice, listen)
  t.teardown(() => unsubscribe(CHANNELS.notice, listen))
  const redis = openRedis({ url: server.url, timeout: 200 })!
  t.teardown(() => redis.close())
  t.ok(await redis.waitUntilUp(5000), 'connected')
  const count = (event: string) => notices.filter((n) => n.event === event).length

  await server.kill()
  t.ok(await until(() => count('redis_outage') === 1, 5000), 'the kill starts an outage')
  await server.restart()
  t.ok(await until(() => count('redis_recovered') === 1, 10_000), 'the restart ends it')
  // It flaps: down again at once, and back.
  await server.kill()
  t.ok(await until(() => !redis.isUp(), 5000), 'down again')
  redis.reportFailure(new Error('command timed out'))
  await server.restart()
  t.ok(await until(() => redis.isUp(), 10_000), 'and back again')
  t.equal(count('redis_outage'), 1, 'the flap continued the episode: still one outage announced')

  // A command timing out long after the recovery is a new episode.
  await sleep(10_500)
  redis.reportFailure(new Error('command timed out'))
  t.equal(count('redis_outage'), 2, 'a failure after the flap window is announced')
  redis.reportSuccess()
  t.equal(notices.at(-1)?.event, 'redis_recovered', 'and a success ends it')
})
