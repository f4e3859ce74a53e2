// Admission: which call may start next, and what happens to the ones that must
// wait. It decides from the callers in the queue (queued-calls.ts: arrival order,
// each caller with its own deadline and cancellation) and the calls running
// (running-calls.ts: the per-task concurrency counts and the calls in flight),
// turns away a call the queue has no room for (queue-errors.ts), and settles every
// call exactly once. It never touches a worker: when a call may start it hands it
// to `start`, and the pool reports back with `finished`, `requeue` and `settle`.
// (generic-pool cannot cancel a waiting acquire or give each waiter its own
// deadline, hence this queue in front of it.)

import { performance } from 'node:perf_hooks'
import { QueueFullError, WorkersUnavailableError, withExtras } from '../errors.js'
import type { Waiting } from './wait-queue.js'
import type { Call, CallLimit, CallOutcome, PoolObserver, PoolTask } from './call.js'
import { RetryAfter } from './retry-after.js'
import { TaskPaces } from './task-pace.js'
import { QueuedCalls } from './queued-calls.js'
import { RunningCalls } from './running-calls.js'
import { queueFullFor, queueTimeoutError, tooLateToStartError } from './queue-errors.js'

/** One caller, from admission until its call is settled. */
export interface Waiter {
  readonly call: Call
  readonly enqueuedAt: number
  /** When it was handed to the pool to run (performance.now()); 0 until then. */
  startedAt: number
  readonly resolve: (value: unknown) => void
  readonly reject: (error: Error) => void
  entry?: Waiting<Waiter>
  timer?: NodeJS.Timeout
  unsubscribe?: () => void
  /** Settled while it still runs (its client's budget ran out): a drain does not wait for it. */
  answeredEarly: boolean
  /** Handed to the pool and not finished yet: it counts against its task's TASK_CONCURRENCY. */
  running: boolean
}

export interface AdmissionOptions {
  queueLimit: number
  /** The most input, in body bytes, queued calls may hold together (0: no limit); one call alone may always wait. */
  queueLimitBytes: number
  queueTimeoutMs: number
  /** POOL_SIZE: the calls that can run at once, for the queue's Retry-After (retry-after.ts). */
  poolSize: number
  /**
   * SHED_LATE_CALLS: a queued call whose client's budget has less time left than its task's
   * fastest recent calls took is refused instead of started (task-pace.ts). Off by default:
   * a task whose calls take very different times (by their input) would have fast calls refused.
   */
  shedLateCalls?: boolean
  observer: PoolObserver
  /** Workers that can be borrowed right now, synchronously. */
  freeWorkers: () => number
  /** Workers running (idle or busy, not starting), for QUEUE_FULL's message; POOL_SIZE if not given. */
  liveWorkers?: () => number
  /** Runs a call that may start now; the pool then calls `finished` and `settle` (or `requeue`). */
  start: (waiter: Waiter) => void
}

/** Every field present from the start: one object shape whether or not the waiter ever queues. */
function newWaiter (call: Call, enqueuedAt: number, resolve: Waiter['resolve'], reject: Waiter['reject']): Waiter {
  return { call, enqueuedAt, startedAt: 0, resolve, reject, entry: undefined, timer: undefined, unsubscribe: undefined, answeredEarly: false, running: false }
}

export class Admission {
  readonly #options: AdmissionOptions
  readonly #queued: QueuedCalls
  readonly #running = new RunningCalls()
  /** Resolved when the queue is empty and no call runs for a client (drain). */
  #idleWaiters: Array<() => void> = []
  readonly #retryAfter: RetryAfter
  /** Each task's fastest recent calls, with SHED_LATE_CALLS: a queued call with less budget left is not started (task-pace.ts). */
  readonly #paces: TaskPaces | undefined

