import t from 'tap'
import { FILTERED, scrubDeep, scrubEvent, scrubSpan, scrubString } from '../../../gateway/observability/scrub.ts'

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl'

t.test('strings: JWTs, bearer tokens and sensitive query parameters', async (t) => {
  t.equal(scrubString(`token ${JWT} leaked`), `token ${FILTERED} leaked`)
  t.equal(scrubString('Authorization: Bearer abc123.def'), `Authorization: Bearer ${FILTERED}`)
  t.equal(scrubString('/api/leads?status=new&access_token=s3cret&api_key=k'), `/api/leads?status=new&access_token=${FILTERED}&api_key=${FILTERED}`)
  t.equal(scrubString('nothing to hide'), 'nothing to hide')
})

t.test('objects: sensitive keys filtered at any depth, the rest kept', async (t) => {
  t.same(scrubDeep({ headers: { Authorization: 'Basic x', 'X-Api-Key': 'k', accept: 'json' }, nested: [{ password: 'p', note: JWT }] }),
    { headers: { Authorization: FILTERED, 'X-Api-Key': FILTERED, accept: 'json' }, nested: [{ password: FILTERED, note: FILTERED }] })
})

t.test('events: bodies, cookies and the user go; spans are left to beforeSendSpan', async (t) => {
  const spans = [{ description: 'kept as is here' }]
  const event = scrubEvent({ request: { data: 'body', cookies: { s: '1' }, url: '/x?token=t' }, user: { id: 'alice' }, tags: { route: 'leads' }, spans })
  t.same(event, { request: { url: `/x?token=${FILTERED}` }, tags: { route: 'leads' }, spans })
})

t.test('spans: description and attributes are filtered, the rest kept', async (t) => {
  const span = scrubSpan({ span_id: 'a1', description: `GET /x?token=${JWT}`, data: { 'http.request.header.authorization': 'Bearer x', 'gateway.route': 'leads' } })
  t.same(span, { span_id: 'a1', description: `GET /x?token=${FILTERED}`, data: { 'http.request.header.authorization': FILTERED, 'gateway.route': 'leads' } })
})
