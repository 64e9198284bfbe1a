// The Dockerfile, performed for real without Docker: its instructions are parsed, each stage is built into a
// directory standing in for the image's filesystem (COPY from the build context through .dockerignore, COPY
// --from another stage, RUN npm ci, WORKDIR, ENV, USER), and the image's ENTRYPOINT/CMD and HEALTHCHECK are
// run from there with the image's environment. Container paths (/etc/gateway/gateway.yaml) are mapped into
// that directory; that mapping is the only thing rewritten. An instruction this file does not know fails the
// test, so a changed recipe is either understood here or noticed.
import t from 'tap'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, posix } from 'node:path'
import type { Readable } from 'node:stream'
import { ROOT } from '../helpers/gateway.ts'
import { refusingPort, startUpstream } from '../helpers/upstreams.ts'
import { createDatabase, findPostgresBin, startTempCluster } from '../helpers/postgres.ts'
import { run, type RunResult } from '../helpers/run.ts'
import { orTimeout } from '../helpers/wait.ts'

// npm ci of every dependency (the demo stage) on a loaded 2-core machine: far more than tap's default.
t.setTimeout(600_000)

// ---- Dockerfile ------------------------------------------------------------------------------------------

interface Instruction { op: string; args: string; line: number }
interface Stage { name: string; from: string; steps: Instruction[] }

const KNOWN = new Set(['FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'HEALTHCHECK', 'CMD', 'ENTRYPOINT', 'LABEL', 'STOPSIGNAL'])

/** Stages in order; comment lines dropped, `\` continuations joined, as Docker reads them. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1
    let logical = lines[i]!.trim()
    if (logical === '' || logical.startsWith('#')) continue
    while (logical.endsWith('\\') && i + 1 < lines.length) {
      logical = logical.slice(0, -1)
      const next = lines[++i]!.trim()
      if (!next.startsWith('#')) logical += ' ' + next
    }
    const match = /^(\w+)\s+(.*)$/.exec(logical.trim())
    if (!match) throw new Error(`Dockerfile:${first}: cannot read "${logical}"`)
    const op = match[1]!.toUpperCase()
    const args = match[2]!.trim()
    if (!KNOWN.has(op)) throw new Error(`Dockerfile:${first}: ${op} is not performed by this test; teach it`)
    if (op === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      if (!from) throw new Error(`Dockerfile:${first}: cannot read FROM ${args}`)
      stages.push({ from: from[1]!, name: from[2] ?? String(stages.length), steps: [] })
      continue
    }
    const stage = stages.at(-1)
    if (!stage) throw new Error(`Dockerfile:${first}: ${op} before FROM`)
    stage.steps.push({ op, args, line: first })
  }
  return stages
}

/** Exec form (a JSON array) or null for shell form. */
function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null
  const parsed: unknown = JSON.parse(args)
  if (!Array.isArray(parsed) || !parsed.every((part) => typeof part === 'string')) throw new Error(`not a JSON array of strings: ${args}`)
  return parsed
}

/** ENV a=b c="d e" (the key=value form only). */
function parseEnv(args: string): Record<string, string> {
  const env: Record<string, string> = {}
  const rest = args.replace(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g, (_, key: string, value: string) => {
    env[key] = value.startsWith('"') ? JSON.parse(value) as string : value
    return ''
  })
  if (rest.trim() !== '') throw new Error(`ENV ${args}: only the key=value form is understood`)
  return env
}

// ---- .dockerignore ---------------------------------------------------------------------------------------

/** Docker's rules: patterns relative to the context root, `**` any depth, `!` re-includes, the last match wins, a matched directory excludes its contents. */
function dockerignore(text: string): (rel: string) => boolean {
  const rules = text.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#')).map((line) => {
    const negate = line.startsWith('!')
    const pattern = posix.normalize((negate ? line.slice(1) : line).trim().replace(/^\/+/, ''))
    let source = ''
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i]!
      if (c === '*' && pattern[i + 1] === '*') {
        source += pattern[i + 2] === '/' ? '(?:.*/)?' : '.*'
        i += pattern[i + 2] === '/' ? 2 : 1
      } else if (c === '*') source += '[^/]*'
      else if (c === '?') source += '[^/]'
      else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
    return { negate, regex: new RegExp(`^${source}$`) }
  })
  return (rel) => {
    const parts = rel.split('/')
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'))
    let ignored = false
    for (const rule of rules) if (prefixes.some((prefix) => rule.regex.test(prefix))) ignored = !rule.negate
    return ignored
  }
}

// ---- performing a stage ----------------------------------------------------------------------------------

