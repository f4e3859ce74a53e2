// Whether a connection outlives an answer given before its request's body was read,
// and which requests pipelined on a connection that closes may still run. The error
// handler decides per error answer, app.ts for GET and HEAD; app.ts and the task route
// ask before a request runs.

import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { DuplicateHeaderError, DuplicateHostError, InvalidInputError, MissingHostError } from './errors.js'
import { lingerOnClose } from './lingering-close.js'
import { loggedUrl } from './request-log.js'

/** The response a connection is on: Node links it to the socket as `_httpMessage`. */
export function responseOf (socket: Socket): ServerResponse | undefined {
  return (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined
}

/**
 * An answer under way: started, or due (the request has all arrived, so its handler may
 * be about to answer), and not yet flushed. Shutdown leaves such a connection to finish;
 * an error Node finds behind it is answered after it.
 */
export function isAnswering (socket: Socket): boolean {
  const response = responseOf(socket)
  return response !== undefined && !response.writableFinished && (response.headersSent || response.req.complete)
}

/**
 * Connections answered early and closing (keepOrClose), with the number of the request
 * that closes each. Node may already have parsed requests pipelined behind it: their
 * answers would never be sent, so they must not run (SPEC §1: no call without its
 * response). Requests before it are answered first, and run. app.ts numbers the requests
 * of each connection; app.ts and the task route check.
 */
const closingAfter = new WeakMap<Socket, number>()
const kSequence = Symbol('pyfleet.requestSequence')
const kLatestResponse = Symbol('pyfleet.latestResponse')
type Numbered = Socket & { [kSequence]?: number, [kLatestResponse]?: ServerResponse }

/**
 * Numbers a request among those of its connection (1, 2, ...), from the onRequest hook,
 * and keeps its response as the connection's latest (closeWhenAnswered reads it; it is
 * held until the next request or the connection's end, as Node holds the socket).
 */
export function numberRequest (request: FastifyRequest, reply: FastifyReply): void {
  const socket = request.raw.socket as Numbered
  const sequence = (socket[kSequence] ?? 0) + 1
  // The connection's first request asks for its peer's address, which Node then keeps on the
  // socket: a line logged after the client left (request abandoned) still has it.
  if (sequence === 1) void socket.remoteAddress
  socket[kSequence] = sequence
  socket[kLatestResponse] = reply.raw
  ;(request.raw as { [kSequence]?: number })[kSequence] = sequence
}

/** The response of the connection's latest request (numberRequest), until the next one or the connection's end. */
export function latestResponseOf (socket: Socket): ServerResponse | undefined {
  return (socket as Numbered)[kLatestResponse]
}

function sequenceOf (request: FastifyRequest): number {
  return (request.raw as { [kSequence]?: number })[kSequence] ?? 0
}

/** Whether the request was pipelined behind an answer that closes its connection (keepOrClose): it is not run, and its answer is never written. */
export function isBehindClosingAnswer (request: FastifyRequest): boolean {
  const closesAt = closingAfter.get(request.raw.socket)
  return closesAt !== undefined && sequenceOf(request) > closesAt
}

/**
 * Whether an answer on this connection has closed it (or will, once written): what Node
 * parses after it is the rest of a request already answered, or one that is not run.
 */
export function isClosingAfterAnswer (socket: Socket): boolean {
  return closingAfter.has(socket)
}

/** An error for a request pipelined behind an answer that closes its connection, or undefined. */
export function closingConnectionError (request: FastifyRequest): Error | undefined {
  if (!isBehindClosingAnswer(request)) return undefined
  // The earlier answer came before its body arrived, or refused a request without Host.
  request.log.info({ method: request.method, url: loggedUrl(request.url), remoteAddress: request.socket.remoteAddress }, 'request not run: an earlier request on its connection got an answer that closes the connection')
  return new InvalidInputError('not run: an earlier request on this connection got an answer that closes the connection; send it again on a new connection')
}

/** A request with a body, arrived or not (a bodyless one is not `complete` yet while its hooks run). */
function hasBody (request: FastifyRequest): boolean {
  const { headers } = request
  // Node's parser has checked content-length is digits ("00" is a valid zero).
  const length = headers['content-length']
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0' && Number(length) !== 0)
}

/** The body's content-length, or undefined when it is chunked (Node has refused a request with both). */
function declaredLength (request: FastifyRequest): number | undefined {
  const { headers } = request
  return headers['transfer-encoding'] === undefined && headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined
}

/** What a body parser's errors are answered with; Fastify then asks to close the connection. */
const PARSER_ERROR_CODES = new Set(['INVALID_INPUT', 'FST_ERR_CTP_INVALID_MEDIA_TYPE'])

/**
 * Whether the connection outlives an error answer. Answered before its body has all
 * arrived (a 404 or 415 found first, a 413), it closes: otherwise Node would read and
 * discard whatever the client goes on sending, without BODY_LIMIT_BYTES' bound. After a
 * body parser's error on a body received whole, Fastify's `connection: close` gives way to
 * what the client asked for: nothing is left to discard, and closing would lose the answers to requests pipelined
 * behind it, whose calls are already running (SPEC §1). Not while stopping (SHUTDOWN_DELAY_MS,
 * then the drain), when every connection is closed on purpose.
 */
export function keepOrClose (error: Error & { code?: string }, request: FastifyRequest, reply: FastifyReply): void {
  const code = error.code
  if (!request.raw.complete && hasBody(request)) {
    closeAfterAnswer(request, reply)
  } else if (code !== undefined && PARSER_ERROR_CODES.has(code) && (reply.getHeader('connection') === 'close' || isBodyParseError(error)) &&
    request.server.pool?.isDraining !== true && !request.server.stopAnnounced) {
    // What the client asked for, said: with the header removed Node writes none, and would
    // close for a client that asked to close, or keep an HTTP/1.0 one, without telling it.
    const keepAlive = reply.raw.shouldKeepAlive
    reply.header('connection', keepAlive ? 'keep-alive' : 'close')
    // And how long it may idle, as Node says on every answer it frames itself, and leaves
    // out once `connection` is set for it: clients that size their idle pool from it lost it
    // after exactly these errors.
    const idleMs = request.server.server.keepAliveTimeout
    if (keepAlive && idleMs > 0) reply.header('keep-alive', `timeout=${Math.floor(idleMs / 1000)}`)
  }
}

const kBodyParseError = Symbol('pyfleet.bodyParseError')

/**
 * Marks an error raised by parsing a body off the content-type parser (the offload
 * thread parses large bodies: offload/offloader.ts), so that its answer is the one a
 * content-type parser's error gets (keepOrClose), whichever thread parsed the body.
 */
export function markAsBodyParseError (error: Error): void {
  (error as Error & { [kBodyParseError]?: true })[kBodyParseError] = true
}

function isBodyParseError (error: Error): boolean {
  return (error as Error & { [kBodyParseError]?: true })[kBodyParseError] === true
}

/**
 * HTTP/1.1 requires a Host header (RFC 9112 §3.2: a server MUST answer 400). Node's own
 * check answers with an empty 400 that has no x-request-id and no error body, so app.ts
 * turns it off (requireHostHeader: false) and this answers in the error shape, closing
 * the connection as Node did: a client that omits Host is not one to keep talking to.
 * The same section refuses a request with several Host lines, of any version: Node kept
 * the first, where a proxy in front may have routed by another. Content-Type and
 * Authorization, which are no lists either (RFC 9110 §5.3), are refused repeated too
 * (DUPLICATE_HEADER): Node kept the first, where a proxy or firewall in front may have
 * checked the body as the other type, or let the request through on the other token.
 */
export function singleHeaderError (request: FastifyRequest, reply: FastifyReply): Error | undefined {
  const raw = request.raw
  if (raw.headers.host === undefined) {
    if (raw.httpVersionMajor !== 1 || raw.httpVersionMinor !== 1) return undefined
    closeAfterAnswer(request, reply)
    return new MissingHostError()
  }
  const rawHeaders = raw.rawHeaders
  let hosts = 0
  let contentTypes = 0
  let authorizations = 0
  // Names and values alternate; the length test keeps the lower-casing to the few names it could match.
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    if (name.length === 4) {
      if (name.toLowerCase() === 'host') hosts++
    } else if (name.length === 12) {
      if (name.toLowerCase() === 'content-type') contentTypes++
    } else if (name.length === 13) {
      if (name.toLowerCase() === 'authorization') authorizations++
    }
  }
  if (hosts === 1 && contentTypes <= 1 && authorizations <= 1) return undefined
  // The body, if any, is not read: the connection cannot be reused after the answer.
  closeAfterAnswer(request, reply)
  if (hosts !== 1) return new DuplicateHostError(String(hosts))
  return contentTypes > 1 ? new DuplicateHeaderError('Content-Type', String(contentTypes)) : new DuplicateHeaderError('Authorization', String(authorizations))
}

