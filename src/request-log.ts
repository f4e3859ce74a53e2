// One log line per request, when it completes: request id, route, status,
// and for task calls the task, queue wait, run time and outcome.

import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'

const round = (ms: number): number => Math.round(ms * 1000) / 1000

export class RequestLog extends LogController {
  constructor () {
    super({ requestIdLogLabel: 'requestId' })
  }

  /** Nothing on arrival: the completion line carries everything. */
  override incomingRequest (): void {}

  override requestCompleted (error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const call = request.pyfleetCall
    const fields: Record<string, unknown> = {
      method: request.method,
      url: request.url.length > 200 ? `${request.url.slice(0, 200)}...` : request.url,
      statusCode: reply.statusCode,
      durationMs: round(reply.elapsedTime)
    }
    if (call !== null && call !== undefined) {
      fields.task = call.task.name
      fields.outcome = call.outcome
      fields.queueMs = round(call.queueMs)
      fields.runMs = round(call.runMs)
    }
    if (error !== null) fields.err = error
    const level = reply.statusCode >= 500 ? 'warn' : request.routeOptions.logLevel === 'warn' ? 'debug' : 'info'
    reply.log[level](fields, 'request completed')
  }
}
