// Admission: which call may start next, and what happens to the ones that must
// wait. It keeps the wait queue (arrival order, each caller with its own
// deadline and cancellation), the per-task concurrency counts and the number of
// calls in flight, and settles every call exactly once. It never touches a
// worker: when a call may start it hands it to `start`, and the pool reports
// back with `finished`, `requeue` and `settle`. (generic-pool cannot cancel a
// waiting acquire or give each waiter its own deadline, hence this queue in
// front of it.)

import { performance } from 'node:perf_hooks'
import { errorOfCode, QueueFullError, QueueTimeoutError, WorkersUnavailableError, withExtras } from '../errors.js'
import { WaitQueue, type Waiting } from './wait-queue.js'
import type { Call, CallLimit, CallOutcome, PoolObserver, PoolTask } from './call.js'
import { queueWaitLimit } from './budget-timer.js'
import { RetryAfter } from './retry-after.js'
import { TaskPaces } from './task-pace.js'

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
  return { call, enqueuedAt, startedAt: 0, resolve, reject, entry: undefined, timer: undefined, unsubscribe: undefined, answeredEarly: false }
}

export class Admission {
  readonly #options: AdmissionOptions
  readonly #queue = new WaitQueue<Waiter>()
  /** Calls started and not yet finished, per task name (TASK_CONCURRENCY). */
  readonly #running = new Map<string, number>()
  #inFlight = 0
  /** The startedAt of the calls in flight, summed: their mean time on a worker so far, for Retry-After. */
  #startedAtSum = 0
  /** Callers in the queue per task name, for the Retry-After of a task with its own limit. */
  readonly #waitingPerTask = new Map<string, number>()
  /** Body bytes of the calls in the queue (not of running ones: POOL_SIZE bounds those). */
  #queuedBytes = 0
  /** Of those, calls already answered (answerEarly): nobody waits for them. */
  #answeredEarly = 0
  /** Resolved when the queue is empty and no call runs for a client (drain). */
  #idleWaiters: Array<() => void> = []
  readonly #retryAfter: RetryAfter
  /** Each task's fastest recent calls, with SHED_LATE_CALLS: a queued call with less budget left is not started (task-pace.ts). */
  readonly #paces: TaskPaces | undefined

  constructor (options: AdmissionOptions) {
    this.#options = options
    this.#retryAfter = new RetryAfter(options.poolSize)
    this.#paces = options.shedLateCalls === true ? new TaskPaces() : undefined
  }

