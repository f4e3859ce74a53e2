// The callers waiting for a worker: their place in the wait queue (wait-queue.ts), each
// one's deadline (QUEUE_TIMEOUT_MS or its client's budget) and its client's going away,
// and what the queue's limits read from it (callers per task, body bytes). Which caller
// starts, and how a caller that leaves is settled, is admission.ts's business.

import { performance } from 'node:perf_hooks'
import { WaitQueue } from './wait-queue.js'
import { queueWaitLimit } from './budget-timer.js'
import { firedLate } from './late-timer.js'
import type { Waiter } from './admission.js'

export interface QueuedCallsOptions {
  queueTimeoutMs: number
  /** The caller left the queue at its deadline: `limitMs`, by its client's budget or by QUEUE_TIMEOUT_MS. */
  timedOut: (waiter: Waiter, limitMs: number, byBudget: boolean) => void
  /** The caller left the queue because its client went away. */
  clientGone: (waiter: Waiter) => void
}

export class QueuedCalls {
  readonly #options: QueuedCallsOptions
  readonly #queue = new WaitQueue<Waiter>()
  /** Callers in the queue per task name, for the Retry-After of a task with its own limit. */
  readonly #perTask = new Map<string, number>()
  /** Body bytes of the calls in the queue (not of running ones: POOL_SIZE bounds those). */
  #bytes = 0

  constructor (options: QueuedCallsOptions) {
    this.#options = options
  }

  get size (): number { return this.#queue.size }
  get bytes (): number { return this.#bytes }

  /** Callers of `task` in the queue. */
  of (task: string): number { return this.#perTask.get(task) ?? 0 }

  /** Names of the tasks with callers in the queue. */
  * tasks (): Iterable<string> {
    for (const [name, count] of this.#perTask) if (count > 0) yield name
  }

  /** Whether any caller in the queue passes `test`. */
  some (test: (waiter: Waiter) => boolean): boolean {
    return this.#queue.some(test)
  }

  /** Takes out the oldest caller that `canStart` accepts, skipping the others. */
  take (canStart: (waiter: Waiter) => boolean): Waiter | undefined {
    const waiter = this.#queue.takeFirst(canStart)
    if (waiter !== undefined) this.#stopWaiting(waiter)
    return waiter
  }

  /** Takes out every caller, in order, handing each to `then` once it no longer waits. */
  takeAll (then: (waiter: Waiter) => void): void {
    for (const waiter of this.#queue.takeAll()) {
      this.#stopWaiting(waiter)
      then(waiter)
    }
  }

  /** Queues a caller with its deadline and cancellation; `atFront` for one that was taken but could not start. */
  enqueue (waiter: Waiter, atFront = false): void {
    const { call } = waiter
    // What is left of the client's budget and of QUEUE_TIMEOUT_MS once its large body waited
    // for the offload thread (call.ts waitedMs): that wait was queueing too.
    const waitedMs = call.waitedMs ?? 0
    const { limitMs, byBudget } = queueWaitLimit(call.budgetMs, this.#options.queueTimeoutMs)
    const remainingMs = Math.max(1, limitMs - waitedMs - (performance.now() - waiter.enqueuedAt))
    waiter.entry = atFront ? this.#queue.unshift(waiter) : this.#queue.push(waiter)
    this.#bytes += call.inputBytes ?? 0
    this.#perTask.set(call.task.name, (this.#perTask.get(call.task.name) ?? 0) + 1)
    const dueAt = performance.now() + remainingMs
    const timeOut = (): void => {
      if (!this.#leave(waiter)) return
      this.#options.timedOut(waiter, limitMs, byBudget)
    }
    waiter.timer = setTimeout(() => {
      // Fired late (the event loop was held), a reply that frees a worker may be waiting unread
      // (timers run before I/O): the wait ends after the next poll, unless that reply starts it.
      if (firedLate(dueAt)) waiter.timer = setTimeout(timeOut, 1)
      else timeOut()
    }, remainingMs)
    waiter.unsubscribe = call.onClientGone?.(() => {
      if (!this.#leave(waiter)) return
      this.#options.clientGone(waiter)
    })
  }

  /** Takes a waiter out of the queue; false if it had already left (started or settled). */
  #leave (waiter: Waiter): boolean {
    if (waiter.entry === undefined || !this.#queue.remove(waiter.entry)) return false
    this.#stopWaiting(waiter)
    return true
  }

  /** Called once each time a waiter leaves the queue, however it leaves. */
  #stopWaiting (waiter: Waiter): void {
    this.#bytes -= waiter.call.inputBytes ?? 0
    const name = waiter.call.task.name
    this.#perTask.set(name, (this.#perTask.get(name) ?? 1) - 1)
    clearTimeout(waiter.timer)
    waiter.unsubscribe?.()
    waiter.call.queueMs = performance.now() - waiter.enqueuedAt
  }
}
