// Phase `identify`: who is asking. The client IP (IPv6 grouped by prefix, since one subscriber owns a
// whole /64) and, only where a phase needs it, the user: the `sub` of a bearer JWT whose signature,
// expiry, issuer and audience check out. A missing or forged token yields no user, never an error.
import { createHash } from 'node:crypto'
import ipaddr from 'ipaddr.js'
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from 'jose'
import { LRUCache } from 'lru-cache'
import type { Config } from '../config/schema.ts'
import type { Ctx, Verdict } from '../pipeline.ts'

export interface Client {
  /** The client's address, as in logs. */
  readonly ip: string
  /** The address as a counter key: IPv4 as is, IPv6 cut to identity.ipv6Prefix. */
  readonly ipKey: string
  /** The verified JWT `sub`, or null (no token, a bad one, or nobody asked). */
  readonly user: string | null
}

export type TokenVerifier = (token: string) => Promise<string | null>

/** Only where a limit or the cache will ask; synchronous unless a token must be verified. */
export function identify(ctx: Ctx): Verdict | Promise<Verdict> {
  const route = ctx.route ?? ctx.plan.unmatched
  if (!route.rateLimits && !route.needsUser) return undefined
  const ip = ctx.clientIp
  const ipKey = groupAddress(ip, ctx.plan.config.identity.ipv6Prefix)
  const verify = ctx.services.verifyToken
  const token = route.needsUser && verify ? bearerToken(ctx.req.headers.authorization) : null
  if (!token) return void (ctx.client = { ip, ipKey, user: null })
  return verify!(token).then((user) => void (ctx.client = { ip, ipKey, user }))
}

export function groupAddress(address: string, ipv6Prefix: number): string {
  if (!ipaddr.isValid(address)) return address
  let parsed = ipaddr.parse(address)
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address()
  if (parsed.kind() === 'ipv4') return parsed.toString()
  const bytes = parsed.toByteArray()
  for (let bit = ipv6Prefix; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7))
  return `${ipaddr.fromByteArray(bytes).toString()}/${ipv6Prefix}`
}

function bearerToken(header: string | undefined): string | null {
  const match = header ? /^Bearer\s+([A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_.+/=]*)\s*$/i.exec(header) : null
  return match ? match[1]! : null
}

/** Verifies tokens with the configured secret or JWKS; remembers verified tokens until they expire. */
export function createTokenVerifier(jwt: Config['identity']['jwt']): TokenVerifier | null {
  if (!jwt.secret && !jwt.jwksUrl) return null
  const key: Uint8Array | JWTVerifyGetKey = jwt.jwksUrl ? createRemoteJWKSet(new URL(jwt.jwksUrl)) : new TextEncoder().encode(jwt.secret)
  const options = {
    ...(jwt.jwksUrl ? {} : { algorithms: ['HS256', 'HS384', 'HS512'] }),
    ...(jwt.issuer ? { issuer: jwt.issuer } : {}),
    ...(jwt.audience ? { audience: jwt.audience } : {}),
  }
  // Keyed by a hash of the token so that raw tokens never sit in memory longer than the request.
  const verified = new LRUCache<string, { sub: string }>({ max: 10_000, ttl: 60_000 })
  return async (token) => {
    const id = createHash('sha256').update(token).digest('base64url')
    const hit = verified.get(id)
    if (hit) return hit.sub
    try {
      const { payload } = await jwtVerify(token, key as Uint8Array, options)
      if (typeof payload.sub !== 'string' || !payload.sub) return null
      const ttl = payload.exp ? Math.min(60_000, payload.exp * 1000 - Date.now()) : 60_000
      if (ttl > 0) verified.set(id, { sub: payload.sub }, { ttl })
      return payload.sub
    } catch {
      return null
    }
  }
}
