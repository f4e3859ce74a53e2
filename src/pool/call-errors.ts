// What a call's end means for its client: the HTTP error, and the outcome the
// metrics count, for a task's error reply or for a call that got no reply.

import { ResultInvalidError, ResultTooLargeError, TaskFailedError, TaskNotFoundError, TaskRejectedInputError, TaskTimeoutError, WorkerDiedError, withExtras } from '../errors.js'
import { KIND_INVALID_RESULT, KIND_REJECTED, KIND_TOO_LARGE, type ErrorMessage } from './protocol.js'
import type { WorkerFailure } from './worker-failures.js'

/** The error type a worker replies with for a task it does not have (workers/pyfleet/runner.py). */
const UNKNOWN_TASK = 'UnknownTask'

/** The HTTP error and the call outcome for a task's error reply (null: a 404, not a call). */
export function taskErrorFor (reply: ErrorMessage, task: string): { outcome: 'rejected' | 'failed' | null, error: Error } {
  switch (reply.kind) {
    case KIND_REJECTED:
      return { outcome: 'rejected', error: withExtras(new TaskRejectedInputError(reply.message), { details: reply.details }) }
    case KIND_TOO_LARGE:
      return { outcome: 'failed', error: new ResultTooLargeError(reply.message) }
    case KIND_INVALID_RESULT:
      // The task's fault, as an exception is: counted as failed. The paths and keywords
      // say what is wrong with the value without showing it.
      return { outcome: 'failed', error: withExtras(new ResultInvalidError(`task ${task} returned a value its output schema refuses: ${reply.message}`), { details: reply.details }) }
    default:
      // The worker does not have the task: a reload in progress is replacing code
      // that had it with code that does not, or a worker that restarted (after a
      // crash or a recycle) read task files changed on disk since the table was made
      // (worker-pool.ts warns of that). For the client, the task is gone.
      // (The runtime's own reply carries no traceback; a task raising an exception
      // class of the same name does.)
      if (reply.type === UNKNOWN_TASK && reply.traceback === undefined) {
        return { outcome: null, error: new TaskNotFoundError(`${JSON.stringify(task)} in the worker that took this call (any more: a reload removed it, or the worker restarted with task files changed on disk since the start; the log says which)`) }
      }
      // The message and traceback stay in the log: they may hold internals.
      return { outcome: 'failed', error: new TaskFailedError(task) }
  }
}

/**
 * The HTTP error and the call outcome for a call that got no reply: its worker timed out,
 * died or broke the protocol, or was stopped because the shutdown's grace ran out.
 */
// "Being started", not "replaced": a replacement that fails to start is retried with backoff
// (calls meanwhile get 503 WORKERS_UNAVAILABLE), and a task author read "replaced" as done.
export function noReplyErrorFor (failure: WorkerFailure, task: string, timeoutMs: number, shuttingDown: boolean): { outcome: 'timeout' | 'worker_died', error: Error } {
  if (failure === 'timeout') return { outcome: 'timeout', error: new TaskTimeoutError(`task ${task} ran past its timeout of ${timeoutMs} ms; its worker was stopped, and a replacement is being started`) }
  const message = shuttingDown
    ? `the server shut down while ${task} was running: SHUTDOWN_GRACE_MS ran out and its worker was stopped`
    : `the worker running ${task} ${failure === 'protocol' ? 'broke the protocol' : 'died'}; a replacement is being started`
  return { outcome: 'worker_died', error: new WorkerDiedError(message) }
}
