// One call's run on a worker the pool has borrowed for it: send it, wait for the
// reply (or the client's budget, or the worker's failure), settle the caller,
// and tell the pool what became of the worker. The pool owns the workers; this
// module only decides, for one call, which of its verbs applies.

import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { BodyTooLargeError, InvalidInputError } from '../errors.js'
import type { Admission, Waiter } from './admission.js'
import { BudgetTimer, budgetSpent } from './budget-timer.js'
import type { Call, RestartReason } from './call.js'
import { KIND_FAILED, KIND_INVALID_RESULT, KIND_TOO_LARGE, MSG_DEFERRED, MSG_ERROR, MSG_RESULT, type DeferredReply, type ErrorMessage, type ReplyMessage } from './protocol.js'
import { noReplyErrorFor, taskErrorFor } from './call-errors.js'
import { checkedResult, resultCheckFor } from './result-check.js'
import { EncodedAnswer } from '../offload/encoded.js'
import { OffloadThreadError } from '../offload/offload-errors.js'
import type { Offloader } from '../offload/offloader.js'
import type { PythonWorker } from './python-worker.js'
import { InputTooLargeError, WorkerCallError } from './worker-failures.js'
import { shorten, shortenForJson } from '../short-text.js'
import { cutTraceback } from '../traceback-cut.js'
import { traceLogFieldsOf } from '../trace-context.js'

/**
 * Bounds on what a task's failure puts in its log line. A 64 KiB exception message made a
 * 131 KB line (in `msg`, and again at the end of the traceback, which the worker cuts at
 * 64 KiB): container runtimes split lines past 16 KiB, and a pipeline's JSON parser then
 * loses the line (a review). The client's answer keeps the message as the worker sent it.
 */
const LOGGED_MESSAGE_CHARS = 1024
const LOGGED_TYPE_CHARS = 200
/**
 * The message's and the type's bounds in bytes of JSON too: 1,024 control characters take 6 KiB,
 * and with the traceback's 8 KiB and the type (in `errorType` and again in `msg`) a line reached
 * 17 KB (a review). 2 + 2 × 0.5 + 8 KiB, and the ids, stay well under 16 KiB.
 */
const LOGGED_MESSAGE_BYTES = 2048
const LOGGED_TYPE_BYTES = 512
/** In bytes of the line: its JSON escapes count (a control character takes six, CJK three). */
const LOGGED_TRACEBACK_BYTES = 8 * 1024
const LOGGED_DETAILS = 20

/** What a call's run needs from the pool that lent it the worker. */
export interface CallRunPool {
  readonly admission: Admission
  readonly log: FastifyBaseLogger
  /**
   * The worker is healthy after the call: release it, or recycle it. `memory`: the RSS its
   * reply reported, or 'measure' (a promise while its memory is measured first).
   */
  giveBack: (worker: PythonWorker, memory?: number | 'measure') => Promise<void> | undefined
  /** The worker failed (dead, timed out, broke the protocol): remove it; the pool replaces it. */
  discard: (worker: PythonWorker, reason: RestartReason, during?: Call) => void
  /** True for a worker the shutdown's stop ended (SHUTDOWN_GRACE_MS ran out): not a crash of its own. */
  stoppedByShutdown: (worker: PythonWorker, failure: RestartReason) => boolean
  /** Decodes large replies off the event loop (the workers then resolve calls with a DeferredReply). */
  readonly offloader?: Pick<Offloader, 'answer'>
}

/** Runs the call of `waiter` on `worker`; settles the caller exactly once and never throws. */
export async function runCall (waiter: Waiter, worker: PythonWorker, pool: CallRunPool): Promise<void> {
  const { call } = waiter
  const { admission } = pool
  if (worker.state !== 'idle') {
    // It died while idle and was not swept yet: replace it and put the call back in front.
    pool.discard(worker, worker.failure ?? 'crash')
    admission.requeue(waiter)
    return
  }
  const startedAt = performance.now()
  call.queueMs = startedAt - waiter.enqueuedAt
  const budgetLeftMs = call.budgetMs !== undefined ? call.budgetMs - (call.waitedMs ?? 0) - call.queueMs : Infinity
  if (budgetLeftMs <= 0) {
    admission.expired(waiter)
    void pool.giveBack(worker)
    return
  }
  const timeoutMs = call.task.timeoutMs
  let pending
  try {
    pending = worker.call(call.task.name, call.input, call.requestId, timeoutMs, call.holdsWideNumbers === true, budgetLeftMs, call.trace)
  } catch (error) {
    // The input could not be encoded, or is too big for a frame (nothing was sent): the worker
    // is fine, and like any 400 or 413 this is not a call.
    admission.finished(waiter)
    void pool.giveBack(worker)
    admission.settle(waiter, null, error instanceof InputTooLargeError
      ? new BodyTooLargeError(error.message)
      : new InvalidInputError(`input cannot be sent to the worker: ${(error as Error).message}`))
    return
  }
  // The client's budget ends its wait, not the call: the worker finishes it (or is killed at
  // the task's own timeout, as for any call), and then serves the next one. Killing it at the
  // budget would let any client make the server kill and respawn workers at will, with a
  // header, and cost every other client the capacity.
  const budget = budgetLeftMs < timeoutMs
    ? new BudgetTimer(budgetLeftMs, () => {
      call.runMs = performance.now() - startedAt
      admission.answerEarly(waiter, 'timeout', budgetSpent(call.task.name, call.budgetMs as number), 'client_budget_running')
    })
    : undefined
  const run: Run = { startedAt, budget, ranMs: undefined, memory: undefined }
  let reply: ReplyMessage
  try {
    reply = await receiveReply(await pending, run, call, worker, pool)
  } catch (error) {
    endWithoutReply(waiter, worker, pool, run, error)
    return
  }
  await endWithReply(waiter, worker, pool, run, reply)
}

