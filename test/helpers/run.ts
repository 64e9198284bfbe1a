// Runs a command to its end and hands back its exit code and output (redis-cli, npm, the image's CMD).
import { spawn, type SpawnOptions } from 'node:child_process'

export interface RunResult { code: number | null; stdout: string; stderr: string }

export function run(command: string, args: string[], options: Pick<SpawnOptions, 'cwd' | 'env'> = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
    proc.once('error', reject)
    proc.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}
