// Sends every error in one shape, {statusCode, code, error, message, details?},
// as SPEC section 1 lists them: Fastify's own errors keep their codes, body
// parse errors become INVALID_INPUT, and anything unexpected is logged and sent
// as a bare 500 without internals. Errors Fastify raises before any route is
// found (a malformed URL, an over-long path parameter) come here too
// (frameworkError), and every answer to a request no route matched is recorded
// in the HTTP metrics as route "unmatched".

import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify'
import { InvalidInputError, MethodNotAllowedError, withExtras, type ErrorExtras } from '../errors.js'
import { serverTiming } from '../routes/timing.js'
import { closingConnectionError, isAnswering, isClosingAfterAnswer, keepOrClose, latestResponseOf, numberRequest, responseOf } from '../connection-reuse.js'
import { loggedErrorMessage, noteErrorCode, requestFields, round } from '../request-log.js'
import { answerWritten, recordAbandoned, replyOf, watchUnwritten } from '../abandoned.js'
import { closeByServer, wasClosedByServer } from '../closed-by-server.js'
import { jsonSafe } from '../routes/replies.js'

type SendableError = FastifyError & ErrorExtras

const PARSE_ERRORS = new Set(['FST_ERR_CTP_INVALID_JSON_BODY', 'FST_ERR_CTP_EMPTY_JSON_BODY', 'FST_ERR_CTP_INVALID_CONTENT_LENGTH'])

function normalize (error: SendableError, request: FastifyRequest): SendableError {
  if (PARSE_ERRORS.has(error.code)) return withExtras(new InvalidInputError(error.message), { details: error.details })
  // Fastify's own says only "Request body is too large": say what the limit is and what sets it.
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' && error.message === 'Request body is too large') {
    return sendableError(413, error.code, `the body is over BODY_LIMIT_BYTES (${request.routeOptions.bodyLimit} bytes)`)
  }
  // Fastify's own, for a header that is not type/subtype at all ("", "json"), says only "Unsupported Media Type".
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' && error.message === 'Unsupported Media Type') {
    const given = String(request.headers['content-type'] ?? '').slice(0, 100)
    const what = given.trim() === '' ? 'an empty content-type' : `content-type ${JSON.stringify(given)}`
    return sendableError(415, error.code, `${what} is not a media type (type/subtype); send application/json or application/msgpack, or leave the header out for JSON`)
  }
  return error
}

/** How much of a client's path an error message repeats. */
const MAX_PATH_IN_MESSAGE = 200

/** The body every error answer has (SPEC §1). */
function errorBody (statusCode: number, code: string, message: string): Record<string, unknown> {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

/** An error raised here rather than by a route, with the status and code it is sent with. */
function sendableError (statusCode: number, code: string, message: string): SendableError {
  const error = withExtras(new Error(message), {}) as SendableError
  error.statusCode = statusCode
  error.code = code
  return error
}

function handleError (error: SendableError, request: FastifyRequest, reply: FastifyReply): void {
  const err = normalize(error, request)
  let statusCode = err.statusCode ?? 500
  if (statusCode < 400 || statusCode > 599) statusCode = 500
  const known = typeof err.code === 'string' && err.code !== ''
  if (statusCode >= 500 && !known) request.log.error({ err: error }, 'unexpected error')
  if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds))
  keepOrClose(err, request, reply)
  const call = request.pyfleetCall
  // undefined on the bare requests Fastify builds for frameworkError
  if (call !== null && call !== undefined) reply.header('server-timing', serverTiming(call))
  const code = known ? err.code : 'INTERNAL_ERROR'
  const body = errorBody(statusCode, code,
    statusCode >= 500 && !known ? 'internal server error; the server log has the details under this answer\'s x-request-id' : err.message)
  // A 4xx's message is the only account of why the request was refused; a 5xx has lines of its own.
  noteErrorCode(reply, code, statusCode < 500 ? err.message : undefined)
  // A task's TaskError details may hold bytes and integers past 2^53, as results do.
  if (err.details !== undefined) body.details = jsonSafe(err.details)
  // The client has left (its connection reset mid-body, or closed before a refusal was
  // sent): Node writes nothing, so Fastify neither logs nor measures this answer. Recorded
  // as abandoned instead (once: a task route may have done so before rethrowing). Not when
  // the server closed the connection itself: clientError's 400 or 408 is its record.
  const socket = request.raw.socket
  const abandoned = socket?.destroyed === true && !wasClosedByServer(socket)
  if (abandoned) recordAbandoned(request, reply, request.pyfleetCall, err)
  reply.status(statusCode).type('application/json; charset=utf-8').send(JSON.stringify(body))
  // Matched routes are recorded by their own onResponse hook (route-metrics.ts) once the answer
  // is written; the not-found context has none. Once written too: an answer that waits
  // behind another on a pipelining connection whose client leaves is a 499 (abandoned.ts).
  if (request.is404 && !abandoned) reply.raw.once('finish', () => { request.server.observeAnswer(request, reply) })
}

