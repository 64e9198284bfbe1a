// The SalesFlow request mix against the demo API, and the cache hit rate it got (from the gateway's
// own /metrics, so the load generator need not read headers).
import { signDemoToken } from '../../deploy/demo-upstream/app.ts'
import type { MixRequest } from './load.ts'

/** alice and bob own leads 1–2000 and 2001–4000 in the demo API; carol and dave own none at first. */
const USERS = [
  { sub: 'alice', firstLead: 1 },
  { sub: 'bob', firstLead: 2001 },
  { sub: 'carol', firstLead: 0 },
  { sub: 'dave', firstLead: 0 },
]
const CYCLE = 20

/**
 * 4 users, each with 95% reads and 5% writes: per 20 requests, 1 write (PATCH of one of their 20
 * most-used leads, or POST of a new lead for users without any), about 5 lead lists, about 5 reads of
 * one of those 20 leads (dashboards instead for users without leads) and the rest dashboards. Each
 * write invalidates that user's cached answers. Users alternate request by request; their writes fall
 * at different points of the cycle.
 */
export async function salesFlowMix(): Promise<MixRequest[]> {
  const tokens = await Promise.all(USERS.map((user) => signDemoToken(user.sub, undefined, 24 * 3600)))
  const mix: MixRequest[] = []
  for (let slot = 0; slot < CYCLE; slot++) {
    USERS.forEach((user, u) => {
      const auth = { authorization: `Bearer ${tokens[u]}` }
      const hotLead = user.firstLead + ((slot * 7 + u) % 20)
      if (slot === (7 + 5 * u) % CYCLE) {
        const json = { ...auth, 'content-type': 'application/json' }
        mix.push(user.firstLead
          ? { method: 'PATCH', path: `/api/leads/${hotLead}`, headers: json, body: `{"p_score":${(slot * 3) % 100}}` }
          : { method: 'POST', path: '/api/leads', headers: json, body: '{"name":"Bench Lead"}' })
      } else if (slot % 4 === 1) {
        mix.push({ method: 'GET', path: '/api/leads?limit=20', headers: auth })
      } else if (slot % 2 === 1 && user.firstLead) {
        mix.push({ method: 'GET', path: `/api/leads/${hotLead}`, headers: auth })
      } else {
        mix.push({ method: 'GET', path: '/api/dashboard', headers: auth })
      }
    })
  }
  return mix
}

export type CacheCounts = Map<string, number>

/** gateway_cache_lookups_total by "route|result". */
export async function cacheCounts(adminUrl: string): Promise<CacheCounts> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const counts: CacheCounts = new Map()
  for (const match of text.matchAll(/^gateway_cache_lookups_total\{([^}]*)\}\s+(\S+)$/gm)) {
    const labels = Object.fromEntries([...match[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    const key = `${labels.route}|${labels.result}`
    counts.set(key, (counts.get(key) ?? 0) + Number(match[2]))
  }
  return counts
}

export interface HitRate { route: string; served: number; lookups: number; rate: number }

/** Hits (fresh or stale) over lookups, bypass excluded, per route and "all", between two scrapes. */
export function hitRates(before: CacheCounts, after: CacheCounts): HitRate[] {
  const byRoute = new Map<string, { served: number; lookups: number }>()
  for (const [key, value] of after) {
    const [route, result] = key.split('|') as [string, string]
    if (result === 'bypass') continue
    const delta = value - (before.get(key) ?? 0)
    for (const name of [route, 'all']) {
      const entry = byRoute.get(name) ?? { served: 0, lookups: 0 }
      entry.lookups += delta
      if (result === 'hit' || result === 'stale') entry.served += delta
      byRoute.set(name, entry)
    }
  }
  return [...byRoute].map(([route, { served, lookups }]) => ({ route, served, lookups, rate: lookups ? served / lookups : 0 }))
}