interface Image {
  stage: Stage
  /** The directory standing in for the image's filesystem root. */
  root: string
  workdir: string
  env: Record<string, string>
  user: string | null
  expose: string[]
  healthcheck: { options: string; command: string[] } | null
  /** ENTRYPOINT + CMD, as set in this stage (the base image's are not known here). */
  entrypoint: string[] | null
  cmd: string[] | null
  /** Files COPY took from the build context, relative to the context. */
  fromContext: string[]
}

/** What a RUN may use from the machine: the npm cache and registry settings, not the test runner's own variables. */
function buildEnv(imageEnv: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'NODE_OPTIONS' || key.startsWith('TAP') || (key.startsWith('npm_') && !key.startsWith('npm_config_'))) continue
    env[key] = value
  }
  return { ...env, ...imageEnv }
}

class Builder {
  readonly stages: Stage[]
  readonly context: string
  readonly ignored: (rel: string) => boolean
  readonly dir: string
  readonly built = new Map<string, Promise<Image>>()

  constructor(dockerfile: string, context: string, ignore: string, dir: string) {
    this.stages = parseDockerfile(dockerfile)
    this.context = context
    this.ignored = dockerignore(ignore)
    this.dir = dir
  }

  build(name: string): Promise<Image> {
    let image = this.built.get(name)
    if (!image) {
      const stage = this.stages.find((s) => s.name === name)
      if (!stage) throw new Error(`no stage ${name} in the Dockerfile`)
      image = this.perform(stage)
      this.built.set(name, image)
    }
    return image
  }

  private async perform(stage: Stage): Promise<Image> {
    const root = join(this.dir, stage.name)
    mkdirSync(root, { recursive: true })
    const image: Image = { stage, root, workdir: '/', env: {}, user: null, expose: [], healthcheck: null, entrypoint: null, cmd: null, fromContext: [] }
    const host = (path: string) => join(root, posix.resolve(image.workdir, path))
    for (const step of stage.steps) {
      const where = `Dockerfile:${step.line} ${step.op}`
      switch (step.op) {
        case 'WORKDIR':
          image.workdir = posix.resolve(image.workdir, step.args)
          mkdirSync(host('.'), { recursive: true })
          break
        case 'ENV':
          Object.assign(image.env, parseEnv(step.args))
          break
        case 'USER':
          image.user = step.args
          break
        case 'EXPOSE':
          image.expose.push(...step.args.split(/\s+/))
          break
        case 'LABEL':
        case 'STOPSIGNAL':
          break
        case 'CMD':
          image.cmd = execForm(step.args)
          if (!image.cmd) throw new Error(`${where}: shell form; use exec form so that signals reach node`)
          break
        case 'ENTRYPOINT':
          image.entrypoint = execForm(step.args)
          if (!image.entrypoint) throw new Error(`${where}: shell form; use exec form so that signals reach node`)
          image.cmd = null // Docker: setting ENTRYPOINT resets an inherited CMD
          break
        case 'HEALTHCHECK': {
          const hc = /^((?:--\S+\s+)*)CMD\s+(.*)$/.exec(step.args)
          const command = hc ? execForm(hc[2]!) : null
          if (!hc || !command) throw new Error(`${where}: expected HEALTHCHECK [options] CMD ["exec", "form"]`)
          image.healthcheck = { options: hc[1]!.trim(), command }
          break
        }
        case 'COPY':
          await this.copy(step, image, host, where)
          break
        case 'RUN':
          await this.run(step, image, host, where)
          break
        default:
          throw new Error(`${where}: not performed by this test`)
      }
    }
    return image
  }

