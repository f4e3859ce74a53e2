// A task's timeout (TASK_TIMEOUT_MS) for the call a worker is running, forgiving a held
// event loop (late-timer.ts); what expiring means (the call fails, the worker is killed)
// is python-worker.ts's to say.

import { performance } from 'node:perf_hooks'
import { firedLate } from './late-timer.js'

/** The longest a late timeout waits for a reply still arriving. */
const MAX_LATE_TIMEOUT_GRACE_MS = 5_000

export class CallDeadline {
  readonly #isReplyArriving: () => boolean
  readonly #onExpired: () => void
  #timer: NodeJS.Timeout | undefined
  /** When the timeout is due (performance.now()), and how long past it a late timer still waits for the reply. */
  #dueAt = 0
  #graceUntil: number | undefined

  /** `isReplyArriving`: part of a reply frame has been read; `onExpired`: the call ran out of time. */
  constructor (isReplyArriving: () => boolean, onExpired: () => void) {
    this.#isReplyArriving = isReplyArriving
    this.#onExpired = onExpired
  }

  start (timeoutMs: number): void {
    this.#dueAt = performance.now() + timeoutMs
    this.#graceUntil = undefined
    this.#timer = setTimeout(this.#fire, timeoutMs)
  }

  clear (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    // A timer that fires late means the event loop was held (another request's huge body
    // parsed, say): the reply may be waiting in the pipe, unread, since timers run before
    // I/O. Read first (a timer of 1 ms runs after the next I/O poll), and go on while a
    // reply frame is still arriving, for as long as the loop was held (at most
    // MAX_LATE_TIMEOUT_GRACE_MS): one client's stall must not cost another its call and worker.
    const now = performance.now()
    if (this.#graceUntil === undefined) {
      if (firedLate(this.#dueAt)) {
        this.#graceUntil = now + Math.min(now - this.#dueAt, MAX_LATE_TIMEOUT_GRACE_MS)
        this.#timer = setTimeout(this.#fire, 1)
        return
      }
    } else if (now < this.#graceUntil && this.#isReplyArriving()) {
      this.#timer = setTimeout(this.#fire, 5)
      return
    }
    this.#onExpired()
  }
}
