// deploy/k8s/*.yaml and deploy/docker-compose.yml, read as a cluster or compose would: every document is
// well formed, every reference (labels, ports, Secrets, ConfigMaps, services) resolves to something that
// is declared, the probes ask the ports that answer them, the shutdown timings fit together, and the
// gateway configs they run pass the gateway's own validation (loadPlan) with the environment they get.
// No kubeconform or kubeval here (neither is packaged for npm or Debian); `kubectl kustomize` renders the
// kustomization when kubectl is on the PATH.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse, parseAllDocuments } from 'yaml'
import { ConfigError, loadPlan } from '../../gateway/config/load.ts'
import type { Plan } from '../../gateway/config/compile.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const K8S = join(ROOT, 'deploy', 'k8s')
const COMPOSE = join(ROOT, 'deploy', 'docker-compose.yml')

// ---- the shapes this test reads (only the fields it checks) ----------------------------------------------

type Labels = Record<string, string>
interface Meta { name?: string; labels?: Labels }
interface Manifest { apiVersion?: string; kind?: string; metadata?: Meta; spec?: unknown; data?: Record<string, string>; stringData?: Record<string, string>; resources?: string[]; images?: Array<{ name: string }> }
interface KeyRef { name: string; key: string }
interface EnvVar { name: string; value?: string; valueFrom?: { secretKeyRef?: KeyRef; configMapKeyRef?: KeyRef } }
interface Probe { httpGet?: { path: string; port: number | string }; tcpSocket?: { port: number | string }; grpc?: { port: number }; exec?: { command: string[] } }
interface SecurityContext { runAsNonRoot?: boolean; runAsUser?: number; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean }
interface Container {
  name: string; image?: string; ports?: Array<{ name?: string; containerPort: number }>
  env?: EnvVar[]; envFrom?: Array<{ secretRef?: { name: string }; configMapRef?: { name: string } }>
  readinessProbe?: Probe; livenessProbe?: Probe; startupProbe?: Probe
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> }
  securityContext?: SecurityContext
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } }
  volumeMounts?: Array<{ name: string; mountPath: string }>
}
interface Volume { name: string; configMap?: { name: string; items?: Array<{ key: string; path: string }> }; secret?: { secretName: string; items?: Array<{ key: string; path: string }> }; emptyDir?: unknown }
interface PodSpec { containers: Container[]; initContainers?: Container[]; volumes?: Volume[]; securityContext?: SecurityContext; terminationGracePeriodSeconds?: number }
interface DeploymentSpec { replicas?: number; selector?: { matchLabels?: Labels }; template?: { metadata?: Meta; spec?: PodSpec } }
interface ServiceSpec { selector?: Labels; ports?: Array<{ name?: string; port: number; targetPort?: number | string }> }
interface HpaSpec { scaleTargetRef?: { apiVersion?: string; kind?: string; name?: string }; minReplicas?: number; maxReplicas?: number; metrics?: Array<{ type: string; resource?: { name: string } }> }
interface PdbSpec { minAvailable?: number | string; selector?: { matchLabels?: Labels } }

const API_VERSIONS: Record<string, string> = {
  Deployment: 'apps/v1', Service: 'v1', ConfigMap: 'v1', Secret: 'v1',
  HorizontalPodAutoscaler: 'autoscaling/v2', PodDisruptionBudget: 'policy/v1',
  Kustomization: 'kustomize.config.k8s.io/v1beta1',
}

// ---- reading ---------------------------------------------------------------------------------------------

interface Doc { file: string; index: number; m: Manifest }

