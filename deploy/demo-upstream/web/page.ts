// The demo page, served by the demo upstream: index.html with the page's config filled in, and main.js
// bundled with @sentry/browser by esbuild on first request (then kept in memory; nothing from a CDN).
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { fileURLToPath } from 'node:url'

export interface PageConfig {
  /** The browser SDK's DSN; without one the page runs without Sentry. */
  dsn?: string
  /** Where the SDK posts envelopes: the gateway's sentry.tunnel.path. */
  tunnel?: string
  tracesSampleRate?: number
  environment?: string
}

export const PAGE_PATHS: ReadonlySet<string> = new Set(['/app.js', '/app.js.map'])

const WEB_DIR = fileURLToPath(new URL('.', import.meta.url))
const ENTRY = fileURLToPath(new URL('./main.js', import.meta.url))
let template: string | undefined
let bundle: Promise<Map<string, Uint8Array>> | undefined

/** The page's config from the options, else DEMO_FRONTEND_DSN / DEMO_FRONTEND_TRACES_SAMPLE_RATE / DEMO_FRONTEND_TUNNEL. */
export function pageConfig(options: PageConfig, env: NodeJS.ProcessEnv = process.env): PageConfig {
  const rate = options.tracesSampleRate ?? (env.DEMO_FRONTEND_TRACES_SAMPLE_RATE ? Number(env.DEMO_FRONTEND_TRACES_SAMPLE_RATE) : 1)
  const dsn = options.dsn ?? env.DEMO_FRONTEND_DSN ?? ''
  return {
    ...(dsn ? { dsn } : {}),
    tunnel: options.tunnel ?? (env.DEMO_FRONTEND_TUNNEL || '/monitoring'),
    tracesSampleRate: Number.isFinite(rate) && rate >= 0 && rate <= 1 ? rate : 1,
    environment: options.environment ?? 'demo',
  }
}

export function sendPage(res: ServerResponse, config: PageConfig): void {
  template ??= readFileSync(new URL('./index.html', import.meta.url), 'utf8')
  // JSON inside <script>: "<" escaped so no value can close the element.
  const html = template.replace('__SALESFLOW_CONFIG__', () => JSON.stringify(config).replace(/</g, '\\u003c'))
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-cache',
    vary: 'accept',
  })
  res.end(html)
}

/** GET /app.js (and its source map). Rejects if the bundle cannot be built (esbuild or @sentry/browser missing). */
export async function sendScript(res: ServerResponse, path: string): Promise<void> {
  const files = await bundled()
  const body = files.get(path.slice(1))
  if (!body) throw new Error(`no ${path} in the bundle`)
  res.writeHead(200, {
    'content-type': path.endsWith('.map') ? 'application/json' : 'text/javascript; charset=utf-8',
    'content-length': body.byteLength,
    'cache-control': 'no-cache',
  })
  res.end(body)
}

/** Builds once per process; a failed build is retried on the next request. */
export function bundled(): Promise<Map<string, Uint8Array>> {
  bundle ??= build().catch((err: unknown) => {
    bundle = undefined
    throw err
  })
  return bundle
}

async function build(): Promise<Map<string, Uint8Array>> {
  const esbuild = await import('esbuild')
  try {
    const result = await esbuild.build({
      entryPoints: [ENTRY],
      outfile: `${WEB_DIR}app.js`,
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: ['es2020'],
      minify: true,
      sourcemap: 'linked',
      legalComments: 'none',
      logLevel: 'silent',
      // The SDK's debug logging is dead code in the demo.
      define: { __SENTRY_DEBUG__: 'false' },
    })
    return new Map(result.outputFiles.map((file) => [file.path.slice(WEB_DIR.length), file.contents]))
  } finally {
    // esbuild's service process is not needed after the one build.
    await esbuild.stop()
  }
}
