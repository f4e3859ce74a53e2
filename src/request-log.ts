// One log line per request, when it completes: request id, route, status,
// and for task calls the task, queue wait, run time and outcome.

import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Call } from './pool/worker-pool.js'
import { shortenForJson } from './short-text.js'

export const round = (ms: number): number => Math.round(ms * 1000) / 1000
/** The code of an error answer (SPEC §1), kept on its response for the completion line. */
const kErrorCode = Symbol('pyfleet.errorCode')
/** A 4xx's message, as the client got it: why a 400 or a 422 was one, without asking the client. */
const kErrorMessage = Symbol('pyfleet.errorMessage')
/** A 5xx that is the state the server was asked to be in, not a failure (noteExpected). */
const kExpected = Symbol('pyfleet.expected')
type Coded = { [kErrorCode]?: string, [kErrorMessage]?: string, [kExpected]?: true }
/** The error message on a completion line: enough to read a validation error or a task's TaskError, bounded as a log line must be. */
const LOGGED_ERROR_MESSAGE_CHARS = 300
const LOGGED_ERROR_MESSAGE_BYTES = 1024
/** Load shedding: one answer per refused request under overload, counted by the metrics; not a warning each. */
const SHEDDING_CODES = new Set(['QUEUE_FULL', 'RECEIVE_FULL'])

/** Notes the code an error answer is sent with (the error handler), and its message, for its log line. */
export function noteErrorCode (reply: FastifyReply, code: string, message?: string): void {
  (reply.raw as Coded)[kErrorCode] = code
  if (message !== undefined && message !== '') (reply.raw as Coded)[kErrorMessage] = message
}

/**
 * Marks a 5xx answer as expected, logged at info: /ready's 503 while the server stops, which
 * every load balancer's check and probe gets during each rollout (a review saw a warning per
 * check). Routes at logLevel 'warn' then write no line for it.
 */
export function noteExpected (reply: FastifyReply): void {
  (reply.raw as Coded)[kExpected] = true
}

/** An error answer's message as its log line has it: bounded, as a log line must be. */
export function loggedErrorMessage (message: string): string {
  return shortenForJson(message, LOGGED_ERROR_MESSAGE_CHARS, LOGGED_ERROR_MESSAGE_BYTES)
}

/** The code noted for the answer (noteErrorCode), if it is an error's. */
export function errorCodeOf (reply: FastifyReply): string | undefined {
  return (reply.raw as Coded)[kErrorCode]
}

const LEVEL_VALUES: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

export class RequestLog extends LogController {
  readonly #onCompleted: (request: FastifyRequest, reply: FastifyReply) => void

  /** `onCompleted`: told of every answer written, before its line (abandoned.ts stops watching it). */
  constructor (onCompleted: (request: FastifyRequest, reply: FastifyReply) => void = () => {}) {
    super({ requestIdLogLabel: 'requestId' })
    this.#onCompleted = onCompleted
  }

  /** Nothing on arrival: the completion line carries everything. */
  override incomingRequest (): void {}

  override requestCompleted (error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    // Routes declared with logLevel 'warn' (/health, /ready) get a child logger at
    // that level, so their info lines are dropped here without reading
    // request.routeOptions (a getter that builds an object on every call).
    this.#onCompleted(request, reply)
    const code = errorCodeOf(reply)
    const level = reply.statusCode >= 500 && (reply.raw as Coded)[kExpected] === true ? 'info' : levelFor(reply.statusCode, code)
    if ((LEVEL_VALUES[reply.log.level] ?? 0) > LEVEL_VALUES[level]) return
    const fields: Record<string, unknown> = requestFields(request, request.pyfleetCall)
    fields.statusCode = reply.statusCode
    if (code !== undefined) fields.code = code
    // errorMessage, not message: log pipelines (Datadog, Google's) take a `message` field for the line's own text.
    const message = (reply.raw as Coded)[kErrorMessage]
    if (message !== undefined) fields.errorMessage = loggedErrorMessage(message)
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
export function levelFor (statusCode: number, code: string | undefined): 'warn' | 'info' {
  return statusCode >= 500 && (code === undefined || !SHEDDING_CODES.has(code)) ? 'warn' : 'info'
}

/**
 * The URL as logged: cut to 200 characters, and without the query string (from the first `?`
 * or `#`, as the router reads it) of an admin route, where a client that put the token there
 * (`?access_token=...`) would have it written to the log. Any path that mentions admin, in any
 * case or spelling (`//admin/reload`, `/ADMIN/...`, `/%61dmin/reload`, `/admin%2Freload`,
 * `http://host/admin/...`), whatever it answers; so a task named like `admin.report` is logged
 * without its query string too.
 */
export function loggedUrl (url: string): string {
  const query = queryStart(url)
  if (query >= 0 && percentDecoded(url.slice(0, query)).toLowerCase().includes('admin')) return `${url.slice(0, Math.min(query, 200))}?...`
  return url.length > 200 ? `${url.slice(0, 200)}...` : url
}

/** Where a request target's query string starts, as the router (find-my-way) reads it: at the first `?` or `#`; -1 without one. */
export function queryStart (url: string): number {
  const question = url.indexOf('?')
  const hash = url.indexOf('#')
  return question === -1 ? hash : hash === -1 ? question : Math.min(question, hash)
}

/** `%XX` escapes as the characters they stand for (bytes as Latin-1: enough to find a word), never throwing. */
function percentDecoded (path: string): string {
  return path.includes('%') ? path.replace(/%([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))) : path
}

/** What a request's log line says about it, and about its task call if it made one. */
export function requestFields (request: FastifyRequest, call: Call | null | undefined): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    method: request.method,
    url: loggedUrl(request.url),
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
    // The client's x-request-timeout-ms: a 504 or 503 its budget caused reads otherwise like the task's own timeout.
    if (call.budgetMs !== undefined) fields.budgetMs = call.budgetMs
  }
  return fields
}
