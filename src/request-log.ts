// One log line per request, when it completes: request id, route, status,
// and for task calls the task, queue wait, run time and outcome.

import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Call } from './pool/worker-pool.js'

const round = (ms: number): number => Math.round(ms * 1000) / 1000
/** The code of an error answer (SPEC §1), kept on its response for the completion line. */
const kErrorCode = Symbol('pyfleet.errorCode')
type Coded = { [kErrorCode]?: string }
/** Load shedding: one answer per refused request under overload, counted by the metrics; not a warning each. */
const SHEDDING_CODES = new Set(['QUEUE_FULL', 'RECEIVE_FULL'])

/** Notes the code an error answer is sent with (the error handler), for its log line. */
export function noteErrorCode (reply: FastifyReply, code: string): void {
  (reply.raw as Coded)[kErrorCode] = code
}

const LEVEL_VALUES: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

export class RequestLog extends LogController {
  constructor () {
    super({ requestIdLogLabel: 'requestId' })
  }

  /** Nothing on arrival: the completion line carries everything. */
  override incomingRequest (): void {}

  override requestCompleted (error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    // Routes declared with logLevel 'warn' (/health, /ready) get a child logger at
    // that level, so their info lines are dropped here without reading
    // request.routeOptions (a getter that builds an object on every call).
    const code = (reply.raw as Coded)[kErrorCode]
    const level = levelFor(reply.statusCode, code)
    if ((LEVEL_VALUES[reply.log.level] ?? 0) > LEVEL_VALUES[level]) return
    const fields: Record<string, unknown> = requestFields(request, request.pyfleetCall)
    fields.statusCode = reply.statusCode
    if (code !== undefined) fields.code = code
    fields.durationMs = round(reply.elapsedTime)
    if (error !== null) fields.err = error
    reply.log[level](fields, 'request completed')
  }
}

/**
 * One rule for both lines: an answer that is the server's failure (5xx) is a warning, but
 * for load shedding (QUEUE_FULL, RECEIVE_FULL), which under overload is one line per
 * request refused, when the server can least afford them: its counters and alert say it.
 */
function levelFor (statusCode: number, code: string | undefined): 'warn' | 'info' {
  return statusCode >= 500 && (code === undefined || !SHEDDING_CODES.has(code)) ? 'warn' : 'info'
}

/** Requests already logged and measured as abandoned: the route records one, then its error handler sees it again. */
const recordedAbandoned = new WeakSet<FastifyRequest>()

/**
 * A request whose client left before its answer: Fastify has no answer to log or
 * measure (Node writes none to a closed connection, so no 'finish'), so its log line and
 * its http_request_duration_seconds sample (status_code 499) are written here, once.
 * `call`: its task call, if it became one; `error`: what its answer would have carried.
 */
export function recordAbandoned (request: FastifyRequest, reply: FastifyReply, call: Call | null | undefined, error?: unknown): void {
  if (recordedAbandoned.has(request)) return
  recordedAbandoned.add(request)
  logAbandoned(request, reply, call, error)
  request.server.observeAbandoned(request, reply)
}

/**
 * The line for a request whose client left before its answer: Fastify writes no
 * completion line then (no 'finish'). At the level the answer's line would have had,
 * with the error that answer would have carried; a call cancelled because its client
 * left (a 503 nobody sees) is the client's doing, not a failure: info.
 */
function logAbandoned (request: FastifyRequest, reply: FastifyReply, call: Call | null | undefined, error?: unknown): void {
  const cancelled = call?.outcome === 'cancelled'
  const statusCode = error === undefined || cancelled ? 200 : (error as { statusCode?: number }).statusCode ?? 500
  const fields = requestFields(request, call)
  fields.durationMs = round(reply.elapsedTime)
  // A cancelled call's error is the pool's way of ending the wait (a 503 nobody sees): the
  // outcome says it all, and its code would read as the crash loop's WORKERS_UNAVAILABLE.
  if (error !== undefined && !cancelled) {
    // A server failure keeps its stack, as any 5xx's does; a client error (a body cut off,
    // refused) is the client's doing: what ended it is enough, as a 4xx answer's line has no stack.
    if (statusCode >= 500) fields.err = error
    else fields.reason = (error as { message?: unknown }).message
    const code = (error as { code?: unknown }).code
    if (typeof code === 'string') fields.code = code
  }
  request.log[levelFor(statusCode, undefined)](fields, 'request abandoned: the client left before its answer')
}

/** What a request's log line says about it, and about its task call if it made one. */
export function requestFields (request: FastifyRequest, call: Call | null | undefined): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    method: request.method,
    url: request.url.length > 200 ? `${request.url.slice(0, 200)}...` : request.url,
    // The peer's address (a proxy's, behind one: pyfleet trusts no forwarded header).
    remoteAddress: request.socket.remoteAddress
  }
  if (call !== null && call !== undefined) {
    fields.task = call.task.name
    fields.outcome = call.outcome
    fields.queueMs = round(call.queueMs)
    // A large body's wait for the offload thread, before its call could queue for a worker.
    if (call.waitedMs !== undefined && call.waitedMs > 0) fields.offloadWaitMs = round(call.waitedMs)
    fields.runMs = round(call.runMs)
  }
  return fields
}
