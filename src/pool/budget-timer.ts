// A client's x-request-timeout-ms budget while its call runs: when it runs out, the
// client is answered (504) and the call goes on (call-run.ts says why). And how long a
// call may wait before it runs, which the same budget bounds.

import { performance } from 'node:perf_hooks'
import { TaskTimeoutError } from '../errors.js'
import { firedLate } from './late-timer.js'

/**
 * Fires once after `ms` unless stopped first; `stop` says whether it had fired. Fired
 * late, it looks once more after the next I/O poll (timers run before I/O): a reply that
 * arrived while the event loop was held by another request answers the call instead.
 */
export class BudgetTimer {
  #fired = false
  #timer: NodeJS.Timeout

  constructor (ms: number, onFire: () => void) {
    const dueAt = performance.now() + ms
    const fire = (): void => { this.#fired = true; onFire() }
    this.#timer = setTimeout(() => {
      if (firedLate(dueAt)) this.#timer = setTimeout(fire, 1)
      else fire()
    }, Math.ceil(ms))
  }

  stop (): boolean {
    clearTimeout(this.#timer)
    return this.#fired
  }
}

/** The 504 for a call whose client's budget ran out while it ran. */
export function budgetSpent (task: string, budgetMs: number): Error {
  return new TaskTimeoutError(`task ${task} did not finish within the x-request-timeout-ms budget of ${budgetMs} ms; its worker finishes the call and drops the result`)
}

/**
 * How long a call may wait before it runs (for a worker, or with its body for the offload
 * thread): the client's budget when it is the shorter, else QUEUE_TIMEOUT_MS; `byBudget`
 * says which, for the 503's message.
 */
export function queueWaitLimit (budgetMs: number | undefined, queueTimeoutMs: number): { limitMs: number, byBudget: boolean } {
  const byBudget = budgetMs !== undefined && budgetMs < queueTimeoutMs
  return { limitMs: byBudget ? budgetMs : queueTimeoutMs, byBudget }
}
