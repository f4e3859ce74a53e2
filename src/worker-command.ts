// The command line and environment every worker is started with, from the settings:
// what `python -m pyfleet` is told (workers/pyfleet/__main__.py reads the same options).

import type { Config } from './config.js'
import { WORKERS_DIR } from './project-paths.js'

export interface WorkerCommand {
  /** After the interpreter's path: `-m pyfleet` and its options. */
  readonly args: readonly string[]
  readonly env: Readonly<Record<string, string | undefined>>
}

/** `strict`: `--check`'s workers refuse a task module that registers no task, where serving ones warn. */
export function workerCommand (config: Config, { strict = false, serverPid = process.pid }: { strict?: boolean, serverPid?: number } = {}): WorkerCommand {
  const args = ['-m', 'pyfleet', '--max-frame-bytes', String(config.maxFrameBytes), '--parent-pid', String(serverPid)]
  // Each worker reads its own RSS after every call and says so in the reply once past the limit (resident.py).
  if (config.maxWorkerRssMb > 0) args.push('--max-rss-bytes', String(config.maxWorkerRssMb * 1024 * 1024))
  if (strict) args.push('--strict')
  if (config.workerSchedBatch) args.push('--sched-batch')
  if (config.diagTasks) args.push('--diag')
  for (const module of config.taskModules) args.push('--module', module)
  const env = {
    ...config.workerEnv,
    // The runtime first, then the user's own PYTHONPATH (where their task modules may be).
    PYTHONPATH: [WORKERS_DIR, config.workerEnv.PYTHONPATH].filter(Boolean).join(':'),
    // A task's print() reaches the server's log as it happens, not when a buffer fills.
    PYTHONUNBUFFERED: '1'
  }
  return { args, env }
}
