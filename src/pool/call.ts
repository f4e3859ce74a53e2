// One call's shape as the pool sees it, how calls end, and who is told.
// Shared by the pool, the routes and the metrics.

import type { ValidateFunction } from 'ajv'
import type { WorkerFailure } from './worker-failures.js'
import type { RetireReason } from './recycler.js'
import type { TraceContext } from '../trace-context.js'

/** Why a worker was replaced: it failed (crash, timeout, protocol) or was retired. */
export type RestartReason = WorkerFailure | RetireReason
export type CallOutcome = 'ok' | 'rejected' | 'failed' | 'timeout' | 'worker_died' | 'queue_full' | 'queue_timeout' | 'cancelled'
export const CALL_OUTCOMES: readonly CallOutcome[] = ['ok', 'rejected', 'failed', 'timeout', 'worker_died', 'queue_full', 'queue_timeout', 'cancelled']
/**
 * The limit that ended a call, where one did rather than its task or its worker
 * (pyfleet_calls_limited_total): the server's own (QUEUE_LIMIT, QUEUE_LIMIT_BYTES,
 * QUEUE_TIMEOUT_MS, the task's timeout) apart from the client's (its
 * x-request-timeout-ms budget, in the queue or while the call ran, and SHED_LATE_CALLS,
 * which acts on that budget). SPEC §6's outcomes cannot tell them apart: queue_timeout
 * and timeout each count both kinds.
 */
export type CallLimit = 'queue_limit' | 'queue_limit_bytes' | 'queue_timeout_ms' | 'task_timeout' | 'client_budget_queued' | 'client_budget_running' | 'shed_late_calls'
export const CALL_LIMITS: readonly CallLimit[] = ['queue_limit', 'queue_limit_bytes', 'queue_timeout_ms', 'task_timeout', 'client_budget_queued', 'client_budget_running', 'shed_late_calls']
export const RESTART_REASONS: readonly RestartReason[] = ['crash', 'timeout', 'max_calls', 'max_rss', 'protocol', 'reload']

/**
 * Which start failed: a replacement for an empty slot, a spare for recycling
 * (MAX_CALLS_PER_WORKER, MAX_WORKER_RSS_MB), or a spare for a reload (apart, so that
 * a reload's failure, which pyfleet_reloads_total tells, is not also read as recycling stuck).
 */
export type StartFailureKind = 'replacement' | 'spare' | 'reload'
export const START_FAILURE_KINDS: readonly StartFailureKind[] = ['replacement', 'spare', 'reload']

/** What the pool needs to know of a task. */
export interface PoolTask {
  readonly name: string
  readonly timeoutMs: number
  readonly maxConcurrency: number
  /** VALIDATE_RESULTS: checks a result against the task's output schema (result-check.ts); absent: not checked. */
  readonly validateResult?: ValidateFunction
  /** The schema validateResult checks, which the offload thread compiles for large replies. */
  readonly outputSchema?: Record<string, unknown> | boolean | null
}

/** One call through the pool; the pool fills in the timings (read them for server-timing). */
export interface Call {
  readonly task: PoolTask
  readonly input: unknown
  /** The input holds numbers past 32 bits: its integers among them are sent as int64 (wide-integers.ts). */
  readonly holdsWideNumbers?: boolean
  readonly requestId: string
  /** The client's W3C trace context and baggage (trace-context.ts), passed on to the task, the trace's ids logged; absent if it sent none. */
  readonly trace?: TraceContext
  /** The size of the request body the input came from: what a queued call holds, for QUEUE_LIMIT_BYTES (0 if unknown). */
  readonly inputBytes?: number
  /** End-to-end budget (x-request-timeout-ms) for queue wait and run together. */
  readonly budgetMs?: number
  /**
   * Time the call's budget had spent before it reached the pool: its large body waited for
   * the offload thread and was parsed there (offload/offloader.ts). 0 or absent for the rest.
   */
  readonly waitedMs?: number
  /** Subscribes to "the client has gone" while the call waits; returns an unsubscribe function. */
  readonly onClientGone?: (cancel: () => void) => () => void
  queueMs: number
  runMs: number
  /** How the call ended, once it has. */
  outcome?: CallOutcome
  /** The limit that ended it, if one did (queue_full, queue_timeout and timeout outcomes). */
  limit?: CallLimit
  /** The client wants a msgpack answer: the pool then keeps the result's own bytes in resultMsgpack. */
  readonly wantsMsgpack?: boolean
  /** The result's msgpack as the worker wrote it, for a msgpack answer (when the pool could find it). */
  resultMsgpack?: Uint8Array
}

/**
 * Receives what happened, for metrics; the pool keeps no counters of its own.
 * What is not a call is not reported: like a 400 or a 404 (SPEC §6), input that
 * cannot be sent to a worker (413, 400) and a task a reload has removed (404).
 */
export interface PoolObserver {
  /** A call that was admitted (it waited in the queue, ran, or both) has ended. */
  callEnded: (call: Call, outcome: CallOutcome) => void
  /** A call was turned away at admission, without waiting (queue full, no worker running, draining). */
  callRefused: (call: Call, outcome: CallOutcome) => void
  workerRestarted: (reason: RestartReason) => void
  /** A worker failed to start: a replacement for an empty slot, or a spare while the old one serves on (for recycling, or for a reload). */
  workerStartFailed: (kind: StartFailureKind) => void
}
