// The call a worker is running (one at a time): its id, task, request and trace, its
// timeout, and the promise its caller waits on; and the call before, whose output stderr
// may still be reading. python-worker.ts says when a call starts and how it ends.

import { traceLogFieldsOf, type TraceContext, type TraceLogFields } from '../trace-context.js'
import { CallDeadline } from './call-deadline.js'
import type { DeferredReply, ReplyMessage } from './protocol.js'
import { WorkerCallError, type WorkerFailure } from './worker-failures.js'
import type { StderrContext } from './worker-stderr.js'

/** The largest call id, a msgpack uint32 (workers/pyfleet/testing.py's WIDEST_CALL_ID). */
const MAX_CALL_ID = 2 ** 32 - 1

export class CallInFlight {
  // One call at a time, so plain fields instead of a map.
  #id = 0
  #task: string | undefined
  #requestId: string | undefined
  /** Request id and task for stderr lines: kept after the call ends, since stderr may lag the reply. */
  #logRequestId: string | undefined
  #logTrace: TraceLogFields | undefined
  #logTask: string | undefined
  /**
   * The call before: its output may still be read after the next call was sent, and the
   * worker's marks say whose a line is (call-output-marks.ts).
   */
  #sentId = 0
  #previousId = 0
  #previousRequestId: string | undefined
  #previousTrace: TraceLogFields | undefined
  #previousTask: string | undefined
  #resolve: ((reply: ReplyMessage | DeferredReply) => void) | undefined
  #reject: ((error: WorkerCallError) => void) | undefined
  readonly #deadline: CallDeadline

  /** `isReplyArriving`: part of a reply frame has been read; `onTimeout`: the call ran out of time. */
  constructor (isReplyArriving: () => boolean, onTimeout: () => void) {
    this.#deadline = new CallDeadline(isReplyArriving, onTimeout)
  }

  /** The id of the call sent last (or about to be): its reply must carry it. */
  get id (): number { return this.#id }
  /** The task of the call in flight. */
  get task (): string | undefined { return this.#task }
  /** The request of the call in flight. */
  get requestId (): string | undefined { return this.#requestId }

  /** The next call's id, taken whether or not that call is then sent. */
  nextId (): number {
    // Ids only tell a call's reply from a stale one: they wrap before 2^32, past which msgpackr
    // would write one as a float64, which resultValueBytes does not read (a msgpack answer
    // would then be encoded again, not passed on).
    this.#id = this.#id >= MAX_CALL_ID ? 1 : this.#id + 1
    return this.#id
  }

  /** Call `id` is sent: its timeout starts, and the promise returned settles as it ends. */
  begin (id: number, task: string, requestId: string, trace: TraceContext | undefined, timeoutMs: number): Promise<ReplyMessage | DeferredReply> {
    this.#previousId = this.#sentId
    this.#sentId = id
    this.#previousRequestId = this.#logRequestId
    this.#previousTrace = this.#logTrace
    this.#previousTask = this.#logTask
    this.#task = task
    this.#requestId = requestId
    this.#logRequestId = requestId
    this.#logTrace = traceLogFieldsOf(trace?.traceparent)
    this.#logTask = task
    this.#deadline.start(timeoutMs)
    return new Promise<ReplyMessage | DeferredReply>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
  }

  /** The call ends with the worker's reply. */
  resolve (reply: ReplyMessage | DeferredReply): void {
    const resolve = this.#resolve
    this.#end()
    resolve?.(reply)
  }

  /** The call in flight, if any, ends without a reply. */
  fail (failure: WorkerFailure, message: string): void {
    const reject = this.#reject
    this.#end()
    reject?.(new WorkerCallError(failure, message))
  }

  /** Whose a stderr line is: the call before if a mark says so and it is not the call sent last, else the call sent last. */
  logFieldsOf (markedCall: number | undefined): Omit<StderrContext, 'worker' | 'workerPid'> {
    return markedCall === this.#previousId && markedCall !== this.#sentId
      ? { requestId: this.#previousRequestId, ...this.#previousTrace, task: this.#previousTask }
      : { requestId: this.#logRequestId, ...this.#logTrace, task: this.#logTask }
  }

  /** The trace ids to log with `requestId`, when it is the request of the call sent last. */
  traceOf (requestId: string | undefined): TraceLogFields | undefined {
    return requestId !== undefined && requestId === this.#logRequestId ? this.#logTrace : undefined
  }

  #end (): void {
    this.#deadline.clear()
    this.#resolve = undefined
    this.#reject = undefined
    this.#task = undefined
    this.#requestId = undefined
  }
}
