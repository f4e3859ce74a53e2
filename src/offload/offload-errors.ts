// How a job the offload thread did not run is answered: the thread failed, the client
// left, the server drains, or the body waited too long (offloader.ts).

import { TaskTimeoutError, WorkersUnavailableError, errorOfCode, withExtras } from '../errors.js'
import type { CallLimit } from '../pool/call.js'

/** The thread stopped (a bug in it, or it could not be started) while a job waited for it. */
export class OffloadThreadError extends Error {
  override name = 'OffloadThreadError'
}

/** An input job dropped before it ran: its client had left (the route logs the request as abandoned, uncounted: its body was never parsed). */
export class OffloadCancelledError extends Error {
  override name = 'OffloadCancelledError'
}

/**
 * The outcome each refusal below stands for: what the pool counts (pyworker_calls_total)
 * when it refuses a call the same way. These come before a call exists, so the route
 * counts them (refusedOutcome).
 */
const outcomes = new WeakMap<Error, RefusedAs>()

/** How a refusal below is counted: the outcome, and the limit that ended it if one did (call.ts). */
export interface RefusedAs {
  readonly outcome: 'cancelled' | 'queue_timeout' | 'timeout'
  readonly limit?: CallLimit
  /** How long the body waited for the thread, where the refusal knows (its wait ran out): the log line's offloadWaitMs. */
  readonly waitedMs?: number
}

/** The answer to a body that would be parsed for a call that can no longer run. */
export function shuttingDown (): Error {
  const error = withExtras(new WorkersUnavailableError('the server is shutting down; retry on another instance'), { retryAfterSeconds: 1 })
  outcomes.set(error, { outcome: 'cancelled' }) // as a call refused while the pool drains
  return error
}

/**
 * The answer to a body that waited for the thread past its client's budget or QUEUE_TIMEOUT_MS;
 * `retryAfterSeconds`: about how long the thread needs for what it has ahead (thread-pace.ts).
 */
export function waitedTooLong (limitMs: number, byBudget: boolean, retryAfterSeconds: number): Error {
  const limit = byBudget ? `the x-request-timeout-ms budget of ${limitMs} ms` : `QUEUE_TIMEOUT_MS (${limitMs} ms)`
  const message = `${limit} ran out while the body waited to be parsed (other large bodies and answers were ahead of it on the offload thread); retry later`
  const error = withExtras(errorOfCode('QUEUE_TIMEOUT', message), { retryAfterSeconds })
  // Its wait was queueing: as a call whose wait for a worker ran out.
  outcomes.set(error, { outcome: 'queue_timeout', limit: byBudget ? 'client_budget_queued' : 'queue_timeout_ms', waitedMs: limitMs })
  return error
}

/**
 * The answer to a body the thread worked on past its task's timeout (a large body against a
 * costly schema): the thread was ended, as a worker past its timeout is.
 */
export function checkedTooLong (task: string, limitMs: number): Error {
  const error = new TaskTimeoutError(`checking the body took longer than task ${task}'s timeout (${limitMs} ms) on the offload thread, and was stopped: the body is too large for its schema's checks; send a smaller one`)
  outcomes.set(error, { outcome: 'timeout', limit: 'task_timeout' }) // as a call that ran past its timeout
  return error
}

/** How a body's refusal by the offloader is counted, or undefined for any other error. */
export function refusedOutcome (error: unknown): RefusedAs | undefined {
  return error instanceof Error ? outcomes.get(error) : undefined
}