const files = readdirSync(K8S).filter((file) => /\.ya?ml$/.test(file)).sort()
const docs: Doc[] = []
const parseErrors: string[] = []
for (const file of files) {
  parseAllDocuments(readFileSync(join(K8S, file), 'utf8')).forEach((doc, index) => {
    for (const error of doc.errors) parseErrors.push(`${file}#${index}: ${error.message}`)
    const value = doc.toJS() as Manifest | null
    if (value !== null) docs.push({ file, index, m: value })
  })
}
const where = (doc: Doc) => `${doc.file}#${doc.index} ${doc.m.kind}${doc.m.metadata?.name ? `/${doc.m.metadata.name}` : ''}`
const ofKind = (kind: string) => docs.filter((doc) => doc.m.kind === kind)
const named = (kind: string, name: string) => docs.find((doc) => doc.m.kind === kind && doc.m.metadata?.name === name)
const deployments = ofKind('Deployment').map((doc) => ({ doc, spec: doc.m.spec as DeploymentSpec }))
const podOf = (spec: DeploymentSpec): PodSpec => spec.template?.spec ?? { containers: [] }
const selects = (selector: Labels | undefined, labels: Labels | undefined) =>
  !!selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels?.[key] === value)
const secretKeys = (name: string) => {
  const secret = named('Secret', name)?.m
  return secret ? { ...secret.data, ...secret.stringData } : undefined
}
const configMapKeys = (name: string) => named('ConfigMap', name)?.m.data
const portOf = (container: Container, port: number | string | undefined) =>
  container.ports?.find((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port))
const probePort = (probe: Probe) => probe.httpGet?.port ?? probe.tcpSocket?.port ?? probe.grpc?.port
const preStopSeconds = (container: Container): number => {
  const preStop = container.lifecycle?.preStop
  if (preStop?.sleep) return preStop.sleep.seconds
  const command = preStop?.exec?.command ?? []
  return command[0] === 'sleep' ? Number(command[1]) : 0
}

/** The environment a container gets from its manifest: values, secretKeyRef/configMapKeyRef, envFrom. */
function containerEnv(container: Container): Record<string, string> {
  const env: Record<string, string> = {}
  for (const from of container.envFrom ?? []) {
    Object.assign(env, from.secretRef ? secretKeys(from.secretRef.name) : from.configMapRef ? configMapKeys(from.configMapRef.name) : {})
  }
  for (const variable of container.env ?? []) {
    const secretRef = variable.valueFrom?.secretKeyRef
    const configRef = variable.valueFrom?.configMapKeyRef
    const value = variable.value ?? (secretRef ? secretKeys(secretRef.name)?.[secretRef.key] : configRef ? configMapKeys(configRef.name)?.[configRef.key] : undefined)
    if (value !== undefined) env[variable.name] = value
  }
  return env
}

