// Owns the workers: generic-pool keeps the set (min = max = size, a replacement
// for each one destroyed); this module borrows a worker for each call that
// admission.ts lets start, has call-run.ts run the call on it, and then
// worker-turnover.ts release, recycle or destroy the worker. HTTP is not its
// business: it throws the typed errors of errors.ts and lets routes send them.

import { setMaxListeners } from 'node:events'
import genericPool, { type Pool } from 'generic-pool'
import type { FastifyBaseLogger } from 'fastify'
import { expectedRefusal, WorkersUnavailableError, withExtras } from '../errors.js'
import type { PythonWorker } from './python-worker.js'
import { Admission, type Waiter } from './admission.js'
import { runCall, type CallRunPool } from './call-run.js'
import { MemorySampler } from './memory-sampler.js'
import { Recycler } from './recycler.js'
import { Reloader, type ReloadResult } from './reloader.js'
import type { Call, PoolObserver } from './call.js'
import { spawnAll, Supervisor, type WorkerSnapshot } from './supervisor.js'
import { WorkerTurnover } from './worker-turnover.js'
import { reportDrain } from './drain-report.js'

export type { WorkerSnapshot } from './supervisor.js'
export { ReloadFailedError, type ReloadResult } from './reloader.js'
export { CALL_LIMITS, CALL_OUTCOMES, RESTART_REASONS, START_FAILURE_KINDS, type StartFailureKind, type Call, type CallOutcome, type PoolObserver, type PoolTask, type RestartReason } from './call.js'

export interface PoolOptions {
  size: number
  queueLimit: number
  /** QUEUE_LIMIT_BYTES: the most body bytes queued calls may hold together (0: no limit). */
  queueLimitBytes: number
  queueTimeoutMs: number
  /** SHED_LATE_CALLS (admission.ts, task-pace.ts); off if absent. */
  shedLateCalls?: boolean
  maxCallsPerWorker: number
  maxWorkerRssBytes: number
  stopGraceMs: number
  /** Starts the worker for slot `id` and resolves once it is ready; `signal` aborts a start still in progress (shutdown). */
  spawn: (id: number, signal?: AbortSignal) => Promise<PythonWorker>
  log: FastifyBaseLogger
  observer: PoolObserver
  /** Decodes large replies off the event loop, for workers spawned with offloadMinBytes (offload/offloader.ts). */
  offloader?: CallRunPool['offloader']
}

export class WorkerPool {
  readonly #options: PoolOptions
  readonly #pool: Pool<PythonWorker>
  readonly #admission: Admission
  readonly #recycler: Recycler
  readonly #supervisor: Supervisor
  /** Serving; draining (new calls refused, admitted ones finishing); closed (workers stopping or stopped). */
  #phase: 'serving' | 'draining' | 'closed' = 'serving'
  /** Resolved once every slot holds a worker (start). */
  #fullWaiters: Array<() => void> = []
  readonly #stopStarts = new AbortController()
  readonly #reloader: Reloader
  /** What each call's run (call-run.ts) may do with the pool: built once, not per call. */
  readonly #callRunPool: CallRunPool
  readonly #memory: MemorySampler
  /** Releases, swaps or destroys each worker after its call, a sweep or its exit. */
  readonly #turnover: WorkerTurnover
  /**
   * The number of each worker's latest lending (#begin counts them): #runThrew tells by it
   * whether a worker still borrowed is still its call's. A number, not the waiter: this
   * outlives the call, which may hold a large input.
   */
  readonly #lent = new Map<PythonWorker, number>()
  #lendings = 0

