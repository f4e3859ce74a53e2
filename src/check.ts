// `--check`: what a deployment pipeline (or a task author) runs before serving.
// It builds the app as serving would, so every worker starts, every task module is
// imported and every schema compiled, prints what it found, and stops. Nothing
// listens. Problems surface as the same errors a start would raise.

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildApp } from './app.js'
import type { Config } from './config.js'
import { PROJECT_ROOT } from './plugins/worker-pool.js'
import { resolvePython } from './python-path.js'
import type { TaskDescription } from './task-registry.js'

export async function version (): Promise<string> {
  const manifest = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
  return manifest.version
}

/** Starts everything serving would start, then stops it; resolves with the report to print. */
export async function checkSetup (config: Config): Promise<string> {
  // Only warnings (a TASK_CONCURRENCY entry naming no task, say) join the report in the log.
  const app = await buildApp({ ...config, logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel })
  try {
    const python = await resolvePython(config.python, PROJECT_ROOT) // cached: the probe the start made
    const tasks = app.tasks.list()
    return [
      `pyfleet ${await version()}: the configuration is valid, and ${config.poolSize} worker${config.poolSize === 1 ? '' : 's'} started with ${python.path} (Python ${python.version}).`,
      `${tasks.length} task${tasks.length === 1 ? '' : 's'}, as the server would serve them:`,
      ...table(tasks),
      ''
    ].join('\n')
  } finally {
    await app.close()
  }
}

function table (tasks: readonly TaskDescription[]): string[] {
  const rows = tasks.map((task) => [
    task.name,
    `timeout ${task.timeoutMs} ms`,
    `${task.maxConcurrency} at once`,
    task.raw.length > 0 ? `raw ${task.raw.join(', ')}` : 'JSON/msgpack only',
    task.description.length > 60 ? `${task.description.slice(0, 57)}...` : task.description
  ])
  const widths = rows.reduce((w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)), [] as number[])
  return rows.map((row) => `  ${row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')}`)
}
