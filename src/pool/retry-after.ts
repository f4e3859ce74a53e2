// Retry-After for the queue's 503s (QUEUE_FULL, QUEUE_TIMEOUT): about how long the
// workers need to run the calls already waiting, from how long recent calls held a worker.
//
// A fixed 1 s told every client of a pool whose calls take seconds to come back at once,
// to a queue that needs minutes to drain: each retry cost Node a request and the client a
// round trip for the same 503, and a client that honours the header had no better hint
// than one that ignores it. For fast tasks the estimate is 1 s, as before.

/** The longest wait suggested: past a minute a backlog is a matter for the operator, and a client should not go quiet for longer on a guess. */
export const MAX_RETRY_AFTER_SECONDS = 60

/** Weight of each call's time in the running mean: the last ~20 calls count most. */
const WEIGHT = 0.05

export class RetryAfter {
  readonly #workers: number
  /** Running mean of how long a call held its worker, in ms; undefined until a call has. */
  #meanHoldMs: number | undefined

  /** `workers`: POOL_SIZE, the calls that run at once. */
  constructor (workers: number) {
    this.#workers = Math.max(1, workers)
  }

  /** A call gave its worker back after holding it `ms`. */
  callHeldWorker (ms: number): void {
    this.#meanHoldMs = this.#meanHoldMs === undefined ? ms : this.#meanHoldMs + (ms - this.#meanHoldMs) * WEIGHT
  }

  /**
   * Seconds until the `waiting` callers, and one more, could each have had a worker at
   * the recent pace: 1 when no call has run yet, at most MAX_RETRY_AFTER_SECONDS.
   */
  seconds (waiting: number): number {
    if (this.#meanHoldMs === undefined) return 1
    const ms = (waiting + 1) * this.#meanHoldMs / this.#workers
    return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(ms / 1000)))
  }
}
