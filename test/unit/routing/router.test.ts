import t from 'tap'
import { createRouter } from '../../../gateway/routing/router.ts'

const router = createRouter([
  { route: 'lead', specs: [{ methods: ['GET'], path: '/api/leads/:id' }] },
  { route: 'writes', specs: [{ methods: ['POST'], path: '/api/leads' }, { methods: ['PATCH', 'DELETE'], path: '/api/leads/:id' }] },
  { route: 'admin-host', specs: [{ methods: ['GET'], path: '/stats', host: 'admin.example' }] },
  { route: 'files', specs: [{ methods: ['GET'], path: '/files/*' }] },
  { route: 'head-only', specs: [{ methods: ['HEAD'], path: '/probe' }] },
  { route: 'get-probe', specs: [{ methods: ['GET'], path: '/probe' }] },
])

t.test('matches by method and path, with params, ignoring the query', async (t) => {
  t.same(router.find('GET', 'x', '/api/leads/42?x=1'), { route: 'lead', params: { id: '42' } })
  t.equal(router.find('PATCH', 'x', '/api/leads/42')?.route, 'writes')
  t.equal(router.find('POST', 'x', '/api/leads')?.route, 'writes')
  t.equal(router.find('PUT', 'x', '/api/leads/42'), null)
  t.equal(router.find('GET', 'x', '/api/leads'), null)
  t.equal(router.find('GET', undefined, '/files/a/b.txt')?.route, 'files')
})

t.test('GET routes answer HEAD unless HEAD is claimed explicitly', async (t) => {
  t.equal(router.find('HEAD', 'x', '/api/leads/1')?.route, 'lead')
  t.equal(router.find('HEAD', 'x', '/probe')?.route, 'head-only')
})

t.test('host constraints ignore the port', async (t) => {
  t.equal(router.find('GET', 'admin.example:8080', '/stats')?.route, 'admin-host')
  t.equal(router.find('GET', 'other.example', '/stats'), null)
})

t.test('two routes claiming the same method and path shape conflict', async (t) => {
  const build = () => createRouter([
    { route: 'a', specs: [{ methods: ['GET'], path: '/a/:id' }] },
    { route: 'b', specs: [{ methods: ['GET'], path: '/a/:other' }] },
  ])
  t.throws(build, { name: 'RouteConflict', routeIndex: 1, message: /already matched by routes\[0\]/ })
})