const scratch = mkdtempSync(join(tmpdir(), 'manifests-test-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))

/** loadPlan on a config text with an environment; the problems as a list (empty when valid). */
function validate(name: string, text: string, env: Record<string, string>): { plan?: Plan; problems: readonly string[] } {
  const file = join(scratch, name)
  writeFileSync(file, text)
  try {
    return { plan: loadPlan(file, env), problems: [] }
  } catch (err) {
    if (err instanceof ConfigError) return { problems: err.problems }
    throw err
  }
}

const exampleRoutes = (parse(readFileSync(join(ROOT, 'config', 'gateway.yaml'), 'utf8')) as { routes: unknown }).routes

// ---- Kubernetes ------------------------------------------------------------------------------------------

t.test('deploy/k8s: every document is a well-formed object', async (t) => {
  t.same(parseErrors, [], 'every file is valid YAML')
  t.ok(docs.length > 0, `documents found in ${files.join(', ')}`)
  for (const doc of docs) {
    const { kind, apiVersion, metadata } = doc.m
    t.ok(kind && kind in API_VERSIONS, `${where(doc)}: kind is one this test checks (${Object.keys(API_VERSIONS).join(', ')})`)
    t.equal(apiVersion, API_VERSIONS[kind ?? ''], `${where(doc)}: apiVersion`)
    if (kind !== 'Kustomization') t.match(metadata?.name ?? '', /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${where(doc)}: metadata.name is a DNS label`)
  }
  const ids = docs.filter((doc) => doc.m.kind !== 'Kustomization').map((doc) => `${doc.m.kind}/${doc.m.metadata?.name}`)
  t.same(ids.filter((id, i) => ids.indexOf(id) !== i), [], 'no kind/name is declared twice')
  for (const kind of ['Deployment', 'Service', 'ConfigMap', 'Secret', 'HorizontalPodAutoscaler', 'PodDisruptionBudget']) {
    t.ok(ofKind(kind).length > 0, `a ${kind} is declared`)
  }
})

t.test('deploy/k8s: the kustomization lists every manifest and names every image', async (t) => {
  const kustomizations = ofKind('Kustomization')
  t.equal(kustomizations.length, 1, 'one kustomization.yaml')
  const kustomization = kustomizations[0]!.m
  t.same([...kustomization.resources ?? []].sort(), files.filter((file) => file !== kustomizations[0]!.file), 'resources: every other file, none missing')
  const images = new Set((kustomization.images ?? []).map((image) => image.name))
  for (const { doc, spec } of deployments) {
    for (const container of podOf(spec).containers) {
      const image = container.image ?? ''
      t.ok(images.has(image) || /:[\w.-]+$|@sha256:/.test(image), `${where(doc)} ${container.name}: image ${image} has a tag, or the kustomization sets one`)
    }
  }
})

t.test('deploy/k8s: Deployments', async (t) => {
  for (const { doc, spec } of deployments) {
    const pod = podOf(spec)
    t.ok(selects(spec.selector?.matchLabels, spec.template?.metadata?.labels), `${where(doc)}: selector.matchLabels match the template's labels`)
    t.ok(pod.containers.length > 0, `${where(doc)}: has containers`)
    const volumes = new Map((pod.volumes ?? []).map((volume) => [volume.name, volume]))
    for (const volume of pod.volumes ?? []) {
      if (volume.configMap) {
        const data = configMapKeys(volume.configMap.name)
        t.ok(data, `${where(doc)}: volume ${volume.name} → ConfigMap ${volume.configMap.name} is declared`)
        for (const item of volume.configMap.items ?? []) t.ok(data && item.key in data, `${where(doc)}: ConfigMap ${volume.configMap.name} has key ${item.key}`)
      }
      if (volume.secret) {
        const data = secretKeys(volume.secret.secretName)
        t.ok(data, `${where(doc)}: volume ${volume.name} → Secret ${volume.secret.secretName} is declared`)
        for (const item of volume.secret.items ?? []) t.ok(data && item.key in data, `${where(doc)}: Secret ${volume.secret.secretName} has key ${item.key}`)
      }
    }
    for (const container of [...pod.initContainers ?? [], ...pod.containers]) {
      const at = `${where(doc)} container ${container.name}`
      t.ok(container.image, `${at}: image`)
      t.ok((container.ports ?? []).length > 0, `${at}: declares its ports`)
      t.ok(container.readinessProbe, `${at}: readinessProbe`)
      t.ok(container.livenessProbe, `${at}: livenessProbe`)
      for (const [kind, probe] of Object.entries({ readiness: container.readinessProbe, liveness: container.livenessProbe, startup: container.startupProbe })) {
        if (!probe || probe.exec) continue
        t.ok(portOf(container, probePort(probe)), `${at}: ${kind} probe port ${probePort(probe)} is one of its declared ports`)
      }
      t.ok(container.resources?.requests?.cpu && container.resources.requests.memory, `${at}: cpu and memory requests`)
      t.ok(container.resources?.limits?.memory, `${at}: a memory limit`)
      const security = { ...pod.securityContext, ...container.securityContext }
      t.ok(security.runAsNonRoot === true && security.runAsUser !== 0, `${at}: runAsNonRoot`)
      t.equal(security.readOnlyRootFilesystem, true, `${at}: readOnlyRootFilesystem`)
      t.equal(security.allowPrivilegeEscalation, false, `${at}: allowPrivilegeEscalation false`)
      for (const variable of container.env ?? []) {
        const ref = variable.valueFrom?.secretKeyRef ?? variable.valueFrom?.configMapKeyRef
        if (!ref) continue
        const data = variable.valueFrom?.secretKeyRef ? secretKeys(ref.name) : configMapKeys(ref.name)
        t.ok(data && ref.key in data, `${at}: env ${variable.name} → ${ref.name}/${ref.key} is declared`)
      }
      for (const from of container.envFrom ?? []) {
        const name = from.secretRef?.name ?? from.configMapRef?.name ?? ''
        t.ok(from.secretRef ? secretKeys(name) : configMapKeys(name), `${at}: envFrom ${name} is declared`)
      }
      for (const mount of container.volumeMounts ?? []) t.ok(volumes.has(mount.name), `${at}: volumeMount ${mount.name} is a pod volume`)
    }
  }
})

t.test('deploy/k8s: Services select pods and target ports they declare', async (t) => {
  for (const doc of ofKind('Service')) {
    const spec = doc.m.spec as ServiceSpec
    const target = deployments.find(({ spec: d }) => selects(spec.selector, d.template?.metadata?.labels))
    t.ok(target, `${where(doc)}: its selector matches a Deployment's pods`)
    if (!target) continue
    for (const port of spec.ports ?? []) {
      const owner = podOf(target.spec).containers.find((container) => portOf(container, port.targetPort ?? port.port))
      t.ok(owner, `${where(doc)}: port ${port.port} → targetPort ${port.targetPort} is declared by a container`)
    }
  }
})

t.test('deploy/k8s: HorizontalPodAutoscaler and PodDisruptionBudget', async (t) => {
  for (const doc of ofKind('HorizontalPodAutoscaler')) {
    const spec = doc.m.spec as HpaSpec
    const ref = spec.scaleTargetRef
    const target = deployments.find(({ doc: d }) => ref?.kind === 'Deployment' && ref.apiVersion === 'apps/v1' && d.m.metadata?.name === ref.name)
    t.ok(target, `${where(doc)}: scaleTargetRef is a Deployment declared here`)
    t.ok((spec.minReplicas ?? 1) >= 1 && (spec.minReplicas ?? 1) <= (spec.maxReplicas ?? 0), `${where(doc)}: 1 <= minReplicas <= maxReplicas`)
    t.ok(spec.metrics?.some((metric) => metric.type === 'Resource' && metric.resource?.name === 'cpu'), `${where(doc)}: a CPU target`)
    if (!target) continue
    t.equal(target.spec.replicas, undefined, `${where(target.doc)}: sets no replicas (the HPA owns the count)`)
    for (const container of podOf(target.spec).containers) {
      t.ok(container.resources?.requests?.cpu, `${where(target.doc)} ${container.name}: a CPU request (utilization is measured against requests)`)
    }
    for (const pdb of ofKind('PodDisruptionBudget')) {
      const pdbSpec = pdb.m.spec as PdbSpec
      if (!selects(pdbSpec.selector?.matchLabels, target.spec.template?.metadata?.labels)) continue
      t.ok(typeof pdbSpec.minAvailable === 'number' && pdbSpec.minAvailable < (spec.minReplicas ?? 1),
        `${where(pdb)}: minAvailable is below the HPA's minReplicas, so a node drain can proceed`)
    }
  }
  for (const doc of ofKind('PodDisruptionBudget')) {
    const spec = doc.m.spec as PdbSpec
    t.ok(deployments.some(({ spec: d }) => selects(spec.selector?.matchLabels, d.template?.metadata?.labels)), `${where(doc)}: selects a Deployment's pods`)
  }
})

t.test('deploy/k8s: the gateway sidecar', async (t) => {
  const found = deployments.find(({ spec }) => podOf(spec).containers.some((container) => container.name === 'gateway'))
  if (!found) return t.fail('a Deployment with a container named gateway')
  const pod = podOf(found.spec)
  const gateway = pod.containers.find((container) => container.name === 'gateway')!
  const api = pod.containers.find((container) => container.name !== 'gateway')
  if (!api) return t.fail('the API container beside the gateway')
  const env = containerEnv(gateway)

  // The config file: GATEWAY_CONFIG (the image's default is the same path) on a ConfigMap volume.
  const configPath = env.GATEWAY_CONFIG ?? '/etc/gateway/gateway.yaml'
  const mount = gateway.volumeMounts?.find((m) => configPath.startsWith(`${m.mountPath.replace(/\/$/, '')}/`))
  const volume = pod.volumes?.find((v) => v.name === mount?.name)
  const fileName = configPath.slice((mount?.mountPath.replace(/\/$/, '') ?? '').length + 1)
  const key = volume?.configMap?.items?.find((item) => item.path === fileName)?.key ?? fileName
  const text = volume?.configMap ? configMapKeys(volume.configMap.name)?.[key] : undefined
  if (!text) return t.fail(`${configPath} is a key of a ConfigMap mounted into the gateway container`)

  for (const name of ['SENTRY_DSN', 'JWT_SECRET', 'ADMIN_TOKEN']) t.ok(name in env, `${name} reaches the gateway from the manifests`)
  const { plan, problems } = validate('k8s-gateway.yaml', text, env)
  t.same(problems, [], 'the ConfigMap\'s gateway config passes the gateway\'s validation with the container\'s environment')
  if (!plan) return
  const config = plan.config
  t.same((parse(text) as { routes: unknown }).routes, exampleRoutes, 'its routes are config/gateway.yaml\'s')

  t.equal(portOf(gateway, 'http')?.containerPort, config.listen.port, 'containerPort http is listen.port')
  t.equal(portOf(gateway, 'admin')?.containerPort, config.admin.port, 'containerPort admin is admin.port')
  t.match(gateway.readinessProbe?.httpGet, { path: '/readyz', port: 'admin' }, 'readiness: /readyz on the admin port')
  t.match(gateway.livenessProbe?.httpGet, { path: '/healthz', port: 'admin' }, 'liveness: /healthz on the admin port')
  const upstream = new URL(config.upstream.url)
  t.equal(upstream.hostname, '127.0.0.1', 'the upstream is the pod\'s loopback (sidecar)')
  t.ok(portOf(api, Number(upstream.port)), `the upstream port ${upstream.port} is the API container's`)

  const redis = new URL(config.redis.url)
  const redisService = named('Service', redis.hostname)
  t.ok(redisService, `REDIS_URL's host ${redis.hostname} is a Service declared here`)
  t.ok((redisService?.m.spec as ServiceSpec | undefined)?.ports?.some((p) => p.port === Number(redis.port || 6379)), 'on REDIS_URL\'s port')

  const services = ofKind('Service').filter((doc) => selects((doc.m.spec as ServiceSpec).selector, found.spec.template?.metadata?.labels))
  for (const doc of services) {
    for (const port of (doc.m.spec as ServiceSpec).ports ?? []) {
      t.equal(portOf(gateway, port.targetPort ?? port.port)?.containerPort, config.listen.port, `${where(doc)}: exposes the gateway's proxy port only`)
    }
  }

  // Shutdown: endpoints removed during the gateway's preStop sleep, then the drain, then pool close (1 s)
  // and Sentry flush (2 s); the API outlives the drain; the grace period covers all of it.
  const gatewayPreStop = preStopSeconds(gateway)
  const drain = config.shutdown.drainTimeout / 1000
  const grace = pod.terminationGracePeriodSeconds ?? 30
  t.ok(gatewayPreStop > 0, 'the gateway has a preStop sleep')
  t.ok(grace > gatewayPreStop + drain + 3, `terminationGracePeriodSeconds ${grace} > preStop ${gatewayPreStop} + drainTimeout ${drain} + 3`)
  t.ok(preStopSeconds(api) >= gatewayPreStop + drain, `the API's preStop (${preStopSeconds(api)} s) lasts until the gateway has drained`)
  t.ok(grace > preStopSeconds(api), 'and the grace period leaves the API time after its preStop')
})

t.test('kubectl kustomize renders deploy/k8s', async (t) => {
  const which = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' })
  if (which.error || which.status !== 0) return t.pass('kubectl is not installed: skipped')
  const rendered = spawnSync('kubectl', ['kustomize', K8S], { encoding: 'utf8' })
  t.equal(rendered.status, 0, 'kubectl kustomize exits 0', { stderr: rendered.stderr })
  const objects = parseAllDocuments(rendered.stdout).map((doc) => doc.toJS() as Manifest)
  const ids = (list: Manifest[]) => list.map((m) => `${m.kind}/${m.metadata?.name}`).sort()
  t.same(ids(objects), ids(docs.map((doc) => doc.m).filter((m) => m.kind !== 'Kustomization')), 'it renders every object of the files')
  const images = objects.flatMap((m) => m.kind === 'Deployment' ? podOf(m.spec as DeploymentSpec).containers.map((c) => c.image ?? '') : [])
  t.ok(images.every((image) => /:[\w.-]+$|@sha256:/.test(image)), `every rendered image is tagged: ${images.join(', ')}`)
})

// ---- docker compose --------------------------------------------------------------------------------------

interface ComposeService {
  image?: string; build?: string | { context?: string; dockerfile?: string; target?: string }
  environment?: Record<string, string> | string[]; ports?: Array<string | number>; expose?: Array<string | number>
  depends_on?: string[] | Record<string, { condition?: string }>; healthcheck?: { test?: string[] | string; disable?: boolean }
  volumes?: string[]; stop_grace_period?: string
}

/** Compose's interpolation of every string value (after parsing), with nothing set: ${VAR:-default} → default, ${VAR} → '', $$ → $. */
function composeInterpolate(value: unknown): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (whole, _name: string, fallback: string | undefined) =>
      whole === '$$' ? '$' : fallback ?? '')
  }
  if (Array.isArray(value)) return value.map(composeInterpolate)
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, composeInterpolate(v)]))
  return value
}