  private async copy(step: Instruction, image: Image, host: (path: string) => string, where: string): Promise<void> {
    const words = execForm(step.args) ?? step.args.split(/\s+/)
    let from: string | null = null
    while (words[0]?.startsWith('--')) {
      const flag = words.shift()!
      if (flag.startsWith('--from=')) from = flag.slice('--from='.length)
      else if (!flag.startsWith('--chown=') && !flag.startsWith('--chmod=') && flag !== '--link') throw new Error(`${where}: flag ${flag} not understood`)
    }
    const dest = words.pop()
    if (!dest || words.length === 0) throw new Error(`${where}: expected sources and a destination`)
    if (words.some((source) => /[*?[]/.test(source))) throw new Error(`${where}: wildcards are not performed by this test`)
    const intoDir = dest.endsWith('/') || words.length > 1
    for (const source of words) {
      if (from !== null) {
        const other = await this.build(from)
        const src = join(other.root, posix.resolve('/', source))
        // A directory's contents go into dest; a file becomes dest, or goes into it when dest is a directory.
        const target = !statSync(src).isDirectory() && intoDir ? join(host(dest), posix.basename(source)) : host(dest)
        mkdirSync(dirname(target), { recursive: true })
        cpSync(src, target, { recursive: true, verbatimSymlinks: true })
        continue
      }
      const rel = posix.normalize(source).replace(/^\.?\/+/, '')
      const src = join(this.context, rel)
      if (!existsSync(src) || this.ignored(rel)) throw new Error(`${where}: ${source} is not in the build context (missing, or excluded by .dockerignore)`)
      if (statSync(src).isDirectory()) {
        for (const file of walk(src)) {
          const fileRel = posix.join(rel, file)
          if (this.ignored(fileRel)) continue
          mkdirSync(dirname(join(host(dest), file)), { recursive: true })
          cpSync(join(src, file), join(host(dest), file))
          image.fromContext.push(fileRel)
        }
      } else {
        const target = intoDir ? join(host(dest), posix.basename(rel)) : host(dest)
        mkdirSync(dirname(target), { recursive: true })
        cpSync(src, target)
        image.fromContext.push(rel)
      }
    }
  }

  /** Only `npm ci [--flags]` is performed (with --prefer-offline, so that the machine's npm cache serves it). */
  private async run(step: Instruction, image: Image, host: (path: string) => string, where: string): Promise<void> {
    const words = step.args.split(/\s+/)
    if (words[0] !== 'npm' || words[1] !== 'ci' || !words.slice(2).every((word) => /^--[\w-]+(=[\w-]+)?$/.test(word))) {
      throw new Error(`${where}: only "npm ci --flags" is performed by this test, got: RUN ${step.args}`)
    }
    const result = await run('npm', [...words.slice(1), '--prefer-offline'], { cwd: host('.'), env: buildEnv(image.env) })
    if (result.code !== 0) throw new Error(`${where}: RUN ${step.args} exited ${result.code}\n${result.stdout}\n${result.stderr}`)
  }
}

function walk(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name
    return entry.isDirectory() ? walk(dir, rel) : [rel]
  })
}

// ---- running an image ------------------------------------------------------------------------------------

/** A container path → the built directory, when the image has it there; anything else unchanged. */
function mapPath(image: Image, value: string): string {
  return value.startsWith('/') && existsSync(join(image.root, value)) ? join(image.root, value) : value
}

/** The container's environment: the image's ENV (paths mapped), PATH to find node, and the run's -e values. */
function containerEnv(image: Image, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH }
  for (const [key, value] of Object.entries(image.env)) env[key] = mapPath(image, value)
  return { ...env, ...extra }
}

/** argv as the image would exec it: `node` is this machine's node; container paths are mapped. */
function argv(image: Image, command: string[]): [string, string[]] {
  const [program, ...args] = command
  if (program !== 'node') throw new Error(`the image runs ${program}, not node: this test runs node only`)
  return [process.execPath, args.map((arg) => mapPath(image, arg))]
}

interface Running {
  proc: ChildProcessByStdio<null, Readable, Readable>
  output: () => string
  exited: Promise<number | null>
  /** Resolves with the first complete output line (stdout or stderr) containing `text`; rejects if the process exits first. */
  waitFor(text: string): Promise<string>
  stop(): Promise<void>
}

function start(image: Image, env: NodeJS.ProcessEnv): Running {
  const [program, args] = argv(image, [...image.entrypoint ?? [], ...image.cmd ?? []])
  const proc = spawn(program, args, { cwd: join(image.root, image.workdir), env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const listeners = new Set<() => void>()
  const onData = (chunk: string) => { output += chunk; for (const listener of listeners) listener() }
  proc.stdout.setEncoding('utf8').on('data', onData)
  proc.stderr.setEncoding('utf8').on('data', onData)
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  return {
    proc,
    output: () => output,
    exited,
    waitFor: (text) => new Promise((resolve, reject) => {
      const check = () => {
        const at = output.indexOf(text)
        const end = at === -1 ? -1 : output.indexOf('\n', at)
        if (end === -1) return // not yet printed, or its line not yet complete
        listeners.delete(check)
        resolve(output.slice(output.lastIndexOf('\n', at) + 1, end))
      }
      listeners.add(check)
      check()
      void exited.then((code) => { if (listeners.delete(check)) reject(new Error(`exited ${code} before printing "${text}":\n${output}`)) })
    }),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGKILL')
      await exited
    },
  }
}

function healthcheck(image: Image, env: NodeJS.ProcessEnv): Promise<RunResult> {
  const [program, args] = argv(image, image.healthcheck!.command)
  return run(program, args, { cwd: join(image.root, image.workdir), env })
}

// ---- the tests -------------------------------------------------------------------------------------------

const dockerfileText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
const work = mkdtempSync(join(tmpdir(), 'container-test-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const builder = new Builder(dockerfileText, ROOT, readFileSync(join(ROOT, '.dockerignore'), 'utf8'), work)
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> }
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }> }

