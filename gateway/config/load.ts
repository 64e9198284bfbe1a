// Reads a config file: ${VAR} interpolation, YAML, schema validation and compilation into a Plan.
// Every problem is reported as "file:line key.path: message". Each stage reports all of its problems at
// once; a later stage runs only on what the earlier one accepted (no schema errors for a file that is
// not valid YAML).
import { readFileSync } from 'node:fs'
import { isMap, isScalar, LineCounter, parseDocument, type Document } from 'yaml'
import type { z } from 'zod'
import { ConfigSchema } from './schema.ts'
import { compilePlan, CompileError, type Plan } from './compile.ts'

export class ConfigError extends Error {
  readonly problems: readonly string[]
  constructor(problems: string[]) {
    super(`invalid config:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

type KeyPath = ReadonlyArray<PropertyKey>

/** What the gateway runs on when no file is named: everything in process, every request forwarded. */
export const EMBEDDED_CONFIG = `
listen: { port: \${PORT:-8080} }
admin: { port: \${ADMIN_PORT:-9090} }
upstream: { url: \${UPSTREAM_URL:-http://127.0.0.1:8000} }
`

/** Loads a config file, or the embedded defaults when `path` is null. Throws ConfigError listing every problem. */
export function loadPlan(path: string | null, env: NodeJS.ProcessEnv = process.env): Plan {
  const file = path ?? '(embedded defaults)'
  let text = EMBEDDED_CONFIG
  try {
    if (path !== null) text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError([`${file}: cannot read the config file (${(err as Error).message})`])
  }
  const interpolated = interpolate(text, env, (offset, message) => `${file}:${lineAt(text, offset)} ${message}`)
  const lines = new LineCounter()
  const doc = parseDocument(interpolated.text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  const problems = [...interpolated.problems]
  for (const error of doc.errors) problems.push(`${file}:${lines.linePos(error.pos[0]).line} ${error.message.split('\n')[0]}`)
  if (problems.length) throw new ConfigError(problems)

  const where = (path: KeyPath, unknownKey?: string): string =>
    `${file}:${lineOf(doc, lines, path, unknownKey)} ${formatPath(unknownKey === undefined ? path : [...path, unknownKey])}`
  const parsed = ConfigSchema.safeParse(withoutNulls(doc.toJS()) ?? {}, { reportInput: true })
  if (!parsed.success) throw new ConfigError(byLine(describeIssues(parsed.error.issues, where)))
  try {
    return compilePlan(parsed.data, file)
  } catch (err) {
    if (err instanceof CompileError) throw new ConfigError(err.problems.map((p) => `${where(p.path)}: ${p.message}`))
    throw err
  }
}

function describeIssues(issues: z.core.$ZodIssue[], where: (path: KeyPath, unknownKey?: string) => string): string[] {
  return issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => `${where(issue.path, key)}: unknown key`)
    const message = issue.code === 'invalid_type' && issue.input === undefined ? 'required' : issue.message
    return [`${where(issue.path)}: ${message}`]
  })
}

/**
 * Replaces ${VAR} and ${VAR:-default} with environment values before the YAML is parsed, so placeholders
 * work inside flow mappings ({ port: ${PORT:-8080} }) and line numbers stay those of the file. `$${` is a
 * literal `${`. An unset variable without a default is an error, except inside a comment.
 */
function interpolate(text: string, env: NodeJS.ProcessEnv, at: (offset: number, message: string) => string) {
  const problems: string[] = []
  const result = text.replace(/\$?\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (whole, name: string, fallback: string | undefined, offset: number) => {
    if (whole.startsWith('$$')) return whole.slice(1)
    const value = env[name]
    if (value !== undefined && value !== '') return value
    if (fallback !== undefined) return fallback
    const lineStart = text.lastIndexOf('\n', offset) + 1
    if (/(^|\s)#/.test(text.slice(lineStart, offset))) return whole
    problems.push(at(offset, `\${${name}}: environment variable ${name} is not set and has no default (write \${${name}:-default})`))
    return ''
  })
  return { text: result, problems }
}

/** `key:` with no value (often an empty ${VAR:-}) means "not set": the key's default applies. */
function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]))
}

function lineAt(text: string, offset: number): number {
  let line = 1
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++
  return line
}

function byLine(problems: string[]): string[] {
  const line = (problem: string) => Number(/:(\d+) /.exec(problem)?.[1] ?? 0)
  return problems.sort((a, b) => line(a) - line(b))
}

function lineOf(doc: Document, lines: LineCounter, path: KeyPath, unknownKey?: string): number {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth) as unknown[], true)
    if (depth === path.length && unknownKey !== undefined && isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && item.key.value === unknownKey)
      if (isScalar(pair?.key) && pair.key.range) return lines.linePos(pair.key.range[0]).line
    }
    const range = (node as { range?: [number, number, number] } | undefined)?.range
    if (range) return lines.linePos(range[0]).line
  }
  return 1
}

export function formatPath(path: KeyPath): string {
  let out = ''
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : `${out ? '.' : ''}${String(key)}`
  return out || '(top level)'
}
