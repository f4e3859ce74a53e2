// Workers whose declared tasks differ from the table being served: task files edited on
// disk under a running server, picked up by a worker started since (a crash's replacement,
// recycling) but not by the table, which only a reload changes.

import type { FastifyBaseLogger } from 'fastify'
import type { PythonWorker } from './pool/python-worker.js'
import type { WorkerPool } from './pool/worker-pool.js'
import type { TaskRegistry } from './task-registry.js'
import { declarationKey } from './declaration-key.js'

/**
 * Warns when a new worker declares other tasks than the table: calls are still validated
 * against the old table, and this worker may run code the others do not. Said once per
 * distinct difference, not on every recycle; a worker matching the table again re-arms it.
 */
export class DriftWarning {
  readonly #tasks: TaskRegistry
  readonly #log: FastifyBaseLogger
  #lastDrift = ''

  constructor (tasks: TaskRegistry, log: FastifyBaseLogger) {
    this.#tasks = tasks
    this.#log = log
  }

  /** For a worker started outside a reload, once the first workers have made the table. */
  check (worker: PythonWorker): void {
    const drift = this.#tasks.drift(worker.tasks)
    const key = drift === undefined ? '' : JSON.stringify(drift)
    if (key === this.#lastDrift) return
    this.#lastDrift = key
    if (drift === undefined) return
    this.#log.warn({ worker: worker.id, workerPid: worker.pid, ...drift },
      'a new worker declares tasks that differ from the table being served: task code was changed on disk under a running server. ' +
      'Workers now run different code, and calls are validated against the old table; reload (SIGHUP or POST /admin/reload) or restart to apply it')
  }
}

/**
 * Counts the running workers whose declared tasks differ from the table served, for
 * pyfleet_workers_unlike_task_table. Each worker's declaration is made its key (declaration-key.ts) once (a table of
 * hundreds of tasks is most of a megabyte), not on every scrape.
 */
export function workersUnlikeTable (pool: WorkerPool, tasks: TaskRegistry): () => number {
  const declarations = new WeakMap<PythonWorker, string>()
  return () => {
    let unlike = 0
    for (const worker of pool.members()) {
      if (!worker.isAlive) continue
      let declaration = declarations.get(worker)
      if (declaration === undefined) {
        declaration = declarationKey(worker.tasks)
        declarations.set(worker, declaration)
      }
      if (!tasks.isServedTable(declaration)) unlike++
    }
    return unlike
  }
}
