// How a job the offload thread did not run is answered: the thread failed, the client
// left, the server drains, or the body waited too long (offloader.ts).

import { WorkersUnavailableError, errorOfCode, withExtras } from '../errors.js'

/** The thread stopped (a bug in it, or it could not be started) while a job waited for it. */
export class OffloadThreadError extends Error {
  override name = 'OffloadThreadError'
}

/** An input job dropped before it ran: its client had left (the route logs the request as abandoned, uncounted: its body was never parsed). */
export class OffloadCancelledError extends Error {
  override name = 'OffloadCancelledError'
}

/** The answer to a body that would be parsed for a call that can no longer run. */
export function shuttingDown (): Error {
  return withExtras(new WorkersUnavailableError('the server is shutting down; retry on another instance'), { retryAfterSeconds: 1 })
}

/** The answer to a body that waited for the thread past its client's budget or QUEUE_TIMEOUT_MS. */
export function waitedTooLong (limitMs: number, byBudget: boolean): Error {
  const limit = byBudget ? `the x-request-timeout-ms budget of ${limitMs} ms` : `QUEUE_TIMEOUT_MS (${limitMs} ms)`
  const message = `${limit} ran out while the body waited to be parsed (other large bodies and answers were ahead of it on the offload thread); retry later`
  return withExtras(errorOfCode('QUEUE_TIMEOUT', message), { retryAfterSeconds: 1 })
}
