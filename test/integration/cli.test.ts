// The gateway command line: --check, its "file:line key.path: message" problem list, ${VAR} interpolation,
// how the config file is chosen (--config, GATEWAY_CONFIG, embedded defaults), --help and bad flags.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runCli } from '../helpers/gateway.ts'

// Each subtest spawns its own short-lived processes on its own files: run a few at a time.
t.jobs = 4

const dir = mkdtempSync(join(tmpdir(), 'gateway-cli-test-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let written = 0

/** Writes `yaml` to a fresh file and returns its path. */
function configFile(yaml: string): string {
  const file = join(dir, `config-${++written}.yaml`)
  writeFileSync(file, yaml)
  return file
}

/**
 * Variables the tests rely on being unset, whatever the surrounding environment holds. NODE_OPTIONS too:
 * tap puts its process-tracking --import there, which only slows each short-lived CLI run down.
 */
const UNSET: NodeJS.ProcessEnv = {
  GATEWAY_CONFIG: undefined, PORT: undefined, ADMIN_PORT: undefined, UPSTREAM_URL: undefined,
  REDIS_URL: undefined, LOG_LEVEL: undefined, NODE_OPTIONS: undefined,
}

interface Problem { file: string; line: number; path: string; message: string }

/** Runs --check on `yaml`; on failure parses stderr into one entry per "file:line key.path: message" line. */
async function check(yaml: string, env: NodeJS.ProcessEnv = {}) {
  const file = configFile(yaml)
  const result = await runCli(['--check', '--config', file], { ...UNSET, ...env })
  const lines = result.stderr.split('\n').slice(1).map((line) => line.trim()).filter(Boolean)
  const problems: Problem[] = lines.map((line) => {
    const m = /^(.*):(\d+) (\S+): (.*)$/.exec(line)
    return m ? { file: m[1]!, line: Number(m[2]), path: m[3]!, message: m[4]! } : { file: '', line: 0, path: '', message: line }
  })
  return { ...result, file, lines, problems, where: problems.map((p) => `${p.file}:${p.line} ${p.path}`) }
}

t.test('--check on the shipped config/gateway.yaml exits 0 and says ok', async (t) => {
  const result = await runCli(['--check', '--config', 'config/gateway.yaml'], UNSET)
  t.equal(result.code, 0, result.stderr)
  t.match(result.stdout.trim(), /^config\/gateway\.yaml: ok, [1-9]\d* routes$/)
  t.equal(result.stderr, '')
})

t.test('unknown keys, at the top level, in a section and in a route, each on its own line', async (t) => {
  const result = await check(`listen: { port: 0 }
upstream:
  url: http://127.0.0.1:1
  timeouts:
    connect: 1s
    conect: 2s
colour: blue
routes:
  - name: a
    match: GET /a
  - name: b
    match: GET /b
    cahce: 10s
upstream2: {}
`)
  t.equal(result.code, 1, 'a broken file exits 1')
  t.equal(result.stdout, '', 'nothing claims the file is ok')
  t.match(result.stderr, /^invalid config:\n/)
  t.same(result.lines, [
    `${result.file}:6 upstream.timeouts.conect: unknown key`,
    `${result.file}:7 colour: unknown key`,
    `${result.file}:13 routes[1].cahce: unknown key`,
    `${result.file}:14 upstream2: unknown key`,
  ])
})

t.test('wrong types: a string where a number is expected', async (t) => {
  const yaml = `upstream:
  url: http://127.0.0.1:1
  connections: lots
listen:
  port: "eighty"
`
  const result = await check(yaml)
  t.equal(result.code, 1)
  t.same(result.where, [`${result.file}:3 upstream.connections`, `${result.file}:5 listen.port`])
  const [connections, port] = result.problems
  t.not(connections?.message, 'required', 'a key that is present is not "required"')
  t.match(connections?.message, /number/i, 'the message says a number was expected')
  t.equal(port?.message, 'expected a port number', 'the schema\'s own message for ports')
})

t.test('a missing required key is reported as required', async (t) => {
  const result = await check('\n# no upstream\nlisten:\n  port: 1\n')
  t.equal(result.code, 1)
  t.same(result.lines, [`${result.file}:3 upstream: required`])
})

t.test('bad durations: "5 mins" is not a duration', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
  timeouts: { connect: 2s, headers: 5 mins }
shutdown:
  drainTimeout: 5 mins
`)
  t.equal(result.code, 1)
  t.same(result.where, [`${result.file}:3 upstream.timeouts.headers`, `${result.file}:5 shutdown.drainTimeout`])
  for (const problem of result.problems) t.match(problem.message, /expected a duration/)
})

t.test('bad sizes: "lots" is not a size, at the top level and in a route', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
listen:
  maxBodySize: lots
routes:
  - name: a
    match: GET /a
    maxBodySize: lots
`)
  t.equal(result.code, 1)
  t.same(result.where, [`${result.file}:4 listen.maxBodySize`, `${result.file}:8 routes[0].maxBodySize`])
  for (const problem of result.problems) t.match(problem.message, /expected a size/)
})

