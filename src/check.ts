// `--check`: what a deployment pipeline (or a task author) runs before serving.
// It builds the app as serving would, so every worker starts, every task module is
// imported and every schema compiled, prints what it found, and stops. Nothing
// listens. Problems surface as the same errors a start would raise.

import { buildApp } from './app.js'
import { ConfigError, type Config } from './config.js'
import { lookalikeMessage } from './setting-names.js'
import { PROJECT_ROOT } from './project-paths.js'
import { resolvePython } from './python-path.js'
import type { TaskDescription } from './task-registry.js'
import { shorten } from './short-text.js'
import { version } from './version.js'

/**
 * Starts everything serving would start, then stops it; resolves with the report to print.
 * `stop` ends the start at once (main.ts: Ctrl-C).
 */
export async function checkSetup (config: Config, stop?: AbortSignal): Promise<string> {
  // A variable that looks like a misspelt setting (TASK_MODULE for TASK_MODULES) is a warning
  // when serving; here it fails, before any worker starts: a check that passes while the
  // task modules it was meant to try were never loaded would be worse than none.
  if (config.lookalikes.length > 0) {
    throw new ConfigError(`${config.lookalikes.map(lookalikeMessage).join('; ')} (--check fails on a variable that looks like a misspelt setting: correct its name, or unset it)`)
  }
  // The log goes to stderr, so that stdout is the report alone; at the default level only
  // what the workers print (a slow import's "loading the model...", which would otherwise
  // leave the check silent for as long), warnings (a library's) and errors are logged.
  const quiet = config.logLevel === 'info'
  const stream = quiet ? { write: workerLinesAndWarnings } : process.stderr
  // Strict: a TASK_MODULES entry that registers no task, or a TASK_TIMEOUTS entry naming
  // none, fails the check; serving only warns.
  const app = await buildApp(config, { logger: { level: config.logLevel, stream }, strict: true, startSignal: stop })
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

/**
 * Writes a log line to stderr if it is a warning or worse, or the first worker's output (its
 * stderr, a line of its own): every worker imports the same modules and prints the same lines.
 */
function workerLinesAndWarnings (line: string): void {
  // pino writes the level first: {"level":30,...
  const level = Number(/^\{"level":(\d+)/.exec(line)?.[1] ?? 60)
  if (level >= 40 || (line.includes('"worker":1,') && line.includes('"stream":"stderr"'))) process.stderr.write(line)
}

/** What the output schema says the task returns, in a word or two: its type, or that it declares none. */
function returns (schema: TaskDescription['outputSchema']): string {
  if (schema === null) return 'returns ?'
  const type = typeof schema === 'object' ? schema.type : undefined
  if (typeof type === 'string') return `returns ${type}`
  if (Array.isArray(type)) return `returns ${type.join('|')}`
  return 'returns anything'
}

function table (tasks: readonly TaskDescription[]): string[] {
  const rows = tasks.map((task) => [
    task.name,
    `timeout ${task.timeoutMs} ms`,
    `${task.maxConcurrency} at once`,
    task.raw.length > 0 ? `raw ${task.raw.join(', ')}` : 'JSON/msgpack only',
    returns(task.outputSchema),
    shorten(task.description, 60)
  ])
  const widths = rows.reduce((w, row) => row.map((cell, i) => Math.max(w[i] ?? 0, cell.length)), [] as number[])
  return rows.map((row) => `  ${row.map((cell, i) => i === row.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')}`)
}
