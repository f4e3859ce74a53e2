// `--check`: what a deployment pipeline (or a task author) runs before serving.
// It builds the app as serving would, so every worker starts, every task module is
// imported and every schema compiled, prints what it found, and stops. Nothing
// listens. Problems surface as the same errors a start would raise.

import { buildApp } from './app.js'
import type { Config } from './config.js'
import { PROJECT_ROOT } from './plugins/worker-pool.js'
import { resolvePython } from './python-path.js'
import type { TaskDescription } from './task-registry.js'
import { version } from './version.js'

/** Starts everything serving would start, then stops it; resolves with the report to print. */
export async function checkSetup (config: Config): Promise<string> {
  // The log goes to stderr, so that stdout is the report alone; at the default level only
  // warnings (a library's, from a task module's import) and errors are logged.
  const level = config.logLevel === 'info' ? 'warn' : config.logLevel
  // Strict: a TASK_MODULES entry that registers no task, or a TASK_TIMEOUTS entry naming
  // none, fails the check; serving only warns.
  const app = await buildApp(config, { logger: { level, stream: process.stderr }, strict: true })
  try {
    const python = await resolvePython(config.python, PROJECT_ROOT) // cached: the probe the start made
    const tasks = app.tasks.list()
    return [
      `pyfleet ${await version()}: the configuration is valid (HOST and PORT are not tried), and ${config.poolSize} worker${config.poolSize === 1 ? '' : 's'} started with ${python.path} (Python ${python.version}).`,
      `${tasks.length} task${tasks.length === 1 ? '' : 's'}, as the server would serve them:`,
      ...table(tasks),
      ''
    ].join('\n')
  } finally {
    await app.close()
  }
}

/** At most `max` characters, counted as code points (an emoji is not cut in half). */
function shorten (text: string, max: number): string {
  const chars = Array.from(text)
  return chars.length > max ? `${chars.slice(0, max - 3).join('')}...` : text
}

function table (tasks: readonly TaskDescription[]): string[] {
  const rows = tasks.map((task) => [
    task.name,
    `timeout ${task.timeoutMs} ms`,
    `${task.maxConcurrency} at once`,
    task.raw.length > 0 ? `raw ${task.raw.join(', ')}` : 'JSON/msgpack only',
    shorten(task.description, 60)
  ])
  const widths = rows.reduce((w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)), [] as number[])
  return rows.map((row) => `  ${row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')}`)
}