t.test('invalid match strings', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
routes:
  - name: fine
    match: GET /a
  - name: no such method
    match: FETCH /b
  - name: no slash
    match: GET nopath
`)
  t.equal(result.code, 1)
  t.same(result.where, [`${result.file}:7 routes[1].match`, `${result.file}:9 routes[2].match`])
  for (const problem of result.problems) t.match(problem.message, /expected "METHOD \/path"/)
})

t.test('duplicate route names point at the second use and name the first', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
routes:
  - name: a
    match: GET /a
  - name: b
    match: GET /b
  - name: a
    match: GET /c
`)
  t.equal(result.code, 1)
  t.equal(result.problems.length, 1)
  t.equal(result.where[0], `${result.file}:8 routes[2].name`)
  t.match(result.problems[0]?.message, /"a" is already used by routes\[0\]/)
})

t.test('two routes on the same method and path shape conflict', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
routes:
  - name: one
    match: GET /a/:id
  - name: two
    match: GET /b
  - name: three
    match: GET /a/:x
  - name: four
    match: PATCH /a/:y
`)
  t.equal(result.code, 1)
  t.equal(result.problems.length, 1, 'the same shape on another method (routes[3]) is no conflict')
  t.equal(result.where[0], `${result.file}:9 routes[2].match`)
  t.match(result.problems[0]?.message, /GET \/a\/:x is already matched by routes\[0\]/)
})

t.test('an unset ${VAR} without a default is reported on its line', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
listen:
  port: \${GW_TEST_UNSET_PORT}
redis:
  url: \${GW_TEST_UNSET_REDIS}
log:
  level: \${GW_TEST_EMPTY_LEVEL}
`, { GW_TEST_UNSET_PORT: undefined, GW_TEST_UNSET_REDIS: undefined, GW_TEST_EMPTY_LEVEL: '' })
  t.equal(result.code, 1)
  t.same(result.where, [
    `${result.file}:4 \${GW_TEST_UNSET_PORT}`,
    `${result.file}:6 \${GW_TEST_UNSET_REDIS}`,
    `${result.file}:8 \${GW_TEST_EMPTY_LEVEL}`, // set but empty counts as unset
  ])
  t.match(result.problems[0]?.message, /GW_TEST_UNSET_PORT is not set and has no default/)
})

