// Requests whose client left before their answer was written: Fastify neither logs
// nor measures them (Node writes nothing to a closed connection, so no 'finish'), so
// each gets its log line and one http_request_duration_seconds sample (status_code
// 499) here, once. Three moments find them: the task route when its call ends, the
// error handler when it answers, and the connection's close, for answers that were
// handed to Node but waited behind another on a pipelining connection.

import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Call } from './pool/worker-pool.js'
import { wasClosedByServer } from './closed-by-server.js'
import { isBehindClosingAnswer } from './connection-reuse.js'
import { errorCodeOf, levelFor, requestFields, round } from './request-log.js'

/**
 * The status_code of a request whose client left before its answer (nginx's "client closed
 * request"). Without this sample, requests clients gave up on, often the slowest, would be
 * missing from the rate and the latency quantiles.
 */
const CLIENT_CLOSED_REQUEST = 499

/** What the answer nobody received would have been. */
interface LostAnswer {
  statusCode: number
  code: string | undefined
  /** The error it would have carried, if any. */
  error: unknown
}

/** Requests already logged and measured as abandoned: the route records one, then its error handler sees it again. */
const recorded = new WeakSet<FastifyRequest>()

/**
 * A request whose client left before its answer. `call`: its task call, if it became one;
 * `error`: what its answer would have carried (none: a result, or a call cancelled
 * because its client left, a 503 nobody sees and the client's own doing).
 */
export function recordAbandoned (request: FastifyRequest, reply: FastifyReply, call: Call | null | undefined, error?: unknown): void {
  const cancelled = call?.outcome === 'cancelled'
  if (error === undefined || cancelled) {
    record(request, reply, call, { statusCode: 200, code: undefined, error: undefined })
    return
  }
  const code = (error as { code?: unknown }).code
  record(request, reply, call, { statusCode: (error as { statusCode?: number }).statusCode ?? 500, code: typeof code === 'string' ? code : undefined, error })
}

function record (request: FastifyRequest, reply: FastifyReply, call: Call | null | undefined, lost: LostAnswer): void {
  if (recorded.has(request)) return
  recorded.add(request)
  const fields = requestFields(request, call)
  // What /metrics records it as (nginx's 499), so that the line and the series can be matched.
  fields.statusCode = CLIENT_CLOSED_REQUEST
  fields.durationMs = round(reply.elapsedTime)
  if (lost.code !== undefined) fields.code = lost.code
  if (lost.error !== undefined) {
    // A server failure keeps its stack, as any 5xx's does; a client error (a body cut off,
    // refused) is the client's doing: what ended it is enough, as a 4xx answer's line has no stack.
    if (lost.statusCode >= 500) fields.err = lost.error
    else fields.reason = (lost.error as { message?: unknown }).message
  }
  request.log[levelFor(lost.statusCode, lost.code)](fields, 'request abandoned: the client left before its answer')
  request.server.observeAnswer(request, reply, CLIENT_CLOSED_REQUEST)
}

/**
 * For a route whose answer takes a while to make (a reload, a scrape), when it is made: a
 * client that left meanwhile gets its line and its 499, as a task call's does. An answer not
 * yet made when the connection closed is left to its route (recordUnwritten), and Fastify
 * records nothing of one that Node never writes.
 */
export function recordIfClientLeft (request: FastifyRequest, reply: FastifyReply): void {
  const socket = request.raw.socket
  if (socket?.destroyed === true && !wasClosedByServer(socket)) recordAbandoned(request, reply, request.pyfleetCall)
}

/** The answers of a connection's requests that may not have been written yet (watchAnswer). */
const kAnswers = Symbol('pyfleet.answers')
/** The reply of the request a raw request became (clientError reads it). */
const kReply = Symbol('pyfleet.reply')
type Watched = Socket & { [kAnswers]?: Set<FastifyReply> }

/**
 * From the onRequest hook, for every request: its answer is watched until written
 * (answerWritten). A connection holds the answers not yet written: on a pipelining
 * connection, the ones waiting behind another; otherwise at most the one under way.
 */
export function watchAnswer (request: FastifyRequest, reply: FastifyReply): void {
  (request.raw as { [kReply]?: FastifyReply })[kReply] = reply
  watchUnwritten(request, reply)
}

/**
 * An answer the connection's close records if it was never written, without making it the
 * request's reply for clientError: frameworkError's, whose requests no hook sees (a bad
 * URL, CONNECT), and whose bodies nobody reads. answerWritten ends the watch.
 */
export function watchUnwritten (request: FastifyRequest, reply: FastifyReply): void {
  const socket = request.raw.socket as Watched
  const answers = socket[kAnswers] ?? answersOf(socket)
  // A safety net only: answerWritten takes each answer out once written.
  for (const earlier of answers) if (earlier.raw.writableFinished) answers.delete(earlier)
  answers.add(reply)
}

/**
 * The answer was written (RequestLog's completion): nothing more to watch, and nothing
 * left holding the request. Node keeps the connection's latest request reachable until
 * the next one (and connection-reuse.ts its response), so a reply left on it would keep
 * the request and its body alive on every idle keep-alive connection.
 */
export function answerWritten (request: FastifyRequest, reply: FastifyReply): void {
  // Set to undefined, not deleted: deleting would turn Node's request objects into slow dictionaries.
  (request.raw as { [kReply]?: FastifyReply })[kReply] = undefined
  ;(request.raw.socket as Watched | null)?.[kAnswers]?.delete(reply)
}

/** The reply of a request the onRequest hook has seen, from its raw request (clientError has only the socket). */
export function replyOf (raw: object): FastifyReply | undefined {
  return (raw as { [kReply]?: FastifyReply })[kReply]
}

/**
 * A connection's set of answers, and its one 'close' listener. In a function of its own,
 * so the listener's closure holds the socket and the set, not the first request.
 */
function answersOf (socket: Watched): Set<FastifyReply> {
  const answers = new Set<FastifyReply>()
  socket[kAnswers] = answers
  socket.once('close', () => { recordUnwritten(socket, answers) })
  return answers
}

/**
 * The connection closed: answers handed to Node but never written (queued behind another
 * on a pipelining connection) were abandoned. An answer not yet made is left to its
 * route or the error handler, which record it once they know what it would have been.
 * A connection the server closed itself is not its client leaving; nor is one that
 * closed after an answer that said `connection: close`: the requests pipelined behind
 * that answer were refused (their line says so), and are measured with their refusal.
 */
function recordUnwritten (socket: Socket, answers: Set<FastifyReply>): void {
  if (!wasClosedByServer(socket)) {
    for (const reply of answers) {
      if (!reply.sent || reply.raw.writableFinished) continue
      const request = reply.request
      if (isBehindClosingAnswer(request)) request.server.observeAnswer(request, reply)
      else record(request, reply, request.pyfleetCall, { statusCode: reply.statusCode, code: errorCodeOf(reply), error: undefined })
    }
  }
  answers.clear()
}