  /**
   * Whether `task`'s own limit, below POOL_SIZE, is what holds its calls back: the errors then
   * name TASK_CONCURRENCY. A task at a limit of POOL_SIZE (the default) is held by a full
   * pool, and naming a setting nobody set sent operators looking for it.
   */
  #heldByTaskLimit (task: PoolTask): boolean {
    return task.maxConcurrency < this.#options.poolSize && !this.#running.hasCapacity(task)
  }

  constructor (options: AdmissionOptions) {
    this.#options = options
    this.#queued = new QueuedCalls({
      queueTimeoutMs: options.queueTimeoutMs,
      timedOut: (waiter, limitMs, byBudget) => {
        const task = waiter.call.task
        const atTaskLimit = this.#heldByTaskLimit(task) ? task : undefined
        this.settle(waiter, 'queue_timeout', queueTimeoutError(limitMs, byBudget, this.#retryAfterFor(task), atTaskLimit), undefined, byBudget ? 'client_budget_queued' : 'queue_timeout_ms')
      },
      clientGone: (waiter) => {
        this.settle(waiter, 'cancelled', new WorkersUnavailableError('the client went away while its call was queued'))
      }
    })
    this.#retryAfter = new RetryAfter(options.poolSize)
    this.#paces = options.shedLateCalls === true ? new TaskPaces() : undefined
  }

  get waiting (): number { return this.#queued.size }
  /** Calls running for a client (not those answered early, which nobody waits for). */
  get runningForClients (): number { return this.#running.forClients }
  get queuedBytes (): number { return this.#queued.bytes }

  /** Names of the tasks with calls waiting or running now (a task a reload removed may still have some). */
  tasksWithCalls (): string[] {
    return [...new Set([...this.#running.tasks(), ...this.#queued.tasks()])]
  }

  /** Calls of `task` waiting for a worker and running on one (answered early ones included: they hold it). */
  callsOf (task: string): { waiting: number, running: number } {
    return { waiting: this.#queued.of(task), running: this.#running.of(task) }
  }

  /**
   * Starts the call now if a worker is free and nobody ahead of it could take that
   * worker, queues it otherwise, or refuses it when the queue is full. The promise
   * settles with the task's value or a typed error of errors.ts.
   */
  admit (call: Call): Promise<unknown> {
    const enqueuedAt = performance.now()
    // A free worker, and nobody ahead who could take it: no queue entry, no timer, and no
    // queue limit. Callers waiting on their task's own limit (TASK_CONCURRENCY) are not
    // ahead of a call of another task: with the queue full of them, a call of a task under
    // its limit was refused QUEUE_FULL while workers sat idle.
    if (this.#options.freeWorkers() > 0 && this.#running.hasCapacity(call.task) && (this.#queued.size === 0 || !this.#queued.some(this.#running.canStart))) {
      return new Promise((resolve, reject) => { this.#start(newWaiter(call, enqueuedAt, resolve, reject)) })
    }
    const full = queueFullFor(call, { waiting: this.#queued.size, queuedBytes: this.#queued.bytes, taskAtLimit: this.#heldByTaskLimit(call.task) }, this.#options)
    if (full !== undefined) {
      return this.refuse(call, 'queue_full', withExtras(new QueueFullError(full.message), { retryAfterSeconds: this.#retryAfterFor(call.task) }), full.limit)
    }
    return new Promise((resolve, reject) => {
      this.#queued.enqueue(newWaiter(call, enqueuedAt, resolve, reject))
      // Workers may be free while everyone queued waits on a per-task limit.
      if (this.#options.freeWorkers() > 0) this.dispatch()
    })
  }

  /** A call turned away before it could wait: counted, then rejected. `limit`: the limit that refused it, if one did. */
  refuse (call: Call, outcome: CallOutcome, error: Error, limit?: CallLimit): Promise<never> {
    call.outcome = outcome
    call.limit = limit
    this.#options.observer.callRefused(call, outcome)
    return Promise.reject(error)
  }

  /** Starts queued calls while workers are free; tells a drain when all is done. */
  dispatch (): void {
    while (this.#options.freeWorkers() > 0 && this.#queued.size > 0) {
      const waiter = this.#queued.take(this.#running.canStart)
      if (waiter === undefined) break
      const tooLate = this.#tooLateToStart(waiter.call)
      if (tooLate !== undefined) this.settle(waiter, 'queue_timeout', tooLate, undefined, 'shed_late_calls')
      else this.#start(waiter)
    }
    this.#checkIdle()
  }

  /** Tells a waiting drain once nothing is queued or running (a drain resumes a microtask later). */
  #checkIdle (): void {
    if (this.#idleWaiters.length > 0 && this.#isIdle()) {
      for (const resolve of this.#idleWaiters.splice(0)) resolve()
    }
  }

  /** Nothing queued, and no call running that someone waits for. */
  #isIdle (): boolean {
    return this.#queued.size === 0 && this.#running.forClients === 0
  }

  /** The call no longer holds a worker (it ended, or never got one). */
  finished (waiter: Waiter): void {
    // Once only: the pool's recovery from a bug (worker-pool.ts #runThrew) may find it finished.
    if (!this.#running.finish(waiter)) return
    // Only calls that reached their worker (runMs is set by then): one that never did, its
    // budget spent or its input unsendable, would pull the mean towards 0.
    if (waiter.call.runMs > 0) this.#retryAfter.callHeldWorker(waiter.call.task.name, performance.now() - waiter.startedAt)
  }

  /**
   * Settles a call that goes on running (its client's budget ran out): it still
   * holds its worker and counts against its task's limit until `finished`, but
   * a drain no longer waits for it (the shutdown stops its worker).
   */
  answerEarly (waiter: Waiter, outcome: CallOutcome, error: Error, limit?: CallLimit): void {
    this.#running.answerEarly(waiter)
    this.settle(waiter, outcome, error, undefined, limit)
  }

  /** A call that was started but could not run (its worker had died): back to the front of the queue. */
  requeue (waiter: Waiter): void {
    this.finished(waiter)
    this.#queued.enqueue(waiter, true)
    this.dispatch()
  }

  /**
   * A started call whose budget (x-request-timeout-ms) ran out before it reached
   * its worker (the queue timer had not fired yet): it ends as one that timed out
   * in the queue, never dispatched (SPEC §1). The pool still holds the worker.
   */
  expired (waiter: Waiter): void {
    this.finished(waiter)
    this.settle(waiter, 'queue_timeout', queueTimeoutError(waiter.call.budgetMs as number, true, this.#retryAfterFor(waiter.call.task)), undefined, 'client_budget_queued')
  }

  /**
   * Ends a call: counted, then resolved with `value` or rejected with `error`.
   * Outcome null: it turned out not to be a call (see PoolObserver), not counted.
   * `limit`: the limit that ended it, if one did (call.ts CallLimit).
   */
  settle (waiter: Waiter, outcome: CallOutcome | null, error?: Error, value?: unknown, limit?: CallLimit): void {
    if (outcome !== null) {
      waiter.call.outcome = outcome
      waiter.call.limit = limit
      this.#options.observer.callEnded(waiter.call, outcome)
      // A task's pace is learnt from calls its worker answered: one killed at its timeout, or
      // answered 504 by its client's budget, says nothing of how fast the task is.
      if (this.#paces !== undefined && ANSWERED.has(outcome) && waiter.call.runMs > 0) this.#paces.record(waiter.call.task.name, waiter.call.runMs)
    }
    if (error !== undefined) waiter.reject(error)
    else waiter.resolve(value)
    // The last call can end without a dispatch: a queue timeout, a client gone, no worker left.
    this.#checkIdle()
  }

  /** Settles every queued call with an error (no worker can serve them, or shutdown). */
  failQueued (makeError: () => Error, outcome: CallOutcome): void {
    this.#queued.takeAll((waiter) => { this.settle(waiter, outcome, makeError()) })
  }

  /** Resolves once nothing is queued or running for a client, or after `graceMs`, whichever comes first. */
  async idle (graceMs: number): Promise<void> {
    if (this.#isIdle()) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, graceMs)
      this.#idleWaiters.push(() => { clearTimeout(timer); resolve() })
    })
  }

  #start (waiter: Waiter): void {
    this.#running.start(waiter)
    this.#options.start(waiter)
  }

  /**
   * The error for a queued call whose client's budget has less time left than its task's
   * fastest recent calls took (task-pace.ts), or undefined: it is not started, and ends as
   * one that timed out in the queue (a worker is still free for the next).
   */
  #tooLateToStart (call: Call): Error | undefined {
    if (this.#paces === undefined || call.budgetMs === undefined) return undefined
    const floorMs = this.#paces.floorMs(call.task.name)
    const leftMs = call.budgetMs - (call.waitedMs ?? 0) - call.queueMs
    if (floorMs === 0 || leftMs >= floorMs) return undefined
    return tooLateToStartError(call, leftMs, floorMs, this.#retryAfterFor(call.task))
  }

  /** The queue 503s' Retry-After for a call of `task`, from the callers waiting now (retry-after.ts). */
  #retryAfterFor (task: PoolTask): number {
    const runningForMs = this.#running.meanRunningMs()
    return this.#retryAfter.seconds(this.#queued.size, { name: task.name, waiting: this.#queued.of(task.name), concurrency: task.maxConcurrency }, runningForMs)
  }
}

/** Outcomes of calls whose worker answered, so their run time is the task's own. */
const ANSWERED: ReadonlySet<CallOutcome> = new Set(['ok', 'rejected', 'failed'])
