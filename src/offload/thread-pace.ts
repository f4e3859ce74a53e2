// Retry-After for a body whose wait for the offload thread ran out: about how long the
// thread needs for the jobs waiting and running, at the pace of its recent jobs.
//
// A fixed 1 s told the clients of a thread with a minute of 16 MiB bodies ahead to come
// back at once: each retry was received in full (up to RECEIVE_LIMIT_BYTES held) only to
// wait and be refused again. The queue's 503s estimate the same way (pool/retry-after.ts).
// Jobs differ in size far more than calls do, so the pace is per byte, not per job.

import { retryAfterOf, runningMean } from '../pool/retry-after.js'

export class ThreadPace {
  /** Running mean of the thread's milliseconds per byte of job; undefined until a job has run. */
  #msPerByte: number | undefined

  /** The thread did a job of `bytes` (a body, or a reply frame) in `ms`, from its start on the thread. */
  jobRan (bytes: number, ms: number): void {
    this.#msPerByte = runningMean(this.#msPerByte, ms / Math.max(1, bytes))
  }

  /**
   * Seconds until the thread could have done `pendingBytes` of jobs at the recent pace: at
   * least 1 (also before any job has run), at most a minute (retry-after.ts).
   */
  retryAfterSeconds (pendingBytes: number): number {
    return this.#msPerByte === undefined ? 1 : retryAfterOf(pendingBytes * this.#msPerByte)
  }
}
