// A client's x-request-timeout-ms budget while its call runs: when it runs out, the
// client is answered (504) and the call goes on (worker-pool.ts says why).

import { TaskTimeoutError } from '../errors.js'

/** Fires once after `ms` unless stopped first; `stop` says whether it had fired. */
export class BudgetTimer {
  #fired = false
  readonly #timer: NodeJS.Timeout

  constructor (ms: number, onFire: () => void) {
    this.#timer = setTimeout(() => { this.#fired = true; onFire() }, Math.ceil(ms))
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