/** One call's run between its frame's sending and its end. */
interface Run {
  readonly startedAt: number
  /** The client's x-request-timeout-ms, when it ends before the task's own timeout. */
  readonly budget: BudgetTimer | undefined
  /** When the worker's reply arrived, for a large one the offload thread then converts. */
  ranMs: number | undefined
  /** The worker's RSS as its reply reported it (past MAX_WORKER_RSS_MB only), or 'measure': the thread decoded the reply. */
  memory: number | 'measure' | undefined
}

/** The worker's reply as the caller gets it: a large one converted by the offload thread, a result checked against the task's output schema. */
async function receiveReply (received: Awaited<ReturnType<PythonWorker['call']>>, run: Run, call: Call, worker: PythonWorker, pool: CallRunPool): Promise<ReplyMessage> {
  if (received.t === MSG_DEFERRED) {
    // The worker has answered: the run, and the client's budget, end here, not once the
    // thread has written the answer. The worker is held meanwhile: if the frame broke the
    // protocol it must go, and it must not have taken another call.
    run.ranMs = performance.now() - run.startedAt
    run.budget?.stop()
    run.memory = 'measure'
    try {
      return await finishDeferred(received, call, worker, pool)
    } finally {
      worker.answered()
    }
  }
  if (typeof received.rss === 'number') run.memory = received.rss
  const check = received.t === MSG_RESULT ? resultCheckFor(call.task, worker.tasks) : undefined
  return check !== undefined && received.t === MSG_RESULT ? checkedResult(received, check.validate) : received
}

/** Stops the budget's timer and records the run's time, unless the budget answered the call first (true then). */
function endRun (run: Run, call: Call): boolean {
  const answered = run.budget?.stop() ?? false
  if (!answered) call.runMs = run.ranMs ?? performance.now() - run.startedAt
  return answered
}

/** No reply: the worker died, timed out, broke the protocol or was stopped by the shutdown. It goes; the caller is told why. */
function endWithoutReply (waiter: Waiter, worker: PythonWorker, pool: CallRunPool, run: Run, error: unknown): void {
  const { call } = waiter
  const { admission } = pool
  const answered = endRun(run, call)
  admission.finished(waiter)
  const failure = error instanceof WorkerCallError ? error.failure : 'crash'
  const byShutdown = pool.stoppedByShutdown(worker, failure)
  pool.discard(worker, failure, call)
  const where = { ...callLogFields(call), worker: worker.id, workerPid: worker.pid }
  if (byShutdown) pool.log.warn(where, `${call.task.name} was still running when the shutdown stopped its worker (SHUTDOWN_GRACE_MS and WORKER_STOP_GRACE_MS ran out): ${(error as Error).message}`)
  else if (failure !== 'timeout') pool.log.warn(where, (error as Error).message)
  if (!answered) {
    const { outcome, error: answer } = noReplyErrorFor(failure, call.task.name, call.task.timeoutMs, byShutdown)
    admission.settle(waiter, outcome, answer, undefined, outcome === 'timeout' ? 'task_timeout' : undefined)
  }
  // Another worker may be free for a call held back by its task's concurrency limit.
  admission.dispatch()
}

/** A reply: the worker goes back (or is recycled), then the caller gets the result or the task's error. */
async function endWithReply (waiter: Waiter, worker: PythonWorker, pool: CallRunPool, run: Run, reply: ReplyMessage): Promise<void> {
  const { call } = waiter
  const { admission } = pool
  const answered = endRun(run, call)
  admission.finished(waiter)
  const back = pool.giveBack(worker, run.memory)
  // Answered once the worker is back in the pool: a client that calls again at once must
  // find it free (with QUEUE_LIMIT=0 it would otherwise get QUEUE_FULL from an idle server).
  if (back !== undefined) await back
  if (reply.t === MSG_RESULT) {
    // Kept only for a msgpack answer: it holds the worker's frame in memory until the answer is written.
    if (call.wantsMsgpack === true) call.resultMsgpack = reply.msgpack
    if (!answered) admission.settle(waiter, 'ok', undefined, reply.value)
  } else {
    settleTaskError(waiter, reply, answered, pool)
  }
}