t.test('the recipe', async (t) => {
  const stages = builder.stages
  const final = stages.at(-1)!
  t.equal(final.name, 'gateway', 'the default target (the last stage) is the gateway')
  for (const stage of stages) t.match(stage.from, /^node:24(\.|-|$)/, `stage ${stage.name} is built on Node 24 (${stage.from})`)
  const ops = (stage: Stage, op: string) => stage.steps.filter((step) => step.op === op)
  t.equal(ops(final, 'RUN').length, 0, 'the gateway stage runs nothing: it only copies the installed dependencies')
  t.ok(ops(final, 'COPY').some((step) => /--from=\S+\s+\S*node_modules/.test(step.args)), 'node_modules come from another stage')
  const installs = stages.flatMap((stage) => ops(stage, 'RUN').map((step) => ({ stage: stage.name, args: step.args })))
  const fed = installs.filter((run) => final.steps.some((step) => step.args.includes(`--from=${run.stage} `)))
  t.ok(fed.length > 0 && fed.every((run) => run.args.includes('--omit=dev')), 'what the gateway copies was installed with --omit=dev')
})

t.test('the gateway image', async (t) => {
  const image = await builder.build('gateway')
  const app = join(image.root, image.workdir)

  t.test('what is in it', async (t) => {
    t.not(image.user, null, 'USER is set')
    t.notMatch(image.user ?? 'root', /^(root|0)(:|$)/, 'and is not root')
    t.ok(image.expose.includes('8080') && image.expose.includes('9090'), 'EXPOSE 8080 9090')
    t.same(image.entrypoint?.slice(0, 1), ['node'], 'ENTRYPOINT is exec form starting node itself (PID 1 gets SIGTERM)')
    t.equal(image.env.GATEWAY_CONFIG, '/etc/gateway/gateway.yaml', 'the config path is /etc/gateway/gateway.yaml')
    t.equal(readFileSync(join(image.root, 'etc/gateway/gateway.yaml'), 'utf8'), readFileSync(join(ROOT, 'config/gateway.yaml'), 'utf8'),
      'and holds config/gateway.yaml')
    t.ok(image.healthcheck?.command.join(' ').includes('/healthz'), 'HEALTHCHECK asks /healthz')

    // The lockfile marks every package only devDependencies need with dev: true.
    const wronglyPresent: string[] = []
    const missing: string[] = []
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (!path.startsWith('node_modules/')) continue
      const installed = existsSync(join(app, path, 'package.json'))
      if (entry.dev && installed) wronglyPresent.push(path)
      if (!entry.dev && !entry.optional && !entry.devOptional && !installed) missing.push(path)
    }
    t.same(wronglyPresent, [], 'no package the lockfile marks dev is installed')
    t.same(missing, [], 'every production package of the lockfile is installed')
    for (const name of new Set(['tap', 'typescript', ...Object.keys(pkg.devDependencies)])) {
      if (!(name in pkg.dependencies)) t.notOk(existsSync(join(app, 'node_modules', name)), `${name} (dev) is not in node_modules`)
    }
    for (const name of Object.keys(pkg.dependencies)) t.ok(existsSync(join(app, 'node_modules', name, 'package.json')), `${name} is in node_modules`)
    t.notOk(image.fromContext.some((file) => /(^|\/)(test|node_modules|\.git)\//.test(file)), 'no tests, node_modules or .git came from the context')
    t.ok(image.fromContext.includes('gateway/main.ts'), 'the gateway sources did')
  })

  t.test('it runs: /healthz, HEALTHCHECK, a proxied request, SIGTERM exits 0', async (t) => {
    const upstream = await startUpstream((req, res) => {
      res.setHeader('content-type', 'text/plain')
      res.end(`upstream saw ${req.url}`)
    })
    t.teardown(() => upstream.close())
    // The image's ENV with the ports moved to free ones (a container would publish 8080/9090), and the run's
    // -e UPSTREAM_URL. Nothing else from this machine's environment (REDIS_URL, SENTRY_DSN…) leaks in.
    const [port, adminPort] = [await refusingPort(), await refusingPort()]
    const env = containerEnv(image, { UPSTREAM_URL: upstream.url, PORT: String(port), ADMIN_PORT: String(adminPort) })
    const gateway = start(image, env)
    t.teardown(() => gateway.stop())

    const listening = JSON.parse(await gateway.waitFor('"gateway listening"')) as Record<string, unknown>
    t.equal(listening.config, join(image.root, 'etc/gateway/gateway.yaml'), 'it runs the image\'s /etc/gateway/gateway.yaml')
    t.equal(listening.port, port, 'on PORT')
    t.equal(listening.adminPort, adminPort, 'and ADMIN_PORT')

    const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`)
    t.equal(health.status, 200, '/healthz answers 200')
    const check = await healthcheck(image, env)
    t.equal(check.code, 0, 'the HEALTHCHECK command exits 0', { stderr: check.stderr })
    const refused = await healthcheck(image, { ...env, ADMIN_PORT: String(await refusingPort()) })
    t.not(refused.code, 0, 'and exits non-zero when nothing answers on the admin port')

    const res = await fetch(`http://127.0.0.1:${port}/api/ping?x=1`)
    t.equal(res.status, 200, 'a proxied request answers 200')
    t.equal(await res.text(), 'upstream saw /api/ping?x=1', 'a request is proxied to UPSTREAM_URL')
    t.match(res.headers.get('via') ?? '', /gateway/, 'through the gateway')

    gateway.proc.kill('SIGTERM')
    const code = await orTimeout(gateway.exited, 30_000)
    t.equal(code, 0, 'SIGTERM: the process drains and exits 0 (hang guard 30s)', { output: gateway.output().slice(-2000) })
    t.match(gateway.output(), /"msg":"stopped"/, 'after logging that it stopped')
  })
})

t.test('the demo-upstream image (deploy/docker-compose.yml runs it)', async (t) => {
  const image = await builder.build('demo-upstream')
  const skip = findPostgresBin() ? false : 'no Postgres server binaries in /usr/lib/postgresql (apt-get install postgresql)'
  t.test('in Postgres mode (DATABASE_URL), as compose runs it', { skip }, async (t) => {
    const cluster = await startTempCluster()
    t.teardown(() => cluster.stop())
    const port = await refusingPort()
    const env = containerEnv(image, { DEMO_PORT: String(port), DEMO_HOST: '127.0.0.1', DEMO_SEED_LEADS: '50',
      DATABASE_URL: await createDatabase(cluster, 'demo_image') })
    const demo = start(image, env)
    t.teardown(() => demo.stop())
    await demo.waitFor('listening')

    t.equal((await fetch(`http://127.0.0.1:${port}/internal/pool`)).status, 200, 'the leads are in Postgres (its pool is shown)')
    const login = await fetch(`http://127.0.0.1:${port}/auth/login`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: 'demo' }),
    })
    const { access_token: token } = await login.json() as { access_token: string }
    const leads = await fetch(`http://127.0.0.1:${port}/api/leads?limit=3`, { headers: { authorization: `Bearer ${token}` } })
    t.equal(leads.status, 200, 'migrated and seeded from deploy/postgres: alice\'s leads are listed')
    await leads.arrayBuffer()
    demo.proc.kill('SIGTERM')
    t.equal(await orTimeout(demo.exited, 30_000), 0, 'SIGTERM: exits 0 (hang guard 30s)', { output: demo.output().slice(-2000) })
  })

  t.notMatch(image.user ?? 'root', /^(root|0)(:|$)/, 'USER is not root')
  t.same(image.entrypoint?.slice(0, 1) ?? image.cmd?.slice(0, 1), ['node'], 'it starts node itself, exec form')
  t.ok(image.expose.includes('8000'), 'EXPOSE 8000')
  t.ok(image.healthcheck, 'it has a HEALTHCHECK')

  const port = await refusingPort()
  const env = containerEnv(image, { DEMO_PORT: String(port), DEMO_HOST: '127.0.0.1' })
  const demo = start(image, env)
  t.teardown(() => demo.stop())
  await demo.waitFor('listening')

  t.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200, '/healthz answers 200')
  const check = await healthcheck(image, env)
  t.equal(check.code, 0, 'the HEALTHCHECK command exits 0', { stderr: check.stderr })
  const script = await fetch(`http://127.0.0.1:${port}/app.js`)
  const body = await script.text()
  t.equal(script.status, 200, 'the page\'s script is bundled (esbuild and @sentry/browser are installed)', { body: body.slice(0, 500) })
  t.match(script.headers.get('content-type') ?? '', /javascript/, 'as javascript')

  demo.proc.kill('SIGTERM')
  t.equal(await orTimeout(demo.exited, 30_000), 0, 'SIGTERM: exits 0 (hang guard 30s)', { output: demo.output().slice(-2000) })
})
