// The JSON Schema and the README's config reference are generated from gateway/config/schema.ts;
// this fails when someone changed the schema without running `npm run schema`.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { README_FILE, renderReadme, renderSchema, SCHEMA_FILE } from '../../../gateway/config/write-schema.ts'

t.equal(readFileSync(SCHEMA_FILE, 'utf8'), renderSchema(), 'config/gateway.schema.json is current (run npm run schema)')
const readme = readFileSync(README_FILE, 'utf8')
t.equal(readme, renderReadme(readme), 'the README config reference is current (run npm run schema)')

t.test('the schema accepts ${VAR} placeholders where a number is expected', async (t) => {
  const schema = JSON.parse(renderSchema())
  const port = schema.properties.listen.properties.port
  t.equal(port.default, 8080)
  t.ok(port.anyOf.some((alt: { pattern?: string }) => alt.pattern && new RegExp(alt.pattern).test('${PORT:-8080}')))
})