  get waiting (): number { return this.#queue.size }
  /** Calls running for a client (not those answered early, which nobody waits for). */
  get runningForClients (): number { return this.#inFlight - this.#answeredEarly }
  get queuedBytes (): number { return this.#queuedBytes }

  /** Names of the tasks with calls waiting or running now (a task a reload removed may still have some). */
  tasksWithCalls (): string[] {
    const names = new Set<string>()
    for (const [name, count] of this.#running) if (count > 0) names.add(name)
    for (const [name, count] of this.#waitingPerTask) if (count > 0) names.add(name)
    return [...names]
  }

  /** Calls of `task` waiting for a worker and running on one (answered early ones included: they hold it). */
  callsOf (task: string): { waiting: number, running: number } {
    return { waiting: this.#waitingPerTask.get(task) ?? 0, running: this.#running.get(task) ?? 0 }
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
    if (this.#options.freeWorkers() > 0 && this.#hasCapacity(call.task) && (this.#queue.size === 0 || !this.#queue.some(this.#canStart))) {
      return new Promise((resolve, reject) => { this.#start(newWaiter(call, enqueuedAt, resolve, reject)) })
    }
    if (this.#queue.size >= this.#options.queueLimit) {
      const live = this.#options.liveWorkers?.() ?? this.#options.poolSize
      return this.refuse(call, 'queue_full', withExtras(new QueueFullError(queueFullMessage(this.#queue.size, live, this.#options.poolSize)), { retryAfterSeconds: this.#retryAfterFor(call.task) }), 'queue_limit')
    }
    const limitBytes = this.#options.queueLimitBytes
    if (limitBytes > 0 && this.#queue.size > 0 && this.#queuedBytes + (call.inputBytes ?? 0) > limitBytes) {
      const message = queueFullBytesMessage(this.#queue.size, this.#queuedBytes, call.inputBytes ?? 0, limitBytes)
      return this.refuse(call, 'queue_full', withExtras(new QueueFullError(message), { retryAfterSeconds: this.#retryAfterFor(call.task) }), 'queue_limit_bytes')
    }
    return new Promise((resolve, reject) => {
      this.#enqueue(newWaiter(call, enqueuedAt, resolve, reject))
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
    while (this.#options.freeWorkers() > 0 && this.#queue.size > 0) {
      const waiter = this.#queue.takeFirst(this.#canStart)
      if (waiter === undefined) break
      this.#stopWaiting(waiter)
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
    return this.#queue.size === 0 && this.#inFlight === this.#answeredEarly
  }

  /** The call no longer holds a worker (it ended, or never got one). */
  finished (waiter: Waiter): void {
    const name = waiter.call.task.name
    this.#running.set(name, (this.#running.get(name) ?? 1) - 1)
    this.#inFlight--
    // Back to exactly 0 when nothing runs, so that rounding cannot build up over millions of calls.
    this.#startedAtSum = this.#inFlight === 0 ? 0 : this.#startedAtSum - waiter.startedAt
    if (waiter.answeredEarly) this.#answeredEarly--
    // Only calls that reached their worker (runMs is set by then): one that never did, its
    // budget spent or its input unsendable, would pull the mean towards 0.
    if (waiter.call.runMs > 0) this.#retryAfter.callHeldWorker(name, performance.now() - waiter.startedAt)
  }

  /**
   * Settles a call that goes on running (its client's budget ran out): it still
   * holds its worker and counts against its task's limit until `finished`, but
   * a drain no longer waits for it (the shutdown stops its worker).
   */
  answerEarly (waiter: Waiter, outcome: CallOutcome, error: Error, limit?: CallLimit): void {
    waiter.answeredEarly = true
    this.#answeredEarly++
    this.settle(waiter, outcome, error, undefined, limit)
  }

  /** A call that was started but could not run (its worker had died): back to the front of the queue. */
  requeue (waiter: Waiter): void {
    this.finished(waiter)
    this.#enqueue(waiter, true)
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
    for (const waiter of this.#queue.takeAll()) {
      this.#stopWaiting(waiter)
      this.settle(waiter, outcome, makeError())
    }
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
    const name = waiter.call.task.name
    this.#running.set(name, (this.#running.get(name) ?? 0) + 1)
    this.#inFlight++
    waiter.startedAt = performance.now()
    this.#startedAtSum += waiter.startedAt
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
    const message = `the x-request-timeout-ms budget of ${call.budgetMs} ms had ${Math.max(0, Math.floor(leftMs))} ms left when a worker became free, less than ${call.task.name}'s recent calls took (${Math.ceil(floorMs)} ms at the fastest): not started; retry later`
    return withExtras(errorOfCode('QUEUE_TIMEOUT', message), { retryAfterSeconds: this.#retryAfterFor(call.task) })
  }

  /** The queue 503s' Retry-After for a call of `task`, from the callers waiting now (retry-after.ts). */
  #retryAfterFor (task: PoolTask): number {
    const runningForMs = this.#inFlight === 0 ? 0 : performance.now() - this.#startedAtSum / this.#inFlight
    return this.#retryAfter.seconds(this.#queue.size, { name: task.name, waiting: this.#waitingPerTask.get(task.name) ?? 0, concurrency: task.maxConcurrency }, runningForMs)
  }

  #hasCapacity (task: PoolTask): boolean {
    return (this.#running.get(task.name) ?? 0) < task.maxConcurrency
  }

  readonly #canStart = (waiter: Waiter): boolean => this.#hasCapacity(waiter.call.task)

  /** Queues a caller with its deadline and cancellation; `atFront` for one that was taken but could not start. */
  #enqueue (waiter: Waiter, atFront = false): void {
    const { call } = waiter
    // What is left of the client's budget and of QUEUE_TIMEOUT_MS once its large body waited
    // for the offload thread (call.ts waitedMs): that wait was queueing too.
    const waitedMs = call.waitedMs ?? 0
    const { limitMs, byBudget } = queueWaitLimit(call.budgetMs, this.#options.queueTimeoutMs)
    const remainingMs = Math.max(1, limitMs - waitedMs - (performance.now() - waiter.enqueuedAt))
    waiter.entry = atFront ? this.#queue.unshift(waiter) : this.#queue.push(waiter)
    this.#queuedBytes += call.inputBytes ?? 0
    this.#waitingPerTask.set(call.task.name, (this.#waitingPerTask.get(call.task.name) ?? 0) + 1)
    waiter.timer = setTimeout(() => {
      if (!this.#leaveQueue(waiter)) return
      this.settle(waiter, 'queue_timeout', queueTimeoutError(limitMs, byBudget, this.#retryAfterFor(call.task)), undefined, byBudget ? 'client_budget_queued' : 'queue_timeout_ms')
    }, remainingMs)
    waiter.unsubscribe = call.onClientGone?.(() => {
      if (!this.#leaveQueue(waiter)) return
      this.settle(waiter, 'cancelled', new WorkersUnavailableError('the client went away while its call was queued'))
    })
  }

  /** Takes a waiter out of the queue; false if it had already left (started or settled). */
  #leaveQueue (waiter: Waiter): boolean {
    if (waiter.entry === undefined || !this.#queue.remove(waiter.entry)) return false
    this.#stopWaiting(waiter)
    return true
  }

  /** Called once each time a waiter leaves the queue, however it leaves. */
  #stopWaiting (waiter: Waiter): void {
    this.#queuedBytes -= waiter.call.inputBytes ?? 0
    const name = waiter.call.task.name
    this.#waitingPerTask.set(name, (this.#waitingPerTask.get(name) ?? 1) - 1)
    clearTimeout(waiter.timer)
    waiter.unsubscribe?.()
    waiter.call.queueMs = performance.now() - waiter.enqueuedAt
  }
}

/** Outcomes of calls whose worker answered, so their run time is the task's own. */
const ANSWERED: ReadonlySet<CallOutcome> = new Set(['ok', 'rejected', 'failed'])

/** QUEUE_FULL's message, for `waiting` callers in a full queue (none with QUEUE_LIMIT=0), `live` of `poolSize` workers running. */
function queueFullMessage (waiting: number, live: number, poolSize: number): string {
  if (waiting === 0) {
    // Not "busy" while some are starting (a replacement after a crash, the first start): QUEUE_LIMIT=0 refuses then too.
    const none = live < poolSize ? `no worker is free (${live} of ${poolSize} running, the rest starting)` : 'every worker is busy'
    return `${none} and QUEUE_LIMIT=0 lets no caller wait; retry later`
  }
  return `${waiting === 1 ? '1 caller is' : `${waiting} callers are`} already waiting for a worker; retry later`
}

/** QUEUE_FULL's message when the queued input, not the number of callers, is at its limit. */
function queueFullBytesMessage (waiting: number, queuedBytes: number, callBytes: number, limitBytes: number): string {
  const who = waiting === 1 ? 'the caller already waiting holds' : `the ${waiting} callers already waiting hold`
  const already = queuedBytes >= limitBytes ? `${who} ${queuedBytes} bytes of input, at or past QUEUE_LIMIT_BYTES=${limitBytes} already` : `${who} ${queuedBytes} bytes of input, and this call's ${callBytes} would take the queue past QUEUE_LIMIT_BYTES=${limitBytes}`
  return `${already}; retry later`
}

function queueTimeoutError (waitMs: number, byBudget: boolean, retryAfterSeconds: number): Error {
  const error = new QueueTimeoutError(byBudget ? `${waitMs} ms (the x-request-timeout-ms budget)` : `${waitMs} ms`)
  return withExtras(error, { retryAfterSeconds })
}
