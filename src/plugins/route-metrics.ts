// The HTTP side of the metrics: one onResponse hook per route, holding its template
// (never the raw URL, so the label set stays bounded), the task route's count of requests
// refused before they became a call, and observeAnswer for the answers no hook sees.

import type { FastifyInstance, FastifyReply, FastifyRequest, onResponseHookHandler } from 'fastify'
import { ERROR_CODES } from '../errors.js'
import { errorCodeOf } from '../request-log.js'
import { isBehindClosingAnswer } from '../connection-reuse.js'
import type { Metrics } from './metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Records an answer no onResponse hook sees: one to a request no route matched (the
     * not-found context has no hook), one the server wrote on the socket itself (clientError),
     * and one never sent because its client left (status_code 499).
     */
    observeAnswer: (request: FastifyRequest, reply: FastifyReply, statusCode?: number, code?: string) => void
  }
}

/** Methods kept as they are in the `method` label of unmatched requests; any other is "other" (bounded labels). */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
const TASK_ROUTE = '/api/tasks/:name'
/**
 * The task route's usual answers (SPEC §1's statuses, and 499 for a client that left; not
 * the rarer 408, 417 and 501, which appear with their first sample): their
 * series exist from the start, at 0, so that the dashboard's rates by status and
 * PyfleetClientsGivingUp see a replica's first burst of each, as they do pyworker_calls_total's.
 */
const TASK_ROUTE_STATUSES = [200, 400, 404, 413, 415, 422, 499, 500, 502, 503, 504]
/** Codes kept as they are in the refusals' `code` label: pyfleet's own and Fastify's; any other is "other" (bounded labels). */
const KNOWN_CODES = new Set(ERROR_CODES.map(({ code }) => code))

/** Fastify's codes and Node's HTTP parser's (a body's broken chunked framing, one cut short, one not received in time). */
const FRAMEWORK_CODE = /^(FST_ERR_[A-Z0-9_]{1,48}|HPE_[A-Z_]{1,40}|ERR_HTTP_REQUEST_TIMEOUT)$/

function boundedCode (code: string | undefined): string {
  return code !== undefined && (KNOWN_CODES.has(code) || FRAMEWORK_CODE.test(code)) ? code : 'other'
}

/**
 * Whether an answer of `status` to the task route refuses a request before it became a call:
 * a 4xx, but not 422 (a call its task refused, counted as rejected) nor 499 (a client that
 * left: its answer, refusal or not, was never delivered, and is counted as that). The 400
 * of a request pipelined behind an answer that closes its connection is not one either
 * (isBehindClosingAnswer): it was never run, and says nothing of its input.
 */
function isRefusal (status: number): boolean {
  return status >= 400 && status < 500 && status !== 422 && status !== 499
}

/** The task a request named, if it is served; "unknown" otherwise (never a client's raw text as a label). */
function servedTask (fastify: FastifyInstance, request: FastifyRequest): string {
  const { name } = request.params as { name?: string }
  return name !== undefined && fastify.tasks.get(name) !== undefined ? name : 'unknown'
}

/** Adds the hooks and observeAnswer that record every answer in `metrics`. */
export function observeRoutes (fastify: FastifyInstance, metrics: Metrics): void {
  // One onResponse hook per route, holding its template (never the raw URL, so
  // the label set stays bounded): cheaper than a global hook that reads
  // request.routeOptions, a getter that builds an object on every request.
  const observerFor = (route: string): onResponseHookHandler => {
    const observe = metrics.httpObserver(route)
    return function observeHttp (request, reply, done) {
      observe(request.method, reply.statusCode, reply.elapsedTime / 1000)
      done()
    }
  }
  // The task route's also counts the requests refused before they became a call, by task
  // and code, which the route template's status codes alone do not tell apart.
  const taskObserverFor = (route: string): onResponseHookHandler => {
    const observe = metrics.httpObserver(route, { method: 'POST', statuses: TASK_ROUTE_STATUSES })
    return function observeTaskHttp (request, reply, done) {
      const status = reply.statusCode
      observe(request.method, status, reply.elapsedTime / 1000)
      if (isRefusal(status) && !isBehindClosingAnswer(request)) metrics.taskRequestRefused(servedTask(fastify, request), boundedCode(errorCodeOf(reply)))
      done()
    }
  }
  fastify.addHook('onRoute', (route) => {
    const hook = route.url === TASK_ROUTE && route.method === 'POST' ? taskObserverFor(route.url) : observerFor(route.url)
    route.onResponse = route.onResponse === undefined ? [hook] : [...[route.onResponse].flat(), hook]
  })
  // Rare (a client leaving before its answer, a body cut off): the route is read from
  // routeOptions, and its observer made on first use. Unmatched requests have no route
  // template, and their method label is bounded.
  const routeObservers = new Map<string, ReturnType<Metrics['httpObserver']>>()
  fastify.decorate('observeAnswer', (request: FastifyRequest, reply: FastifyReply, statusCode = reply.statusCode, code?: string) => {
    const seconds = reply.elapsedTime / 1000
    if (request.is404) {
      metrics.observeUnmatched(KNOWN_METHODS.has(request.method) ? request.method : 'other', statusCode, seconds)
      return
    }
    const route = request.routeOptions.url ?? 'unmatched'
    let observe = routeObservers.get(route)
    if (observe === undefined) routeObservers.set(route, observe = metrics.httpObserver(route))
    observe(request.method, statusCode, seconds)
    // Refusals the server wrote on the socket itself (a body's broken framing, cut short, not received in time).
    if (route === TASK_ROUTE && request.method === 'POST' && isRefusal(statusCode) && !isBehindClosingAnswer(request)) metrics.taskRequestRefused(servedTask(fastify, request), boundedCode(code ?? errorCodeOf(reply)))
  })
}
