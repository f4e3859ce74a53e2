// What the pool's start can find wrong with the setup once workers have run, in the
// words that send the user to the fix: a package installed for another interpreter than
// the workers', a MAX_WORKER_RSS_MB that every worker passes before its first call.

import type { PythonInfo } from './python-path.js'
import type { WorkerPool } from './pool/worker-pool.js'

/**
 * A task module's import that failed for a missing package, when the search for an
 * interpreter passed one over: the package is most likely installed for that one (an
 * activated virtualenv without msgpack), and "install the package" alone would send the
 * user to install what they have. The start's one line says so; `pool ready`, which names
 * what was passed over, never comes then.
 */
export function withPassedOver (error: unknown, python: PythonInfo): unknown {
  if (python.passedOver === undefined || !(error instanceof Error)) return error
  const missing = /task module '([^']+)' could not be imported: No module named '([^']+)'/.exec(error.message)
  // Only a package the task module imports (or a module of one: a namespace package such as
  // google.cloud is found in part). The task module itself, or a package above it, not found
  // (a typo in TASK_MODULES, a PYTHONPATH without its directory) is no package to install
  // anywhere, as the worker decides too (task_modules.py).
  if (missing === null) return error
  const [, module, name] = missing
  if (module === name || module.startsWith(`${name}.`)) return error
  error.message += `. The workers run ${python.path}, found after passing over ${python.passedOver.join('; ')}: if that package is installed for another interpreter, install msgpack and defusedxml there too, or point PYTHON at the one that has them all`
  return error
}

/**
 * What is wrong with a MAX_WORKER_RSS_MB that a worker passes before its first call, or
 * undefined: every call would then replace its worker (a review saw /ready flap with 5 MB,
 * where an idle worker is 17-19 MB). Read once the first workers are ready.
 */
export async function rssLimitBelowIdle (pool: WorkerPool, maxWorkerRssMb: number): Promise<string | undefined> {
  if (maxWorkerRssMb <= 0) return undefined
  await pool.sampleMemory()
  const idle = Math.max(0, ...pool.members().map((worker) => worker.rssBytes))
  if (idle < maxWorkerRssMb * 1024 * 1024) return undefined
  const idleMb = Math.ceil(idle / (1024 * 1024))
  return `MAX_WORKER_RSS_MB=${maxWorkerRssMb} is below what a worker uses before any call (${idleMb} MB with these task modules): every call would replace its worker. Set it well above that (several times, to leave room for calls), or 0 for no limit`
}
