// The calls admission has handed to the pool and that still hold a worker: how many
// run per task, against each task's TASK_CONCURRENCY (which waiter may start), how many
// were answered early, and how long they have run so far (for Retry-After). Who waits,
// and what becomes of a call, is admission.ts's business.

import { performance } from 'node:perf_hooks'
import type { PoolTask } from './call.js'
import type { Waiter } from './admission.js'

export class RunningCalls {
  /** Calls started and not yet finished, per task name (TASK_CONCURRENCY). */
  readonly #perTask = new Map<string, number>()
  #inFlight = 0
  /** The startedAt of the calls in flight, summed: their mean time on a worker so far, for Retry-After. */
  #startedAtSum = 0
  /** Of those, calls already answered (answerEarly): nobody waits for them. */
  #answeredEarly = 0

  /** Calls running for a client (not those answered early, which nobody waits for). */
  get forClients (): number { return this.#inFlight - this.#answeredEarly }

  /** Calls of `task` running now (answered early ones included: they hold a worker). */
  of (task: string): number { return this.#perTask.get(task) ?? 0 }

  /** Names of the tasks with calls running now. */
  * tasks (): Iterable<string> {
    for (const [name, count] of this.#perTask) if (count > 0) yield name
  }

  hasCapacity (task: PoolTask): boolean {
    return (this.#perTask.get(task.name) ?? 0) < task.maxConcurrency
  }

  /** Whether the waiter's task is under its concurrency limit, so that it may start. */
  readonly canStart = (waiter: Waiter): boolean => this.hasCapacity(waiter.call.task)

  /** The waiter is handed to the pool now. */
  start (waiter: Waiter): void {
    const name = waiter.call.task.name
    this.#perTask.set(name, (this.#perTask.get(name) ?? 0) + 1)
    this.#inFlight++
    waiter.running = true
    waiter.startedAt = performance.now()
    this.#startedAtSum += waiter.startedAt
  }

  /** The call no longer holds a worker; false if it was not running (finished already). */
  finish (waiter: Waiter): boolean {
    if (!waiter.running) return false
    waiter.running = false
    const name = waiter.call.task.name
    this.#perTask.set(name, (this.#perTask.get(name) ?? 1) - 1)
    this.#inFlight--
    // Back to exactly 0 when nothing runs, so that rounding cannot build up over millions of calls.
    this.#startedAtSum = this.#inFlight === 0 ? 0 : this.#startedAtSum - waiter.startedAt
    if (waiter.answeredEarly) this.#answeredEarly--
    return true
  }

  /** The call is settled while it goes on running: it still counts until `finish`, but nobody waits for it. */
  answerEarly (waiter: Waiter): void {
    waiter.answeredEarly = true
    this.#answeredEarly++
  }

  /** How long the calls running now have held their worker on average, in ms; 0 with none. */
  meanRunningMs (): number {
    return this.#inFlight === 0 ? 0 : performance.now() - this.#startedAtSum / this.#inFlight
  }
}
