// One log line per request, when it completes: request id, route, status,
// and for task calls the task, queue wait, run time and outcome.

import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Call } from './pool/worker-pool.js'

const round = (ms: number): number => Math.round(ms * 1000) / 1000
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
    const level = levelFor(reply.statusCode)
    if ((LEVEL_VALUES[reply.log.level] ?? 0) > LEVEL_VALUES[level]) return
    const fields: Record<string, unknown> = requestFields(request, request.pyfleetCall)
    fields.statusCode = reply.statusCode
    fields.durationMs = round(reply.elapsedTime)
    if (error !== null) fields.err = error
    reply.log[level](fields, 'request completed')
  }
}

/** One rule for both lines: an answer that is the server's failure (5xx) is a warning. */
function levelFor (statusCode: number): 'warn' | 'info' {
  return statusCode >= 500 ? 'warn' : 'info'
}

/**
 * The line for a task call whose client left before its answer: Fastify writes no
 * completion line then (no 'finish'). At the level the answer's line would have had,
 * with the error that answer would have carried; a call cancelled because its client
 * left (a 503 nobody sees) is the client's doing, not a failure: info.
 */
export function logAbandoned (request: FastifyRequest, reply: FastifyReply, call: Call, error?: unknown): void {
  const statusCode = error === undefined || call.outcome === 'cancelled' ? 200 : (error as { statusCode?: number }).statusCode ?? 500
  const fields = requestFields(request, call)
  fields.durationMs = round(reply.elapsedTime)
  if (error !== undefined) fields.err = error
  request.log[levelFor(statusCode)](fields, 'request abandoned: the client left before its answer')
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
    fields.runMs = round(call.runMs)
  }
  return fields
}
