import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { createTokenVerifier, groupAddress } from '../../../gateway/routing/client.ts'

t.test('IPv6 clients are grouped by prefix; IPv4 and v4-mapped stay whole', async (t) => {
  t.equal(groupAddress('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 64), '2001:db8:1:2::/64')
  t.equal(groupAddress('2001:db8:1:2:ffff::1', 64), '2001:db8:1:2::/64', 'same /64, same key')
  t.equal(groupAddress('2001:db8:1:3::1', 64), '2001:db8:1:3::/64')
  t.equal(groupAddress('2001:db8:1:2:aaaa::1', 128), '2001:db8:1:2:aaaa::1/128')
  t.equal(groupAddress('203.0.113.9', 64), '203.0.113.9')
  t.equal(groupAddress('::ffff:203.0.113.9', 64), '203.0.113.9')
  t.equal(groupAddress('not-an-ip', 64), 'not-an-ip')
})

const sign = (claims: Record<string, unknown>, secret = 'hs-secret', expires = '1h') =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(expires).sign(new TextEncoder().encode(secret))

t.test('HS256: a valid token yields its sub; forged, expired or wrong-audience tokens yield null', async (t) => {
  const verify = createTokenVerifier({ secret: 'hs-secret', jwksUrl: '', audience: 'salesflow' })!
  t.equal(await verify(await sign({ sub: 'alice', aud: 'salesflow' })), 'alice')
  t.equal(await verify(await sign({ sub: 'alice', aud: 'salesflow' }, 'other-secret')), null, 'bad signature')
  t.equal(await verify(await sign({ sub: 'alice', aud: 'salesflow' }, 'hs-secret', '-1m')), null, 'expired')
  t.equal(await verify(await sign({ sub: 'alice', aud: 'elsewhere' })), null, 'wrong audience')
  t.equal(await verify(await sign({ aud: 'salesflow' })), null, 'no sub')
  t.equal(createTokenVerifier({ secret: '', jwksUrl: '' }), null, 'no key material: no users')
})

t.test('JWKS: tokens signed by a key the JWKS URL publishes are verified', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }
  const server = createServer((_req, res) => res.end(JSON.stringify({ keys: [jwk] })))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const verify = createTokenVerifier({ secret: '', jwksUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json` })!
  const token = await new SignJWT({ sub: 'bob' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('1h').sign(privateKey)
  t.equal(await verify(token), 'bob')
  const stranger = await generateKeyPair('ES256')
  const forged = await new SignJWT({ sub: 'bob' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setExpirationTime('1h').sign(stranger.privateKey)
  t.equal(await verify(forged), null)
})
