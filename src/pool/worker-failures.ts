// How a worker fails, as the pool and the server see it: the kinds of failure, and
// the errors a call or a start ends with. python-worker.ts raises them.

/** Why a call or a start ended without a reply. */
export type WorkerFailure = 'timeout' | 'crash' | 'protocol'

/** A call that got no reply: the worker timed out, died or broke the protocol. It is not reusable. */
export class WorkerCallError extends Error {
  override name = 'WorkerCallError'
  constructor (readonly failure: WorkerFailure, message: string) { super(message) }
}

/** A call's input that encodes to a frame over MAX_FRAME_BYTES: nothing was sent, the worker is fine. */
export class InputTooLargeError extends Error {
  override name = 'InputTooLargeError'
}

/** A worker that could not start; `message` is one line saying why and how to fix it. */
export class WorkerStartError extends Error {
  override name = 'WorkerStartError'
}
