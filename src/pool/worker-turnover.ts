// What becomes of a worker after a call, a sweep or its exit: released, swapped
// for its ready spare, or destroyed (with its log line and restart count).
// worker-pool.ts owns generic-pool and lends it here; recycler.ts decides which.

import type { FastifyBaseLogger } from 'fastify'
import type { PythonWorker } from './python-worker.js'
import type { Admission } from './admission.js'
import { OVER_MEMORY, type Recycler } from './recycler.js'
import type { Call, PoolObserver, RestartReason } from './call.js'
import type { Supervisor } from './supervisor.js'
import { traceLogFieldsOf } from '../trace-context.js'

/** The verbs of generic-pool's Pool this module uses (worker-pool.ts, the only importer of generic-pool, passes its pool). */
export interface BorrowedWorkers {
  readonly available: number
  acquire: () => Promise<PythonWorker>
  release: (worker: PythonWorker) => Promise<void>
  destroy: (worker: PythonWorker) => Promise<void>
}

export interface WorkerTurnoverOptions {
  workers: BorrowedWorkers
  admission: Admission
  recycler: Recycler
  supervisor: Supervisor
  log: FastifyBaseLogger
  observer: PoolObserver
  maxWorkerRssBytes: number
  /** The shutdown has stopped the workers (the pool's phase is 'closed'). */
  isClosed: () => boolean
}

export class WorkerTurnover {
  readonly #options: WorkerTurnoverOptions

  constructor (options: WorkerTurnoverOptions) {
    this.#options = options
  }

  /**
   * After a call that left the worker healthy: release it, swap it for its spare, or
   * replace it. `memory` is the RSS its reply reported (only past MAX_WORKER_RSS_MB), or
   * 'measure' for a reply that did not say (decoded off the event loop). Returns a promise
   * when that waits for a memory check: the caller is answered once the worker is back, so
   * a client's next call finds it free.
   */
  giveBack (worker: PythonWorker, memory?: number | 'measure'): Promise<void> | undefined {
    if (memory === 'measure' && this.#options.maxWorkerRssBytes > 0) {
      // Measured before it may take another call (a worker past the limit must not take
      // one). It stays borrowed for the ~0.1 ms this takes.
      return this.#options.recycler.checkRss(worker).then(() => { this.#putBack(worker) })
    }
    if (typeof memory === 'number') this.#options.recycler.reportedRss(worker, memory)
    this.#putBack(worker)
    return undefined
  }