  private constructor (options: PoolOptions, initial: PythonWorker[]) {
    this.#options = options
    this.#admission = new Admission({
      queueLimit: options.queueLimit,
      queueLimitBytes: options.queueLimitBytes,
      queueTimeoutMs: options.queueTimeoutMs,
      poolSize: options.size,
      shedLateCalls: options.shedLateCalls,
      observer: options.observer,
      freeWorkers: () => this.#pool.available,
      liveWorkers: () => this.#supervisor.liveWorkers,
      start: (waiter) => { this.#begin(waiter) }
    })
    // Replacements and spares: a start still running when the pool closes is aborted.
    // Every start listens on the one signal: no listener limit (Node warns past 10).
    setMaxListeners(0, this.#stopStarts.signal)
    const spawn = async (id: number): Promise<PythonWorker> => await options.spawn(id, this.#stopStarts.signal)
    this.#supervisor = new Supervisor({
      spawn,
      stopGraceMs: options.stopGraceMs,
      log: options.log,
      onReady: (worker) => {
        this.#reloader.retireIfStale(worker)
        this.#admission.dispatch()
        this.#checkFull()
      },
      onStartFailed: (retryInMs) => {
        options.observer.workerStartFailed('replacement')
        // Nobody can be served while no worker runs: fail the waiting calls now instead of at their timeout.
        if (this.liveWorkers === 0) this.#admission.failQueued(() => this.#noWorkersError(retryInMs), 'worker_died')
      },
      onGone: (worker) => { this.#recycler.forget(worker); this.#lent.delete(worker) }
    })
    for (const worker of initial) this.#supervisor.handOver(worker)
    this.#recycler = new Recycler({
      maxCalls: options.maxCallsPerWorker,
      maxRssBytes: options.maxWorkerRssBytes,
      spawn,
      log: options.log,
      onSpareReady: () => { this.#turnover.sweepIdle() },
      onSpareFailed: (reason) => { options.observer.workerStartFailed(reason === 'reload' ? 'reload' : 'spare') },
      // If it is idle, take it out now; if busy, giveBack (worker-turnover.ts) replaces it when its call ends.
      onOverMemory: () => { this.#turnover.sweepIdle() },
      isDraining: () => this.#phase !== 'serving'
    })
    this.#memory = new MemorySampler(() => this.members(), (worker) => { this.#recycler.noteRss(worker) })
    this.#reloader = new Reloader({
      recycler: this.#recycler,
      supervisor: this.#supervisor,
      log: options.log,
      isDraining: () => this.#phase !== 'serving',
      sweepIdle: () => { this.#turnover.sweepIdle() }
    })
    this.#callRunPool = {
      admission: this.#admission,
      log: options.log,
      giveBack: (worker, memory) => this.#turnover.giveBack(worker, memory),
      discard: (worker, reason, during) => { this.#turnover.discard(worker, reason, during) },
      stoppedByShutdown: (worker, reason) => this.#turnover.stoppedByShutdown(worker, reason),
      offloader: options.offloader
    }
    this.#pool = genericPool.createPool<PythonWorker>({
      create: async () => await this.#supervisor.create(),
      destroy: async (worker) => { await this.#supervisor.destroy(worker) }
    }, { min: options.size, max: options.size, autostart: true })
    this.#turnover = new WorkerTurnover({
      workers: this.#pool,
      admission: this.#admission,
      recycler: this.#recycler,
      supervisor: this.#supervisor,
      log: options.log,
      observer: options.observer,
      maxWorkerRssBytes: options.maxWorkerRssBytes,
      isClosed: () => this.#phase === 'closed'
    })
  }

  /**
   * Spawns all workers and resolves once every one is ready. Throws the first
   * WorkerStartError (after killing the others) so the server can exit with it.
   */
  static async start (options: PoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(options, await spawnAll(options.size, options.spawn))
    await new Promise<void>((resolve) => { pool.#whenFull(resolve) })
    // A worker that was ready and exited while the others still started had no pool to tell
    // (the plugin's onExit finds none yet), and sat dead in it until a call was given it:
    // swept now, it is replaced as any idle worker that exits is.
    if (pool.members().some((worker) => !worker.isAlive)) pool.#turnover.sweepIdle()
    return pool
  }

  /** The tasks the newest worker declared. */
  get tasks (): PythonWorker['tasks'] { return this.#supervisor.tasks }

  /** Workers that can take a call now or after their current one. */
  get liveWorkers (): number { return this.#supervisor.liveWorkers }

  get isDraining (): boolean { return this.#phase !== 'serving' }
  get waiting (): number { return this.#admission.waiting }
  /** Tasks with calls waiting or running now, served or not (pyfleet_task_calls). */
  tasksWithCalls (): string[] { return this.#admission.tasksWithCalls() }
  /** Calls of `task` waiting and running now (pyfleet_task_calls). */
  callsOf (task: string): { waiting: number, running: number } { return this.#admission.callsOf(task) }
  /** Request-body bytes the waiting calls hold (QUEUE_LIMIT_BYTES). */
  get queuedBytes (): number { return this.#admission.queuedBytes }

  /**
   * Runs a call on a worker and resolves with the task's return value. Rejects
   * with a typed error of errors.ts; every call ends in exactly one of the two.
   */
  run (call: Call): Promise<unknown> {
    // Cancelled by the shutdown before it could wait (SPEC §6 counts every call that passed validation).
    if (this.#phase !== 'serving') return this.#admission.refuse(call, 'cancelled', expectedRefusal(withExtras(new WorkersUnavailableError('the server is shutting down'), { retryAfterSeconds: 1 })))
    if (this.#supervisor.startFailures > 0 && this.liveWorkers === 0) return this.#admission.refuse(call, 'worker_died', this.#noWorkersError(this.#supervisor.nextRetryInMs))
    return this.#admission.admit(call)
  }

  /**
   * A call whose client left before it could be run (while its large body was parsed on the
   * offload thread): counted as cancelled, as one whose client leaves while it is queued.
   */
  cancel (call: Call): Promise<never> {
    return this.#admission.refuse(call, 'cancelled', new WorkersUnavailableError('the client went away before its call could start'))
  }

  #noWorkersError (retryInMs: number): Error {
    // At least 1 s: a Retry-After of 0 invites a client to hammer a server that cannot serve.
    return withExtras(new WorkersUnavailableError('no worker is running: replacements fail to start and are being retried; see the server log'), { retryAfterSeconds: Math.max(1, Math.ceil(retryInMs / 1000)) })
  }

  /** Borrows a worker (one is free: generic-pool hands it over synchronously) and runs the call. */
  #begin (waiter: Waiter): void {
    this.#pool.acquire().then(
      async (worker) => {
        const lending = ++this.#lendings
        this.#lent.set(worker, lending)
        try {
          await runCall(waiter, worker, this.#callRunPool)
        } catch (error) {
          this.#runThrew(waiter, worker, lending, error)
        }
      },
      (error: Error) => { this.#admission.finished(waiter); this.#admission.settle(waiter, 'worker_died', new WorkersUnavailableError(error.message)) }
    ).catch((error: unknown) => { this.#bugInPool(waiter, error) })
  }

  /**
   * runCall settles its caller, gives its worker back and never throws. If a bug makes it
   * (or an observer it calls) throw, nothing may stay held: the caller gets a 500 rather than
   * an answer never sent, the call stops counting against its task's limit, and the worker
   * goes back (idle) or is replaced (anything else: a call may still be running on it, or it
   * is dead). Kept borrowed, it was a slot lost for the life of the process; unhandled, the
   * rejection ended the process and every call on it.
   */
  #runThrew (waiter: Waiter, worker: PythonWorker, lending: number, error: unknown): void {
    this.#bugInPool(waiter, error)
    this.#admission.finished(waiter)
    // Only if this call's run still holds it: given back, it may be lent to another call by now.
    if (this.#pool.isBorrowedResource(worker) && this.#lent.get(worker) === lending) {
      if (worker.state === 'idle') void this.#turnover.giveBack(worker)
      else this.#turnover.discard(worker, worker.failure ?? 'crash')
    }
    this.#admission.dispatch()
  }

  #bugInPool (waiter: Waiter, error: unknown): void {
    this.#options.log.error({ err: error, requestId: waiter.call.requestId, task: waiter.call.task.name }, 'a call failed inside the pool: a bug in pyfleet, please report it')
    waiter.reject(error instanceof Error ? error : new Error(String(error))) // a no-op if it was settled
  }

  /** A worker exited on its own (not during a call): worker-turnover.ts replaces it, or drops the retirement it was the spare of. */
  readonly onWorkerExit = (worker: PythonWorker): void => { this.#turnover.exited(worker) }

  #whenFull (resolve: () => void): void { this.#fullWaiters.push(resolve); this.#checkFull() }
  #checkFull (): void {
    if (this.#pool.available + this.#pool.borrowed < this.#options.size) return
    for (const resolve of this.#fullWaiters.splice(0)) resolve()
  }

  /** A snapshot for /api/queue-stats and the gauges. */
  snapshot (): { pool: { size: number, min: number, max: number, available: number, borrowed: number, pending: number }, queue: { waiting: number, limit: number, bytes: number, limitBytes: number }, workers: WorkerSnapshot[] } {
    const workers: WorkerSnapshot[] = this.#supervisor.snapshot()
    return {
      pool: { size: this.#pool.size, min: this.#pool.min, max: this.#pool.max, available: this.#pool.available, borrowed: this.#pool.borrowed, pending: this.#pool.pending },
      queue: { waiting: this.#admission.waiting, limit: this.#options.queueLimit, bytes: this.queuedBytes, limitBytes: this.#options.queueLimitBytes },
      workers
    }
  }

  /**
   * Reads every worker's RSS now (scrapes, /api/queue-stats). One found past
   * MAX_WORKER_RSS_MB takes no further call, as if a call had found it.
   */
  async sampleMemory (): Promise<void> {
    await this.#memory.sample()
  }

  /** Workers in the pool right now (for RSS sampling and reload). */
  members (): PythonWorker[] {
    return this.#supervisor.members()
  }

  /** True while a reload replaces the workers. */
  get isReloading (): boolean { return this.#reloader.isActive }

  /** A reload asked for now would share one asked for before it that has not begun (reloader.ts). */
  get reloadWaiting (): boolean { return this.#reloader.followUpWaiting }

  /**
   * Replaces every worker, starting one replacement at a time, each worker only once
   * its replacement is ready (and accepted) and it is free, so capacity never drops
   * and no call fails (reloader.ts).
   */
  async reload (acceptTasks?: (tasks: PythonWorker['tasks']) => void): Promise<ReloadResult> {
    return await this.#reloader.reload(acceptTasks)
  }

  /**
   * Shutdown: refuse new calls, let running and queued ones finish for up to
   * graceMs, then stop every worker. Calls still unfinished then get 503 (queued)
   * or 502 (running: their worker is stopped); one line says how many, before the
   * workers' own lines, since the exit is 0 either way (`report` false: a failed start's
   * cleanup, with no call to speak of).
   */
  async drain (graceMs: number, report = true): Promise<void> {
    this.#phase = 'draining'
    await this.#admission.idle(graceMs)
    if (report) reportDrain(this.#options.log, this.#admission, graceMs, this.#options.stopGraceMs)
    this.#phase = 'closed'
    // Stop starting workers before aborting the starts in progress, so that an aborted
    // start is not taken for a failure (logged, counted, retried).
    this.#supervisor.stopSpawning()
    this.#stopStarts.abort()
    this.#admission.failQueued(() => withExtras(new WorkersUnavailableError('the server shut down before this call could start'), { retryAfterSeconds: 1 }), 'cancelled')
    await this.#recycler.close()
    await this.#supervisor.close()
    await this.#pool.drain()
    await this.#pool.clear()
  }
}
