// How a worker fails, as the pool and the server see it: the kinds of failure, the
// errors a call or a start ends with, and their words when the worker exited.
// python-worker.ts raises them.

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

/** The runtime's exit code when it refused a frame from us (EXIT_PROTOCOL_ERROR in workers/pyfleet/reporting.py). */
export const EXIT_PROTOCOL_ERROR = 5

/** The kind of failure an exit is, for the call it ends and for the worker. */
export function failureOfExit (code: number | null): WorkerFailure {
  // Exit code 5 is the runtime refusing a frame of ours: a protocol error seen from
  // the other side (its reason, when already read, is the fatal line).
  return code === EXIT_PROTOCOL_ERROR ? 'protocol' : 'crash'
}

/** Why a start ended by the process's exit failed: `how` it exited (WorkerProcess.describeExit), and what stderr said. */
export function startFailureAtExit (how: string, fatalLine: string | undefined, lastWords: readonly string[]): string {
  return fatalLine !== undefined
    ? `did not start: ${fatalLine}`
    : `${how} before it was ready${lastWords.length > 0 ? `; its last words: ${lastWords.join(' | ')}` : ''}`
}

/** What a call in flight when the process exited is told. */
export function callFailureAtExit (how: string, fatalLine: string | undefined, signal: NodeJS.Signals | null, task: string | undefined, wasMidFrame: boolean): string {
  // The runtime says why it exits when it knows (a refused frame, its own failure: exit 5 or 6),
  // and then exits with a code: a death by signal has no such reason, whatever a task printed.
  const reason = fatalLine !== undefined && signal === null ? `: ${fatalLine}` : ''
  return `the worker ${how}${reason} while running ${task ?? 'a call'}${wasMidFrame ? ' (mid-frame)' : ''}`
}