  #putBack (worker: PythonWorker): void {
    // It may have died while its memory was measured: its exit found it borrowed, so nobody
    // replaced it, and released it would sit in the pool dead.
    if (worker.state !== 'idle') {
      this.discard(worker, worker.failure ?? 'crash')
      this.#options.admission.dispatch()
      return
    }
    const next = this.#options.recycler.afterCall(worker)
    if (next === OVER_MEMORY) this.discard(worker, 'max_rss')
    else if (next !== undefined) this.#swap(worker, next.spare, next.reason)
    else this.#handBack('release', worker)
    this.#options.admission.dispatch()
  }

  #swap (worker: PythonWorker, spare: PythonWorker, reason: RestartReason): void {
    this.#options.log.info({ worker: worker.id, workerPid: worker.pid, newWorkerPid: spare.pid, reason, calls: worker.calls }, 'recycling worker')
    this.#options.supervisor.handOver(spare)
    this.#options.observer.workerRestarted(reason)
    this.#handBack('destroy', worker)
  }

  /** Removes a failed worker; generic-pool then asks its factory (Supervisor.create) for its replacement. */
  discard (worker: PythonWorker, reason: RestartReason, during?: Call): void {
    const { recycler } = this.#options
    if (this.#options.isClosed()) {
      // Nothing is replaced once closed, and no restart counted. One the shutdown stopped says
      // no more (its call's line does); one that failed on its own first, while being stopped
      // (a call past its timeout), says so: it said "replacing worker", though none started.
      if (!this.stoppedByShutdown(worker, reason)) this.#logFailure(worker, reason, during, undefined, 'worker failed while the shutdown stopped it; not replaced')
    } else {
      // A spare ready for it (recycling, a reload waiting for its call to end) takes its slot
      // at once: starting another cold cost ~0.1 s of CPU and left the slot empty meanwhile.
      // While draining too: admitted calls may still need a worker (as a swap after a call hands one over then).
      const spare = recycler.takeReadySpare(worker)
      this.#logFailure(worker, reason, during, spare, spare === undefined ? 'replacing worker' : 'replacing worker with the spare that was ready for it')
      this.#options.observer.workerRestarted(reason)
      if (spare !== undefined) this.#options.supervisor.handOver(spare)
    }
    recycler.forget(worker)
    this.#handBack('destroy', worker)
  }

  /**
   * generic-pool's release and destroy refuse (a rejected promise) a worker it has not lent
   * out: only a bug in pyfleet can do that, and unhandled the rejection would end the process
   * with every call on it. Said, so that it gets reported, and the server serves on.
   */
  #handBack (verb: 'release' | 'destroy', worker: PythonWorker): void {
    this.#options.workers[verb](worker).catch((error: unknown) => {
      this.#options.log.error({ err: error, worker: worker.id, workerPid: worker.pid }, `the pool refused to ${verb} worker ${worker.id}: a bug in pyfleet, please report it`)
    })
  }

  #logFailure (worker: PythonWorker, reason: RestartReason, during: Call | undefined, spare: PythonWorker | undefined, message: string): void {
    const { log } = this.#options
    // `how` it ended (a signal, an exit code, the OOM hint): the 'worker exited' line that says
    // it too is info, and at LOG_LEVEL=warn an idle worker's crash said no more than "crash".
    const fields = { worker: worker.id, workerPid: worker.pid, reason, how: worker.exitDescription, task: during?.task.name, requestId: during?.requestId, ...traceLogFieldsOf(during?.trace?.traceparent), newWorkerPid: spare?.pid }
    // Past MAX_WORKER_RSS_MB is routine upkeep, as recycling is (info, with what it measured);
    // a crash, a timeout or a protocol error is not.
    if (reason === 'max_rss') log.info({ ...fields, calls: worker.calls, rssBytes: worker.rssBytes }, message)
    // A worker that died or broke the protocol is an error, as a task's exception is: an alert
    // on error lines missed every crash (a review); a call past its timeout is a warning.
    else if (reason === 'crash' || reason === 'protocol') log.error(fields, message)
    else log.warn(fields, message)
  }

  /**
   * Takes every idle worker out for a moment: dead ones are replaced, retired
   * ones with a spare are swapped, the rest go straight back. generic-pool
   * allocates synchronously, so nothing else can take them in between.
   */
  sweepIdle (): void {
    const { workers } = this.#options
    const idle = workers.available
    for (let i = 0; i < idle; i++) {
      workers.acquire().then((worker) => {
        if (worker.state !== 'idle') this.discard(worker, worker.failure ?? 'crash')
        else void this.giveBack(worker)
        this.#options.admission.dispatch()
      }, () => {})
    }
  }

  /**
   * A worker exited on its own (not during a call): replace it if it was idle; if it was
   * a spare waiting for its worker to be free, the worker it was to replace stays, and
   * a sweep retires an idle one again (or replaces it at once, if over memory).
   */
  exited (worker: PythonWorker): void {
    if (this.#options.isClosed()) return
    if (this.#options.supervisor.holds(worker) || this.#options.recycler.spareExited(worker)) this.sweepIdle()
  }

  /** Whether a worker that failed with `reason` was ended by the shutdown's stop (not a timeout or a crash of its own first). */
  stoppedByShutdown (worker: PythonWorker, reason: RestartReason): boolean {
    return this.#options.isClosed() && worker.stopRequested && reason === 'crash'
  }
}
