// Retry-After for a body whose wait for the offload thread ran out: about how long the
// thread needs for the jobs waiting and running, at the pace of its recent jobs.
//
// A fixed 1 s told the clients of a thread with a minute of 16 MiB bodies ahead to come
// back at once: each retry was received in full (up to RECEIVE_LIMIT_BYTES held) only to
// wait and be refused again. The queue's 503s estimate the same way (pool/retry-after.ts).
// Jobs differ in size far more than calls do, so the pace is per byte, not per job.

import { MAX_RETRY_AFTER_SECONDS } from '../pool/retry-after.js'

/** Weight of each job in the running mean: the last ~20 jobs count most. */
const WEIGHT = 0.05

export class ThreadPace {
  /** Running mean of the thread's milliseconds per byte of job; undefined until a job has run. */
  #msPerByte: number | undefined

  /** The thread did a job of `bytes` (a body, or a reply frame) in `ms`, from its start on the thread. */
  jobRan (bytes: number, ms: number): void {
    const sample = ms / Math.max(1, bytes)
    this.#msPerByte = this.#msPerByte === undefined ? sample : this.#msPerByte + (sample - this.#msPerByte) * WEIGHT
  }

  /**
   * Seconds until the thread could have done `pendingBytes` of jobs at the recent pace: at
   * least 1 (also before any job has run), at most MAX_RETRY_AFTER_SECONDS.
   */
  retryAfterSeconds (pendingBytes: number): number {
    if (this.#msPerByte === undefined) return 1
    return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(pendingBytes * this.#msPerByte / 1000)))
  }
}