t.test('YAML syntax errors are all reported, each on its own line', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
listen:
  port: 1
  port: 2
unmatched: forward
log: level: info
`)
  t.equal(result.code, 1)
  t.equal(result.lines.length, 2, 'both problems at once')
  const prefix = new RegExp(`^${result.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+ `)
  const duplicate = result.lines.find((line) => /Map keys must be unique/.test(line))
  const nested = result.lines.find((line) => /Nested mappings are not allowed in compact mappings/.test(line))
  t.match(duplicate, prefix)
  t.match(nested, prefix)
  t.match(duplicate, `${result.file}:5 `, 'the duplicate key is on line 5')
  t.match(nested, `${result.file}:7 `, 'the nested mapping is on line 7')
})

t.test('an unreadable or missing file', async (t) => {
  const missing = join(dir, 'does-not-exist.yaml')
  const result = await runCli(['--check', '--config', missing], UNSET)
  t.equal(result.code, 1)
  t.match(result.stderr, `${missing}: cannot read the config file`)
  t.match(result.stderr, /ENOENT/)
  const directory = await runCli(['--check', '--config', dir], UNSET)
  t.equal(directory.code, 1)
  t.match(directory.stderr, `${dir}: cannot read the config file`)
})

t.test('every schema problem in a file is reported at once, in line order', async (t) => {
  const result = await check(`upstream:
  url: http://127.0.0.1:1
shutdown:
  drainTimeout: 5 mins
listen:
  maxBodySize: lots
colour: blue
routes:
  - name: a
    match: GET /a
    cahce: 10s
  - name: b
    match: FETCH /b
  - name: a
    match: GET /c
`)
  t.equal(result.code, 1)
  t.same(result.where, [
    `${result.file}:4 shutdown.drainTimeout`,
    `${result.file}:6 listen.maxBodySize`,
    `${result.file}:7 colour`,
    `${result.file}:11 routes[0].cahce`,
    `${result.file}:13 routes[1].match`,
    `${result.file}:14 routes[2].name`,
  ])
})

t.test('${VAR} interpolation', async (t) => {
  t.test('a set variable is substituted; unset, the same file fails on that line', async (t) => {
    const yaml = 'listen: { port: 0 }\nupstream:\n  url: ${GW_TEST_UP_URL}\n'
    const set = await check(yaml, { GW_TEST_UP_URL: 'http://127.0.0.1:4567' })
    t.equal(set.code, 0, set.stderr)
    t.match(set.stdout, /: ok, 0 routes/)
    const unset = await check(yaml, { GW_TEST_UP_URL: undefined })
    t.same(unset.where, [`${unset.file}:3 \${GW_TEST_UP_URL}`])
  })

  t.test('${VAR:-default} uses the default when unset and the variable when set, also in flow mappings', async (t) => {
    const yaml = 'listen: { port: ${GW_TEST_PORT:-8080} }\nupstream: { url: ${GW_TEST_URL:-http://127.0.0.1:9} }\n'
      + 'shutdown:\n  drainTimeout: ${GW_TEST_DRAIN:-5 mins}\n'
    const defaulted = await check(yaml, { GW_TEST_PORT: undefined, GW_TEST_URL: undefined, GW_TEST_DRAIN: undefined })
    t.same(defaulted.where, [`${defaulted.file}:4 shutdown.drainTimeout`], 'the (bad) default was substituted; the url default was too')
    t.match(defaulted.problems[0]?.message, /expected a duration/)
    const set = await check(yaml, { GW_TEST_PORT: '8081', GW_TEST_URL: undefined, GW_TEST_DRAIN: '2s' })
    t.equal(set.code, 0, set.stderr)
  })

  t.test('an empty value (`url: ${REDIS_URL:-}`) means "use the default"', async (t) => {
    const result = await check(`upstream:
  url: http://127.0.0.1:1
redis:
  url: \${GW_TEST_REDIS:-}
shutdown:
  drainTimeout: \${GW_TEST_DRAIN2:-}
log:
  level:
`, { GW_TEST_REDIS: undefined, GW_TEST_DRAIN2: undefined })
    t.equal(result.code, 0, result.stderr)
  })

  t.test('placeholders inside comments are not errors', async (t) => {
    const result = await check('# set ${GW_TEST_NEVER_SET} if you like\nupstream: { url: http://127.0.0.1:1 } # or ${GW_TEST_NEVER_SET}\n',
      { GW_TEST_NEVER_SET: undefined })
    t.equal(result.code, 0, result.stderr)
  })
})

t.test('GATEWAY_CONFIG names the file when --config is absent', async (t) => {
  const good = configFile('upstream: { url: http://127.0.0.1:1 }\nroutes:\n  - { name: a, match: GET /a }\n')
  const bad = configFile('upstream: { url: http://127.0.0.1:1 }\nbogus: 1\n')
  const ok = await runCli(['--check'], { ...UNSET, GATEWAY_CONFIG: good })
  t.equal(ok.code, 0, ok.stderr)
  t.equal(ok.stdout.trim(), `${good}: ok, 1 routes`)
  const failing = await runCli(['--check'], { ...UNSET, GATEWAY_CONFIG: bad })
  t.equal(failing.code, 1)
  t.match(failing.stderr, `${bad}:2 bogus: unknown key`)
  const overridden = await runCli(['--check', '--config', good], { ...UNSET, GATEWAY_CONFIG: bad })
  t.equal(overridden.code, 0, '--config wins over GATEWAY_CONFIG')
  t.match(overridden.stdout, good)
})

t.test('with no config at all the embedded defaults are used', async (t) => {
  const result = await runCli(['--check'], UNSET)
  t.equal(result.code, 0, result.stderr)
  t.equal(result.stdout.trim(), '(embedded defaults): ok, 0 routes')
  const badEnv = await runCli(['--check'], { ...UNSET, UPSTREAM_URL: 'ftp://nope' })
  t.equal(badEnv.code, 1, 'the embedded defaults read UPSTREAM_URL')
  t.match(badEnv.stderr, /\(embedded defaults\):\d+ upstream\.url: expected an http/)
})

t.test('--help prints the usage and exits 0', async (t) => {
  const result = await runCli(['--help'], UNSET)
  t.equal(result.code, 0)
  t.match(result.stdout, /^usage: gateway \[--config FILE\] \[--check\]/)
  t.match(result.stdout, /--config, -c FILE/)
  t.match(result.stdout, /--check/)
  t.equal(result.stderr, '')
})

t.test('an unknown flag, a missing value or a stray argument exits non-zero with the usage', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--bogus'], /Unknown option '--bogus'/],
    [['--check', '--config'], /argument missing/],
    [['--check', 'config/gateway.yaml'], /Unexpected argument/],
  ]
  for (const [args, reason] of cases) {
    const result = await runCli(args, UNSET)
    t.not(result.code, 0, args.join(' '))
    t.equal(result.code, 2)
    t.match(result.stderr, reason)
    t.match(result.stderr, /usage: gateway/)
    t.equal(result.stdout, '')
  }
})