/**
 * The answer to a method and path no route has: a 405 naming the methods the path has
 * (PUT /api/tasks/echo), in `Allow` too; a 404 when no route has the path (unknown task
 * names reach the task routes: TASK_NOT_FOUND there).
 */
export function notFoundError (request: FastifyRequest, reply: FastifyReply): SendableError {
  const whole = request.url.split('?')[0]
  const path = whole.slice(0, MAX_PATH_IN_MESSAGE)
  // CONNECT asks for a tunnel, which no path has: its 404 below says pyfleet is no proxy.
  const allowed = request.method === 'CONNECT' ? [] : request.server.routeMethods.at(whole)
  if (allowed.length > 0) {
    reply.header('allow', allowed.join(', '))
    return new MethodNotAllowedError(request.method, path, allowed.join(', '))
  }
  // A trailing slash the routes do not have: /api/tasks/echo/ is not /api/tasks/echo.
  const bare = path.length > 1 && path.endsWith('/') ? path.replace(/\/+$/, '') : undefined
  const hint = bare !== undefined && bare !== '' && request.server.hasRoute({ method: request.method as HTTPMethods, url: bare.startsWith('/api/tasks/') ? '/api/tasks/:name' : bare })
    ? `: the routes have no trailing slash; use ${request.method} ${bare}`
    : path === '/api/tasks' || path.startsWith('/api/tasks/')
    ? ': run a task with POST /api/tasks/<name>, describe it with GET'
    : path === '/'
      ? ': pyfleet serves GET /api/tasks (the task list), POST /api/tasks/<name> (a call), GET /health, /ready, /metrics, /api/queue-stats and /api/openapi.json (the API described)'
    : path === '/admin/reload' && request.server.hasRoute({ method: 'POST', url: '/admin/reload' }) === false
      ? ': admin routes are off; set ADMIN_TOKEN to turn them on'
      : ''
  return sendableError(404, 'FST_ERR_NOT_FOUND', `no route ${request.method} ${path}${hint}`)
}

/**
 * Fastify's frameworkErrors: a URL that does not decode (400 FST_ERR_BAD_URL) or a
 * path parameter over maxParamLength (414 FST_ERR_MAX_PARAM_LENGTH), found before
 * routing and hence before any hook. Fastify would answer in its own shape, echo
 * the whole path and record nothing.
 */
export function frameworkError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  // No hook runs for these requests: the request id, the log line and the metric are ours to add.
  reply.header('x-request-id', request.id)
  numberRequest(request, reply)
  const path = (request.url ?? '').split('?')[0]
  const shown = path.length > MAX_PATH_IN_MESSAGE ? `${path.slice(0, MAX_PATH_IN_MESSAGE)}...` : path
  // Pipelined behind an answer that closes the connection, it is refused as a routed request
  // is (its line says so), though its answer is never written. CONNECT's target is
  // host:port, which is no path (unusual-requests.ts passes it on): no route has it.
  const answer = closingConnectionError(request) as SendableError | undefined ?? (request.method === 'CONNECT'
    ? sendableError(404, 'FST_ERR_NOT_FOUND', `no route CONNECT ${shown}: pyfleet is not a proxy`)
    : sendableError(error.statusCode ?? 400, error.code, error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? `a path segment of ${shown} is too long (task names are at most 64 characters)`
      : `${shown} is not a valid URL: it does not percent-decode`))
  // Its answer may wait behind others on a pipelining connection: if the connection closes
  // first, abandoned.ts records it, as it does a routed request's answer.
  watchUnwritten(request, reply)
  handleError(answer, request, reply)
  logWhenWritten(request, reply, { method: request.method, url: shown, remoteAddress: request.socket.remoteAddress, statusCode: reply.statusCode, code: answer.code, errorMessage: loggedErrorMessage(answer.message) })
}

