// `gateway sentry-dashboard`: installs deploy/sentry/gateway-dashboard.json as a custom dashboard in a Sentry
// organization through Sentry's API (the file is already that API's request body). A dashboard with the same
// title is replaced rather than duplicated, so running the command again after editing the file is how the
// dashboard is updated. Loaded by main.ts only for this subcommand: nothing of the gateway is imported.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const USAGE = `usage: gateway sentry-dashboard --org SLUG [--url BASE] [--project ID] [--file JSON] [--dry-run]
  --org SLUG      the Sentry organization (slug or id)
  --url BASE      Sentry's address (default https://sentry.io; a regional or self-hosted one otherwise)
  --project ID    the numeric id of the project the dashboard shows (repeatable; default: every project)
  --file JSON     the dashboard (default deploy/sentry/gateway-dashboard.json)
  --dry-run       print the JSON body that would be sent and send nothing (no token needed)
  The auth token comes from SENTRY_AUTH_TOKEN (it needs org:read and org:write).`

const DEFAULT_FILE = fileURLToPath(new URL('../deploy/sentry/gateway-dashboard.json', import.meta.url))
/** Sentry answers in well under a second; this only keeps a dead address from hanging a deploy script. */
const TIMEOUT_MS = 15_000
/** An organization has a few dozen dashboards at most; the cap guards against a Link header that never ends. */
const MAX_PAGES = 50

interface Api { base: string; org: string; token: string }
interface Dashboard { title: string; widgets: unknown[]; projects?: number[]; [key: string]: unknown }

/** A failure the user can act on: printed as one line, exit code 1. */
class Failure extends Error {}

export async function sentryDashboard(argv: string[]): Promise<number> {
  let args
  try {
    args = parseArgs({ args: argv, options: {
      org: { type: 'string' }, url: { type: 'string' }, project: { type: 'string', multiple: true },
      file: { type: 'string' }, 'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    } }).values
  } catch (err) {
    return usage((err as Error).message)
  }
  if (args.help) {
    console.log(USAGE)
    return 0
  }
  const projects = args.project ?? []
  const badProject = projects.find((id) => !/^-?\d+$/.test(id))
  if (badProject !== undefined) return usage(`--project takes a numeric project id, not "${badProject}"`)
  const base = baseUrl(args.url ?? 'https://sentry.io')
  if (!base) return usage(`--url must be an http(s) address, not "${args.url}"`)

  try {
    const body = readDashboard(args.file ? resolve(args.file) : DEFAULT_FILE)
    if (projects.length) body.projects = projects.map(Number)
    if (args['dry-run']) {
      console.log(JSON.stringify(body, null, 2))
      return 0
    }
    if (!args.org) return usage('--org is required')
    const token = process.env.SENTRY_AUTH_TOKEN
    if (!token) return usage('SENTRY_AUTH_TOKEN is not set')
    console.log(await install({ base, org: args.org, token }, body))
    return 0
  } catch (err) {
    if (!(err instanceof Failure)) throw err
    console.error(`sentry-dashboard: ${err.message}`)
    return 1
  }
}

function usage(problem: string): number {
  console.error(`sentry-dashboard: ${problem}\n${USAGE}`)
  return 2
}

/** The origin plus any path prefix (self-hosted Sentry may live under one), without a trailing slash. */
function baseUrl(text: string): string | null {
  try {
    const url = new URL(text)
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href.replace(/\/+$/, '') : null
  } catch {
    return null
  }
}

function readDashboard(file: string): Dashboard {
  let body: unknown
  try {
    body = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new Failure(`${file}: ${oneLine((err as Error).message)}`)
  }
  const dashboard = body as Partial<Dashboard> | null
  if (!dashboard || typeof dashboard.title !== 'string' || !Array.isArray(dashboard.widgets)) {
    throw new Failure(`${file}: not a dashboard (an object with a title and widgets)`)
  }
  return dashboard as Dashboard
}

/** Replaces the dashboard of the same title, or creates it; returns the line to print. */
async function install(api: Api, body: Dashboard): Promise<string> {
  const collection = `${api.base}/api/0/organizations/${encodeURIComponent(api.org)}/dashboards/`
  const existing = await findByTitle(api, collection, body.title)
  const saved = existing === null
    ? await call(api, 'POST', collection, body)
    : await call(api, 'PUT', `${collection}${encodeURIComponent(existing)}/`, body)
  const id = (saved as { id?: unknown } | null)?.id ?? existing ?? '?'
  return `${existing === null ? 'created' : 'updated'} dashboard "${body.title}" (id ${String(id)})`
}

/** Walks the list's pages (Sentry's cursor Link header) until a dashboard has this exact title. */
async function findByTitle(api: Api, collection: string, title: string): Promise<string | null> {
  let url: string | null = `${collection}?per_page=100`
  for (let page = 0; url && page < MAX_PAGES; page++) {
    const { json, link } = await request(api, 'GET', url)
    if (!Array.isArray(json)) throw new Failure(`GET ${pathOf(url)} did not answer with a list of dashboards`)
    const found = (json as Array<{ id?: unknown; title?: unknown }>).find((d) => d.title === title)
    if (found) return String(found.id)
    url = nextPage(link, url)
  }
  return null
}

/**
 * Sentry's pagination: `<url>; rel="next"; results="true"; cursor="0:100:0"`. results="false" means the
 * next page is empty, so the walk stops there.
 */
function nextPage(link: string | null, current: string): string | null {
  for (const [, target, params] of (link ?? '').matchAll(/<([^>]*)>([^,]*)/g)) {
    if (/rel="?next"?/.test(params!) && !/results="?false"?/.test(params!)) return new URL(target!, current).href
  }
  return null
}

async function call(api: Api, method: string, url: string, body: unknown): Promise<unknown> {
  return (await request(api, method, url, body)).json
}

async function request(api: Api, method: string, url: string, body?: unknown): Promise<{ json: unknown; link: string | null }> {
  let res: Response
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${api.token}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    })
  } catch (err) {
    throw new Failure(unreachable(api.base, err))
  }
  const text = await res.text().catch(() => '')
  if (res.status === 401 || res.status === 403) throw new Failure(`Sentry refused the token (${res.status}): ${detailOf(text, res.statusText)}`)
  if (!res.ok) throw new Failure(`${method} ${pathOf(url)} answered ${res.status}: ${detailOf(text, res.statusText)}`)
  let json: unknown = null
  try { json = text ? JSON.parse(text) : null } catch { throw new Failure(`${method} ${pathOf(url)} answered ${res.status} with something that is not JSON`) }
  return { json, link: res.headers.get('link') }
}

function unreachable(base: string, err: unknown): string {
  const error = err as Error & { cause?: { code?: string; message?: string } }
  if (error.name === 'TimeoutError') return `Sentry at ${base} did not answer within ${TIMEOUT_MS / 1000}s`
  return `cannot reach Sentry at ${base}: ${oneLine(error.cause?.code ?? error.cause?.message ?? error.message)}`
}

/** Sentry's errors are `{"detail": "..."}`; validation errors are objects keyed by field, shown as they are. */
function detailOf(text: string, fallback: string): string {
  let detail = text
  try {
    const json = JSON.parse(text) as { detail?: unknown }
    detail = typeof json?.detail === 'string' ? json.detail : JSON.stringify(json)
  } catch { /* not JSON: the text itself */ }
  detail = oneLine(detail)
  if (!detail) return fallback || '(no detail)'
  return detail.length > 300 ? `${detail.slice(0, 300)}…` : detail
}

/** Error lines stay one line each, whatever the server or the system put in them. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim()
}

function pathOf(url: string): string {
  return new URL(url).pathname
}
