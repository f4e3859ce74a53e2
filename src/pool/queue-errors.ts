// The queue's 503s: whether a call may wait at all (QUEUE_LIMIT, QUEUE_LIMIT_BYTES) and
// QUEUE_FULL's words, and QUEUE_TIMEOUT for a wait that ran out or a call not started
// because its budget could not fit its task's pace. Retry-After is the caller's to give.

import { errorOfCode, QueueTimeoutError, withExtras } from '../errors.js'
import type { Call, CallLimit, PoolTask } from './call.js'

/** The queue as its limits see it when a call asks to wait. */
export interface QueueLoad {
  readonly waiting: number
  readonly queuedBytes: number
  /** The call's task runs as many calls as TASK_CONCURRENCY lets it: why it cannot start, whatever the workers do. */
  readonly taskAtLimit?: boolean
}

export interface QueueLimits {
  queueLimit: number
  /** QUEUE_LIMIT_BYTES (0: no limit); one call alone may always wait. */
  queueLimitBytes: number
  poolSize: number
  /** Workers running (idle or busy, not starting), for QUEUE_FULL's message; POOL_SIZE if not given. */
  liveWorkers?: () => number
}

/** QUEUE_FULL's message and the limit that refuses `call` a place in the queue, or undefined: it may wait. */
export function queueFullFor (call: Call, load: QueueLoad, limits: QueueLimits): { message: string, limit: CallLimit } | undefined {
  if (load.waiting >= limits.queueLimit) {
    const live = limits.liveWorkers?.() ?? limits.poolSize
    const message = load.waiting === 0 && load.taskAtLimit === true
      ? `${call.task.name} already runs ${call.task.maxConcurrency} ${call.task.maxConcurrency === 1 ? 'call' : 'calls'} at once, its TASK_CONCURRENCY limit, and QUEUE_LIMIT=0 lets no caller wait; retry later`
      : queueFullMessage(load.waiting, live, limits.poolSize)
    return { message, limit: 'queue_limit' }
  }
  const limitBytes = limits.queueLimitBytes
  if (limitBytes > 0 && load.waiting > 0 && load.queuedBytes + (call.inputBytes ?? 0) > limitBytes) {
    return { message: queueFullBytesMessage(load.waiting, load.queuedBytes, call.inputBytes ?? 0, limitBytes), limit: 'queue_limit_bytes' }
  }
  return undefined
}

/** QUEUE_FULL's message, for `waiting` callers in a full queue (none with QUEUE_LIMIT=0), `live` of `poolSize` workers running. */
function queueFullMessage (waiting: number, live: number, poolSize: number): string {
  if (waiting === 0) {
    // Not "busy" while some are starting (a replacement after a crash, the first start): QUEUE_LIMIT=0 refuses then too.
    const none = live < poolSize ? `no worker is free (${live} of ${poolSize} running, the rest starting)` : 'every worker is busy'
    return `${none} and QUEUE_LIMIT=0 lets no caller wait; retry later`
  }
  return `${waiting === 1 ? '1 caller is' : `${waiting} callers are`} already waiting for a worker; retry later`
}

/** QUEUE_FULL's message when the queued input, not the number of callers, is at its limit. */
function queueFullBytesMessage (waiting: number, queuedBytes: number, callBytes: number, limitBytes: number): string {
  const who = waiting === 1 ? 'the caller already waiting holds' : `the ${waiting} callers already waiting hold`
  const already = queuedBytes >= limitBytes ? `${who} ${queuedBytes} bytes of input, at or past QUEUE_LIMIT_BYTES=${limitBytes} already` : `${who} ${queuedBytes} bytes of input, and this call's ${callBytes} would take the queue past QUEUE_LIMIT_BYTES=${limitBytes}`
  return `${already}; retry later`
}

export function queueTimeoutError (waitMs: number, byBudget: boolean, retryAfterSeconds: number, atTaskLimit?: PoolTask): Error {
  const within = byBudget ? `${waitMs} ms (the x-request-timeout-ms budget)` : `${waitMs} ms`
  // Held by its task's own limit, the call may have waited beside idle workers: "no worker became free" misled.
  const error = atTaskLimit === undefined
    ? new QueueTimeoutError(within)
    : errorOfCode('QUEUE_TIMEOUT', `no call of ${atTaskLimit.name} could start within ${within}: it runs ${atTaskLimit.maxConcurrency} at once, its TASK_CONCURRENCY limit; retry later`)
  return withExtras(error, { retryAfterSeconds })
}

/** QUEUE_TIMEOUT for a queued call with `leftMs` of its budget, less than its task's `floorMs` (task-pace.ts): not started. */
export function tooLateToStartError (call: Call, leftMs: number, floorMs: number, retryAfterSeconds: number): Error {
  const message = `the x-request-timeout-ms budget of ${call.budgetMs as number} ms had ${Math.max(0, Math.floor(leftMs))} ms left when a worker became free, less than ${call.task.name}'s recent calls took (${Math.ceil(floorMs)} ms at the fastest): not started; retry later`
  return withExtras(errorOfCode('QUEUE_TIMEOUT', message), { retryAfterSeconds })
}
