// Runs EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) on a query and reads what db:check reports from the plan:
// the median execution time over a few runs, the buffers touched, and which indexes the planner used.
import type pg from 'pg'

/** One node of Postgres' JSON plan (only the fields read here). */
interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Index Name'?: string
  'Shared Hit Blocks'?: number
  'Shared Read Blocks'?: number
  Plans?: PlanNode[]
}

export interface Measured {
  /** Median of the runs' "Execution Time" (server side: no network, no planning). */
  executionMs: number
  /** Shared buffers hit + read by the whole plan (a parent node's count includes its children's). */
  buffers: number
  /** Every index any node of the plan read, in plan order. */
  indexes: string[]
  /** The plan's scans, e.g. "Seq Scan on leads", "Index Scan using idx_leads_email". */
  scans: string[]
  plan: unknown
}

/** Walks the plan tree depth-first. */
function* nodes(node: PlanNode): Generator<PlanNode> {
  yield node
  for (const child of node.Plans ?? []) yield* nodes(child)
}

export function readPlan(root: PlanNode): Pick<Measured, 'buffers' | 'indexes' | 'scans'> {
  const indexes: string[] = []
  const scans: string[] = []
  for (const node of nodes(root)) {
    const index = node['Index Name']
    if (index !== undefined) {
      if (!indexes.includes(index)) indexes.push(index)
      scans.push(`${node['Node Type']} using ${index}`)
    } else if (node['Relation Name'] !== undefined) {
      scans.push(`${node['Node Type']} on ${node['Relation Name']}`)
    }
  }
  return { buffers: (root['Shared Hit Blocks'] ?? 0) + (root['Shared Read Blocks'] ?? 0), indexes, scans }
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** One unmeasured warm-up run (caches, catalog), then `runs` measured ones. */
export async function measure(db: pg.Client, sql: string, params: unknown[], runs = 5): Promise<Measured> {
  const explain = async () => {
    const { rows } = await db.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, params)
    const [result] = (rows[0] as { 'QUERY PLAN': Array<{ Plan: PlanNode; 'Execution Time': number }> })['QUERY PLAN']
    if (!result) throw new Error(`EXPLAIN returned no plan for: ${sql}`)
    return result
  }
  await explain()
  const times: number[] = []
  let last: { Plan: PlanNode; 'Execution Time': number } | undefined
  for (let i = 0; i < runs; i++) {
    last = await explain()
    times.push(last['Execution Time'])
  }
  const final = last as { Plan: PlanNode }
  return { executionMs: median(times), ...readPlan(final.Plan), plan: final.Plan }
}