function dependsOn(service: ComposeService): Record<string, { condition?: string }> {
  return Array.isArray(service.depends_on) ? Object.fromEntries(service.depends_on.map((name) => [name, {}])) : service.depends_on ?? {}
}

function environment(service: ComposeService): Record<string, string> {
  if (!Array.isArray(service.environment)) return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, String(v)]))
  return Object.fromEntries(service.environment.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]))
}

/** Seconds of a compose duration such as 1m30s or 45s. */
function seconds(duration: string | undefined): number {
  let total = 0
  for (const [, n, unit] of (duration ?? '').matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit as 'ms' | 's' | 'm' | 'h']
  return total
}

t.test('deploy/docker-compose.yml', async (t) => {
  const composeDoc = parseAllDocuments(readFileSync(COMPOSE, 'utf8'))
  t.equal(composeDoc.length, 1, 'one YAML document')
  t.same(composeDoc[0]!.errors.map((error) => error.message), [], 'valid YAML')
  const compose = composeInterpolate(composeDoc[0]!.toJS()) as { services?: Record<string, ComposeService>; volumes?: Record<string, unknown> }
  const services = compose.services ?? {}
  for (const name of ['gateway', 'redis', 'postgres']) t.ok(services[name], `service ${name}`)
  const deployDir = join(ROOT, 'deploy')

  for (const [name, service] of Object.entries(services)) {
    t.ok(service.image || service.build, `${name}: has an image or a build`)
    if (service.build) {
      const build = typeof service.build === 'string' ? { context: service.build } : service.build
      const context = resolve(deployDir, build.context ?? '.')
      const dockerfile = join(context, build.dockerfile ?? 'Dockerfile')
      t.ok(existsSync(dockerfile), `${name}: builds ${dockerfile}`)
      if (build.target && existsSync(dockerfile)) {
        const stages = [...readFileSync(dockerfile, 'utf8').matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gim)].map((m) => m[1])
        t.ok(stages.includes(build.target), `${name}: target ${build.target} is a stage of the Dockerfile (${stages.join(', ')})`)
      }
    }
    const test = service.healthcheck?.test
    t.ok(test && !service.healthcheck?.disable && (Array.isArray(test) ? test.length > 1 && test[0] !== 'NONE' : test !== ''), `${name}: has a healthcheck`)
    for (const [dependency, options] of Object.entries(dependsOn(service))) {
      t.ok(services[dependency], `${name}: depends_on ${dependency}, a service of this file`)
      t.equal(options.condition, 'service_healthy', `${name}: waits until ${dependency} is healthy`)
    }
    for (const volume of service.volumes ?? []) {
      const source = volume.split(':')[0]!
      if (source.startsWith('.') || source.startsWith('/')) t.ok(existsSync(resolve(deployDir, source)), `${name}: mounted ${source} exists`)
      else t.ok(compose.volumes && source in compose.volumes, `${name}: volume ${source} is declared`)
    }
  }

  const gateway = services.gateway
  if (!gateway) return
  const env = environment(gateway)
  for (const name of ['REDIS_URL', 'UPSTREAM_URL', 'SENTRY_DSN', 'JWT_SECRET', 'ADMIN_TOKEN']) t.ok(name in env, `gateway: ${name} is set`)
  const upstream = new URL(env.UPSTREAM_URL ?? '')
  const redis = new URL(env.REDIS_URL ?? '')
  const api = services[upstream.hostname]
  t.ok(api, `UPSTREAM_URL's host ${upstream.hostname} is a service`)
  t.ok(api?.expose?.map(String).includes(upstream.port), `which exposes port ${upstream.port}`)
  t.ok(upstream.hostname in dependsOn(gateway), 'the gateway waits for it')
  t.ok(redis.hostname in dependsOn(gateway), 'and for redis')
  t.ok(services[redis.hostname]?.image?.startsWith('redis'), `REDIS_URL's host ${redis.hostname} is the redis service`)
  if (api) {
    t.equal(environment(api).JWT_SECRET, env.JWT_SECRET, 'the api and the gateway share JWT_SECRET')
    const database = new URL(environment(api).DATABASE_URL ?? '')
    const postgres = services[database.hostname]
    t.ok(postgres?.image?.startsWith('postgres:15'), `DATABASE_URL's host ${database.hostname} is the postgres:15 service`)
    const pgEnv = postgres ? environment(postgres) : {}
    t.equal(database.username, pgEnv.POSTGRES_USER, 'DATABASE_URL\'s user is POSTGRES_USER')
    t.equal(decodeURIComponent(database.password), pgEnv.POSTGRES_PASSWORD, 'its password POSTGRES_PASSWORD')
    t.equal(database.pathname.slice(1), pgEnv.POSTGRES_DB, 'its database POSTGRES_DB')
  }

  // The config the gateway runs: the mounted file at the image's config path, or the image's own copy of config/gateway.yaml.
  const mounted = gateway.volumes?.map((volume) => volume.split(':')).find((parts) => parts[1] === '/etc/gateway/gateway.yaml')
  const configFile = mounted ? resolve(deployDir, mounted[0]!) : join(ROOT, 'config', 'gateway.yaml')
  const { plan, problems } = validate('compose-gateway.yaml', readFileSync(configFile, 'utf8'), env)
  t.same(problems, [], 'the gateway config passes the gateway\'s validation with the service\'s environment')
  if (!plan) return
  const published = (gateway.ports ?? []).map((port) => String(port).split(':').at(-1))
  t.ok(published.includes(String(plan.config.listen.port)), `the proxy port ${plan.config.listen.port} is published`)
  t.ok(published.includes(String(plan.config.admin.port)), `the admin port ${plan.config.admin.port} is published`)
  t.ok(seconds(gateway.stop_grace_period) > plan.config.shutdown.drainTimeout / 1000,
    `stop_grace_period (${gateway.stop_grace_period}) exceeds shutdown.drainTimeout, so docker stop lets the drain finish`)
})
