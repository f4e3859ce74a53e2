// Retry-After for the queue's 503s (QUEUE_FULL, QUEUE_TIMEOUT): about how long the
// workers need to run the calls already waiting, from how long recent calls held a worker.
//
// A fixed 1 s told every client of a pool whose calls take seconds to come back at once,
// to a queue that needs minutes to drain: each retry cost Node a request and the client a
// round trip for the same 503, and a client that honours the header had no better hint
// than one that ignores it. For fast tasks the estimate is 1 s, as before.
//
// Two estimates, the longer one wins: the whole queue spread over POOL_SIZE workers at the
// pool's pace, and the calls of the refused call's own task spread over the workers that
// task may use (TASK_CONCURRENCY) at that task's pace. The second is what a task limited
// to one call at a time needs: its queue drains at one call per call's time however many
// workers the pool has, and the first estimate alone was 4 times too short for it.

/** The longest wait suggested: past a minute a backlog is a matter for the operator, and a client should not go quiet for longer on a guess. */
export const MAX_RETRY_AFTER_SECONDS = 60

/** Weight of each call's time in the running mean: the last ~20 calls count most. */
const WEIGHT = 0.05

/** The refused call's task: how many of its calls wait, and how many may run at once. */
export interface TaskBacklog {
  readonly name: string
  readonly waiting: number
  /** Its TASK_CONCURRENCY (at most POOL_SIZE). */
  readonly concurrency: number
}

export class RetryAfter {
  readonly #workers: number
  /** Running mean of how long a call held its worker, in ms; undefined until a call has. */
  #meanHoldMs: number | undefined
  /** The same per task (by name: the tasks served, and those a reload removed). */
  readonly #taskMeanHoldMs = new Map<string, number>()

  /** `workers`: POOL_SIZE, the calls that run at once. */
  constructor (workers: number) {
    this.#workers = Math.max(1, workers)
  }

  /** A call of `task` gave its worker back after holding it `ms`. */
  callHeldWorker (task: string, ms: number): void {
    this.#meanHoldMs = runningMean(this.#meanHoldMs, ms)
    this.#taskMeanHoldMs.set(task, runningMean(this.#taskMeanHoldMs.get(task), ms))
  }

  /**
   * Seconds until the `waiting` callers, and one more, could each have had a worker at
   * the recent pace, and (given `task`) until that task's waiting calls and one more could
   * have run within its concurrency at its own pace: the longer of the two, at least 1, at
   * most MAX_RETRY_AFTER_SECONDS. `runningForMs`, how long the calls running now have held
   * their workers on average, is a floor of the pace (they are not done): recent calls of
   * 1 ms (an echo) told the callers of a pool held by 6 s calls to come back in 1 s, and a
   * client that honours the header gave up after its retries while the pool was busy, not
   * full for long. Before any call has given its worker back it is the pace; with nothing
   * running either, 1.
   */
  seconds (waiting: number, task?: TaskBacklog, runningForMs = 0): number {
    const meanMs = Math.max(this.#meanHoldMs ?? 0, runningForMs)
    if (meanMs <= 0) return 1
    let ms = (waiting + 1) * meanMs / this.#workers
    const taskMeanMs = task === undefined ? undefined : this.#taskMeanHoldMs.get(task.name)
    if (task !== undefined && taskMeanMs !== undefined) {
      const lanes = Math.max(1, Math.min(task.concurrency, this.#workers))
      ms = Math.max(ms, (task.waiting + 1) * taskMeanMs / lanes)
    }
    return retryAfterOf(ms)
  }
}

/** A wait of `ms` as Retry-After: whole seconds rounded up, at least 1, at most MAX_RETRY_AFTER_SECONDS. */
export function retryAfterOf (ms: number): number {
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(ms / 1000)))
}

/** `sample` added to a running mean in which the last ~20 samples count most (WEIGHT); the first sample is the mean. */
export function runningMean (mean: number | undefined, sample: number): number {
  return mean === undefined ? sample : mean + (sample - mean) * WEIGHT
}