/** frameworkError's line, once its answer is written (abandoned.ts records one that never is). */
function logWhenWritten (request: FastifyRequest, reply: FastifyReply, fields: Record<string, unknown>): void {
  // Fastify starts no clock for these requests (elapsedTime is 0): the time it took to be written is measured here.
  const answeredAt = performance.now()
  const written = (): void => {
    answerWritten(request, reply)
    request.log.info({ ...fields, durationMs: round(performance.now() - answeredAt) }, 'request completed')
  }
  if (reply.raw.writableFinished) written()
  // Gone already: handleError has recorded it as abandoned.
  else if (request.raw.socket?.destroyed === false) reply.raw.once('finish', written)
}

/** Node's parser code for a connection that ended in the middle of a request. */
const CUT_SHORT = 'HPE_INVALID_EOF_STATE'
/** Node's code for a request not received within its requestTimeout (REQUEST_BODY_TIMEOUT_MS). */
const TIMED_OUT = 'ERR_HTTP_REQUEST_TIMEOUT'
/** Connections whose garbage (pipelined behind answers under way) has been counted. */
const garbageCounted = new WeakSet<Socket>()

/**
 * A request line this long or longer, in the bytes Node was parsing when its header limit
 * (16 KiB by default) ran out, is what overflowed it: the URL, not the headers.
 */
const LONG_REQUEST_LINE_BYTES = 8 * 1024

/**
 * Whether what overflowed Node's header limit was the request line: Node counts it against
 * that limit, and answered an over-long URL (a query string of 20,000 characters) as headers
 * too large, sending the client off to trim headers it does not have. `rawPacket` is the
 * chunk Node was parsing: a request sent in one write is all there.
 */
function requestLineOverflowed (error: NodeJS.ErrnoException): boolean {
  const packet = (error as NodeJS.ErrnoException & { rawPacket?: unknown }).rawPacket
  if (!Buffer.isBuffer(packet) || packet.length < LONG_REQUEST_LINE_BYTES) return false
  const lineEnd = packet.indexOf('\n')
  return lineEnd === -1 || lineEnd >= LONG_REQUEST_LINE_BYTES
}

/** Node's errors for a connection whose bytes are not a usable HTTP request: status and what to say. */
function clientErrorAnswer (error: NodeJS.ErrnoException, headersParsed: boolean): { status: number, message: string } {
  const code = error.code
  if (code === TIMED_OUT) return { status: 408, message: 'the request was not received within REQUEST_BODY_TIMEOUT_MS; the connection is closed' }
  if (code === 'HPE_HEADER_OVERFLOW' && requestLineOverflowed(error)) return { status: 414, message: `the request's URL is longer than Node accepts (its request line counts against --max-http-header-size): send a task's input in the body, not the query string` }
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, message: 'the request headers are larger than Node accepts (--max-http-header-size)' }
  // "PRI * HTTP/2.0", a client speaking HTTP/2 without asking first (prior knowledge).
  if (code === 'HPE_PAUSED_H2_UPGRADE') return { status: 400, message: 'HTTP/2 is not served here: send HTTP/1.1 (or put a proxy that speaks HTTP/2 in front); the connection is closed' }
  // The client ended its side (FIN) with a request half sent: bytes cut short, not malformed.
  if (code === CUT_SHORT) return { status: 400, message: 'the connection ended before the whole request arrived (the client closed its side mid-request); the connection is closed' }
  // Headers parsed, then bytes that are no body (a chunk size that is not hexadecimal, say).
  if (headersParsed) return { status: 400, message: 'the request body is not valid HTTP (its chunked framing); the connection is closed' }
  return { status: 400, message: 'the request is not valid HTTP; the connection is closed' }
}

/**
 * A parser error behind requests still being answered (all of the current one received:
 * its handler runs or has answered). A 400 now would cut into those answers, and closing
 * would drop the ones queued behind it (SPEC §1: every admitted call gets its one
 * response), so they go out first.
 */
function errorBehindAnswers (this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket, inFlight: ServerResponse): void {
  if (error.code === CUT_SHORT) {
    // The client ended its side in the middle of a request: nothing more can arrive. Once
    // the answer under way is written, clientError runs again: the request cut short is
    // answered and recorded then (or, with more answers ahead, waits for the next one).
    inFlight.once('finish', () => { setImmediate(() => { if (!socket.destroyed) clientError.call(this, error, socket) }) })
    return
  }
  // A routed request whose body is malformed: its REQUEST_BODY_TIMEOUT_MS 408, answered
  // and recorded as itself, follows the answers.
  const parsing = (socket as Socket & { parser?: { incoming?: IncomingMessage | null } | null }).parser?.incoming
  if (parsing !== undefined && parsing !== null && !parsing.complete && replyOf(parsing) !== undefined) return
  // Garbage: no answer, and keep-alive's timeout closes the connection. Node goes on reading
  // and discarding what follows, calling clientError for each read: counted once per connection.
  if (!garbageCounted.has(socket)) this.metrics.observeUnparsed(400)
  garbageCounted.add(socket)
}

