// Requests Node hands over outside its 'request' event (Expect headers, CONNECT)
// are passed to Fastify like any other, so that they too get an answer in the error
// shape with an x-request-id, a log line and a metric, instead of Node's bare 417 or
// a connection closed without a word. And transfer codings, which Node's parser
// accepts but does not undo.

import { ServerResponse, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyRequest } from 'fastify'
import { BadUrlError, ExpectationFailedError, UnsupportedTransferCodingError } from './errors.js'
import { latestResponseOf } from './connection-reuse.js'
import { queryStart } from './request-log.js'

export function routeUnusualRequests (server: Server): void {
  // Expect: 100-continue (curl sends it for bodies over 1 MB): Node would say "continue"
  // at once, and a client would upload a body only to be told it is too large, for a
  // task that does not exist, or compressed. The 100 goes out when something starts
  // reading the body (a readable's 'resume'), so every answer given before that (413 by
  // content-length, 404 and 415 from the task route's preParsing) costs no upload. Once
  // an answer is under way, Node resumes the request to discard its body: no 100 then.
  // A request that declares no body has nothing to hold back: its 100 goes out at once. Without
  // it Node closes the connection after the answer (it cannot tell that no body follows), and a
  // request pipelined behind it ran with its answer never sent.
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    if (declaresNoBody(request)) response.writeContinue()
    else request.once('resume', () => { if (!response.headersSent) response.writeContinue() })
    server.emit('request', request, response)
  })
  // Any other expectation: Node would answer a bare 417 itself. expectationError() answers it.
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    server.emit('request', request, response)
  })
  // CONNECT: Node hands the socket over as a tunnel and, with nobody listening, closes it
  // without a word. pyfleet is no proxy: the request gets a response like any other (a 404:
  // no route has CONNECT), on a connection that then closes, since Node reads no more from it.
  server.on('connect', (request: IncomingMessage, socket: Socket) => {
    const response = new ServerResponse(request)
    response.shouldKeepAlive = false
    response.once('finish', () => {
      response.detachSocket(socket)
      socket.destroySoon()
    })
    // Node takes its own 'error' listener off a socket it hands over: without one, a client
    // that resets (or an EPIPE writing to it) would be an uncaught 'error' and end the process.
    socket.on('error', () => { socket.destroy() })
    socket.once('close', () => { if (!response.writableFinished) response.destroy() })
    const earlier = latestResponseOf(socket)
    if (earlier === undefined || earlier.writableFinished) {
      response.assignSocket(socket)
    } else {
      // Pipelined behind answers still under way (assigning the socket now would throw
      // ERR_HTTP_SOCKET_ASSIGNED, uncaught): this answer waits, unassigned, as Node's own
      // pipelined answers do, and goes out after the last of them, the latest one parsed.
      earlier.once('finish', () => { if (!socket.destroyed) response.assignSocket(socket) })
    }
    server.emit('request', request, response)
  })
}

/** The client waits for a 100 Continue before it sends its body. */
export function expectsContinue (request: FastifyRequest): boolean {
  return request.headers.expect?.trim().toLowerCase() === '100-continue'
}

/**
 * RFC 9110 §10.1.1: an expectation the server cannot meet may be answered 417. Only
 * 100-continue is one HTTP/1.1 defines; ignoring another would act on a request whose
 * client made its handling conditional on something not done.
 */
export function expectationError (request: FastifyRequest): Error | undefined {
  const expect = request.headers.expect
  if (expect === undefined || expectsContinue(request)) return undefined
  return new ExpectationFailedError(JSON.stringify(expect.slice(0, 50)))
}

/**
 * A transfer coding other than chunked (`transfer-encoding: gzip, chunked`): Node's
 * parser takes the chunks apart but leaves the gzip, so the body would reach the task
 * as its compressed bytes, a wrong answer rather than an error. RFC 9112 §6.1: 501.
 */
export function transferCodingProblem (request: FastifyRequest): Error | undefined {
  const coding = request.headers['transfer-encoding']
  if (coding === undefined) return undefined
  const others = coding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'chunked')
  if (others.length === 0) return undefined
  return new UnsupportedTransferCodingError(`transfer coding ${JSON.stringify(others.join(', ').slice(0, 50))} is not supported; send the body with transfer-encoding: chunked alone, or with a content-length`)
}

/**
 * A query string with a malformed percent-escape (`%zz`) or escapes that are not UTF-8
 * (`%E9`, Latin-1's é): Fastify's parser keeps such a value as its raw characters, so
 * `?record=%E9l%E9ment` looked for an element of that literal name and answered 200 with
 * nothing found, a wrong answer rather than an error. A path that does not decode is a 400
 * FST_ERR_BAD_URL already; its query string is now one too. Only a query holding `%` is looked at.
 * The query starts where the router's does (find-my-way): at the first `?` or `#`, since
 * Node's parser lets a `#` through in a request target and `/x#record=%E9` was parsed so.
 */
export function undecodableQuery (request: FastifyRequest): Error | undefined {
  const url = request.url
  const start = queryStart(url)
  if (start === -1 || !url.includes('%', start)) return undefined
  for (const pair of url.slice(start + 1).split('&')) {
    if (!pair.includes('%')) continue
    try {
      decodeURIComponent(pair)
    } catch {
      const shown = pair.length > 60 ? `${pair.slice(0, 60)}...` : pair
      return new BadUrlError(`the query string does not percent-decode as UTF-8 at ${JSON.stringify(shown)}: encode each name and value as UTF-8 with encodeURIComponent (urllib.parse.quote), and a literal % as %25`)
    }
  }
  return undefined
}

/** No transfer-encoding, and no content-length or a zero one (Node's parser has checked it is digits). */
function declaresNoBody (request: IncomingMessage): boolean {
  const length = request.headers['content-length']
  return request.headers['transfer-encoding'] === undefined && (length === undefined || Number(length) === 0)
}
