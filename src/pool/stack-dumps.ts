// A worker past its time asked for its stacks (SIGUSR1) before python-worker.ts kills it,
// and how long it has to print them: a call's dump is only logged, a start's says where it is
// stuck (stuck-at.ts reads it from stderr).

import type { WorkerProcess } from './worker-process.js'
import type { WorkerStderr } from './worker-stderr.js'

/** How long a worker past its call's timeout has to print its stacks (SIGUSR1) before its SIGKILL. */
const STACK_DUMP_MS = 100
/**
 * How long a worker past its start timeout has to print its stacks before its SIGKILL: the
 * start's failure quotes the frame they show, so this waits for it (and no longer), where a
 * call's dump is only logged.
 */
const START_STACK_DUMP_MS = 1000

/**
 * Where was the task stuck? The runtime prints every thread's stack on SIGUSR1
 * (faulthandler, in workers/pyfleet/__main__.py), which stderr's lines log under the
 * call's request id. Resolves once it has had STACK_DUMP_MS to, or has exited.
 */
export async function dumpCallStacks (process: WorkerProcess): Promise<void> {
  process.signalWorker('SIGUSR1')
  await Promise.race([process.exited, new Promise((resolve) => { setTimeout(resolve, STACK_DUMP_MS).unref() })])
}

/**
 * Where a start past its timeout is stuck: the runtime prints every thread's stack on
 * SIGUSR1 (set up before any task module is imported), and the main thread's stack says
 * which import it is stuck in (stuck-at.ts).
 */
export async function whereStartIsStuck (process: WorkerProcess, stderr: WorkerStderr): Promise<string | undefined> {
  const frame = stderr.awaitWhereStuck()
  process.signalWorker('SIGUSR1')
  let timer: NodeJS.Timeout | undefined
  const gaveUp = new Promise<undefined>((resolve) => { timer = setTimeout(() => { resolve(undefined) }, START_STACK_DUMP_MS) })
  try {
    return await Promise.race([frame, gaveUp, process.exited.then(() => undefined)])
  } finally {
    clearTimeout(timer)
  }
}