/** Methods whose routes answer without reading a body. */
const BODYLESS_METHODS = new Set(['GET', 'HEAD'])

/**
 * A GET or HEAD that comes with a body (chunked, or a content-length) is answered
 * without reading it; Node would then read and discard whatever the client goes on
 * sending, up to REQUEST_BODY_TIMEOUT_MS. Its answer closes the connection instead.
 * (Decided before the answer, when the body has rarely arrived: a small one that has
 * costs the client its connection, which no client sending GET bodies can count on.)
 */
export function closeIfBodyIgnored (request: FastifyRequest, reply: FastifyReply): void {
  if (BODYLESS_METHODS.has(request.method) && hasBody(request)) closeAfterAnswer(request, reply)
}

/**
 * At shutdown, before the drain: the connection's last request yet parsed, if its answer
 * has not started, answers with `connection: close`, so that its client opens a new
 * connection for its next request instead of reusing this one just as the drain ends and
 * closes it (a reset, which a client cannot tell from a lost request). Only the latest:
 * closing after an earlier answer would lose the answers to requests pipelined behind it,
 * whose calls run (SPEC §1). Requests that arrive from now on are answered with
 * `connection: close` by Fastify itself, and none of them is admitted.
 */
export function closeWhenAnswered (socket: Socket, noneRunBehind = false): void {
  const latest = (socket as Numbered)[kLatestResponse]
  if (latest === undefined || latest.headersSent) return
  // Draining, not noted in closingAfter: a request that arrives behind it now is no call (the
  // pool refuses it; Fastify answers it with connection: close too). During SHUTDOWN_DELAY_MS
  // (`noneRunBehind`) the pool still runs calls, and one pipelined behind would run with its
  // answer never written: noted, it is not run (closingConnectionError).
  latest.setHeader('connection', 'close')
  const sequence = (socket as Numbered)[kSequence]
  if (noneRunBehind && sequence !== undefined && !closingAfter.has(socket)) closingAfter.set(socket, sequence)
}

/**
 * During SHUTDOWN_DELAY_MS (the lame duck): the answer closes its connection. A load balancer
 * that stops routing to this replica stops only new connections: kube-proxy's ClusterIP, and
 * any client's pool of keep-alive connections, went on sending on the old ones until the drain
 * closed them, and then lost a request to a reset or a 503. Told to close now, the client
 * opens its next connection through the load balancer, to another replica. A request
 * pipelined behind this answer is not run (closingConnectionError).
 */
export function closeForStop (request: FastifyRequest, reply: FastifyReply): void {
  reply.header('connection', 'close')
  if (!closingAfter.has(request.raw.socket)) closingAfter.set(request.raw.socket, sequenceOf(request))
}

function closeAfterAnswer (request: FastifyRequest, reply: FastifyReply): void {
  reply.header('connection', 'close')
  if (!closingAfter.has(request.raw.socket)) closingAfter.set(request.raw.socket, sequenceOf(request))
  // The body still arriving is read and dropped for a while, so that a client writing it
  // whole before it reads gets this answer, not a reset (lingering-close.ts).
  if (!request.raw.complete && hasBody(request)) lingerOnClose(request.raw.socket, declaredLength(request))
}