/**
 * Fastify's clientErrorHandler, called with the server as `this`: Node could not
 * parse a request (an unknown method, a malformed header) or did not receive it
 * in time. No request object exists; the answer is written to the socket, in
 * pyfleet's error shape, recorded as route "unmatched", and the socket closed.
 */
export function clientError (this: FastifyInstance, error: NodeJS.ErrnoException, socket: Socket): void {
  // A reset connection has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  // Bytes after a request that said "connection: close" (or HTTP/1.0 without keep-alive):
  // Node stops reading there. The answer under way is the one the client asked for.
  if (error.code === 'HPE_CLOSED_CONNECTION') return
  const inFlight = responseOf(socket)
  // The rest of a request answered before its body (a 404, 415 or 501 found from its headers),
  // in the same packet as its headers: that answer, written or under way, said `connection:
  // close` and was its one (SPEC §1). Node closes the connection once it is written; nothing
  // more goes out. (A closing answer not yet begun, a GET with a body whose route answers
  // later, is still owed: the 400 below is its answer.)
  if (isClosingAfterAnswer(socket) && (inFlight === undefined || inFlight.headersSent)) {
    if (inFlight === undefined || inFlight.writableFinished) closeByServer(socket, error)
    return
  }
  // The same after an answer Node itself closes the connection after: one to a request that
  // said `expect: 100-continue` and got its answer without the 100 (Node cannot know whether a
  // body follows), whose unframed bytes then come in as a request that does not parse.
  const latest = latestResponseOf(socket)
  if (latest !== undefined && latest.headersSent && !latest.shouldKeepAlive && (inFlight === undefined || inFlight === latest)) {
    if (latest.writableFinished) closeByServer(socket, error)
    return
  }
  if (inFlight !== undefined && isAnswering(socket)) {
    errorBehindAnswers.call(this, error, socket, inFlight)
    return
  }
  // A request whose headers were parsed and routed, its body cut short, late or malformed:
  // answered and recorded as itself (its id, method, URL and route), not as bytes nobody parsed.
  const routed = inFlight !== undefined && !inFlight.headersSent ? replyOf(inFlight.req) : undefined
  const { status, message } = clientErrorAnswer(error, routed !== undefined)
  const requestId = routed?.request.id ?? randomUUID()
  const lineFields = { statusCode: status, code: error.code, reason: error.message }
  if (routed !== undefined) {
    // The line every answered request gets (request-log.ts); its logger carries the request id.
    routed.log.info({ ...requestFields(routed.request, routed.request.pyfleetCall), ...lineFields, durationMs: round(routed.elapsedTime) }, error.code === CUT_SHORT ? 'request cut short' : error.code === TIMED_OUT ? 'request not received in time' : 'request body not parsed')
  } else {
    // The same line, with what is known: no method or URL was parsed.
    this.log.info({ requestId, ...lineFields, remoteAddress: socket.remoteAddress }, error.code === CUT_SHORT ? 'request cut short' : 'request not parsed')
  }
  const body = JSON.stringify(errorBody(status, error.code ?? 'BAD_REQUEST', message))
  if (socket.writable) {
    // Date, as Node writes on its own answers (RFC 9110 §6.6.1: an origin server with a clock must).
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ndate: ${new Date().toUTCString()}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`)
  }
  if (routed !== undefined) this.observeAnswer(routed.request, routed, status, error.code)
  else this.metrics.observeUnparsed(status)
  closeByServer(socket, error)
}

async function errorHandlerPlugin (fastify: FastifyInstance): Promise<void> {
  fastify.setErrorHandler(handleError)
  // A fallback: notFoundError() answers these requests from app.ts's onRequest hook, before any body is read.
  fastify.setNotFoundHandler((request, reply) => { handleError(notFoundError(request, reply), request, reply) })
}

export default fp(errorHandlerPlugin, { name: 'pyfleet-error-handler', fastify: '5.x', dependencies: ['pyfleet-metrics'] })