/**
 * A large reply, decoded and written as the answer by the offload thread: a result
 * whose value is the answer's bytes (EncodedAnswer), or the task's error. A frame that
 * broke the protocol ends the worker, as one decoded on the event loop does.
 */
async function finishDeferred (reply: DeferredReply, call: Call, worker: PythonWorker, pool: CallRunPool): Promise<ReplyMessage> {
  const format = call.wantsMsgpack === true ? 'msgpack' : 'json'
  let outcome
  try {
    if (pool.offloader === undefined) throw new OffloadThreadError('no offload thread was configured')
    outcome = await pool.offloader.answer(reply, format, resultCheckFor(call.task, worker.tasks), call.task.timeoutMs)
  } catch (error) {
    if (!(error instanceof OffloadThreadError)) throw error
    // Not the worker's doing, which stays: a 500 TASK_FAILED (outcome "failed": the task's
    // answer was lost), whose log line names the offload thread as the cause.
    return { t: MSG_ERROR, id: reply.id, kind: KIND_FAILED, type: 'OffloadThreadError', message: `the offload thread could not write the answer: ${error.message}` }
  }
  switch (outcome.t) {
    case 'answer': {
      const bytes = Buffer.from(outcome.bytes.buffer, outcome.bytes.byteOffset, outcome.bytes.byteLength)
      return { t: MSG_RESULT, id: reply.id, value: new EncodedAnswer(bytes, format) }
    }
    case 'error': return outcome.reply
    case 'protocol':
      worker.reportProtocolError(outcome.message, call.requestId)
      throw new WorkerCallError('protocol', outcome.message)
    default: throw new Error(`the offload thread answered an answer job with ${outcome.t}`)
  }
}

/** A traceback within LOGGED_TRACEBACK_BYTES of the log line: every line cut to 1 KiB, then what says most of what went wrong (traceback-cut.ts). */
function loggedTraceback (traceback: string): string {
  return cutTraceback(traceback, LOGGED_TRACEBACK_BYTES, LOGGED_MESSAGE_CHARS)
}

/**
 * A result's schema errors as the log keeps them: the same three strings on every line. Ajv's
 * `params` hold values of any type (a `const`'s object, an `enum`'s mixed list), which a log
 * index maps by the first type it sees and then refuses whole lines for (a review). The
 * client's 500 has them all.
 */
function loggedDetails (details: unknown): Array<{ instancePath: string, keyword: string, message: string }> | undefined {
  if (!Array.isArray(details)) return undefined
  return details.slice(0, LOGGED_DETAILS).map((detail: { instancePath?: unknown, keyword?: unknown, message?: unknown } | null) => ({
    instancePath: String(detail?.instancePath ?? ''),
    keyword: String(detail?.keyword ?? ''),
    message: shorten(String(detail?.message ?? ''), 200)
  }))
}

/** What the log lines about a call say of it: its request, its trace (when its client sent one) and its task. */
function callLogFields (call: Call): { requestId: string, traceId?: string, spanId?: string, task: string } {
  return { requestId: call.requestId, ...traceLogFieldsOf(call.trace?.traceparent), task: call.task.name }
}

/** A task's error reply; one that comes after the client had its 504 is still logged, not answered. */
function settleTaskError (waiter: Waiter, reply: ErrorMessage, answered: boolean, pool: CallRunPool): void {
  const { call } = waiter
  const { outcome, error } = taskErrorFor(reply, call.task.name)
  const after = answered ? ' (after its client\'s x-request-timeout-ms budget ran out)' : ''
  if (reply.kind === KIND_FAILED && outcome === 'failed') {
    const traceback = typeof reply.traceback === 'string' ? loggedTraceback(reply.traceback) : undefined
    // The type's name too: a class made with type() may have any name, of any length.
    const errorType = shortenForJson(reply.type, LOGGED_TYPE_CHARS, LOGGED_TYPE_BYTES)
    pool.log.error({ ...callLogFields(call), errorType, traceback }, `task ${call.task.name} failed${after}: ${reply.message === '' ? errorType : `${errorType}: ${shortenForJson(reply.message, LOGGED_MESSAGE_CHARS, LOGGED_MESSAGE_BYTES)}`}`)
  } else if (reply.kind === KIND_INVALID_RESULT) {
    // The task's code and its declared schema disagree: its author's to mend, as an exception is.
    pool.log.error({ ...callLogFields(call), details: loggedDetails(reply.details) }, `task ${call.task.name} returned a value its output schema refuses${after}: ${shorten(reply.message, LOGGED_MESSAGE_CHARS)}`)
  } else if (reply.kind === KIND_TOO_LARGE) {
    // The client gets the same message; the log keeps it beside the request id for the operator.
    pool.log.warn(callLogFields(call), `task ${call.task.name}'s answer is too large: ${reply.message}`)
  }
  if (!answered) pool.admission.settle(waiter, outcome, error)
}
