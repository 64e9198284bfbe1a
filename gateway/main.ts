// The gateway process's entry: the CLI, then error reporting, then the gateway itself.
//   gateway [--config FILE] [--check]      (FILE also from GATEWAY_CONFIG; none = embedded defaults)
// Only the config loader is imported statically: Sentry must be initialised before the modules it
// observes are loaded, so start.ts (and with it everything else) is imported after initSentry.
import { parseArgs } from 'node:util'
import { ConfigError, loadPlan } from './config/load.ts'
import type { Plan } from './config/compile.ts'

const USAGE = `usage: gateway [--config FILE] [--check]
       gateway sentry-dashboard --org SLUG [--url URL] [--project ID] [--dry-run]   (see its --help)
  --config, -c FILE   the YAML config (default: $GATEWAY_CONFIG, else the embedded defaults)
  --check             validate the config, print every problem, exit 0 if it is valid`

export async function main(argv: string[]): Promise<number> {
  // A subcommand that talks to Sentry's API instead of running the gateway: nothing else is loaded for it.
  if (argv[0] === 'sentry-dashboard') return (await import('./sentry-dashboard.ts')).sentryDashboard(argv.slice(1))
  let args
  try {
    args = parseArgs({ args: argv, options: {
      config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    } }).values
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`)
    return 2
  }
  if (args.help) {
    console.log(USAGE)
    return 0
  }
  const file = args.config ?? process.env.GATEWAY_CONFIG ?? null

  let plan: Plan
  try {
    plan = loadPlan(file)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    console.error(err.message)
    return 1
  }
  if (args.check) {
    console.log(`${file ?? '(embedded defaults)'}: ok, ${plan.routes.length} routes`)
    return 0
  }
  if (plan.workers > 1) {
    const { isWorker, runPrimary } = await import('./cluster.ts')
    if (!isWorker) {
      runPrimary(plan, file)
      return 0
    }
  }
  if (plan.config.sentry.dsn) (await import('./observability/sentry.ts')).initSentry(plan.config.sentry)
  const { run } = await import('./start.ts')
  await run(plan, file)
  return 0
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2))
