// Reads a request body into one Buffer, as Fastify's own `parseAs: 'buffer'` does, with
// its limits and its errors, but without its last step: Fastify keeps every chunk and
// copies them all into a new buffer when the body ends, in one turn of the event loop
// (~30 ms for 16 MiB, most of it the kernel mapping fresh pages), and holds the body
// twice meanwhile. A body that says its length is copied into one buffer of that length
// as it arrives instead: the same bytes copied once, spread over its arrival, and held
// once. That buffer is made once a quarter of the body has arrived (small bodies: at
// once), so what a body costs follows the bytes received, which RECEIVE_LIMIT_BYTES
// bounds, and not a length a client declares and never sends. A chunked body (no
// length) is gathered as Fastify gathers it.

import type { Readable } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import { errorCodes } from 'fastify'

type BodyDone = (error: Error | null, body?: Buffer) => void

/** A declared length up to this is given its buffer with the first bytes; a larger one once a quarter of it has arrived. */
const PREALLOCATE_BYTES = 64 * 1024

/**
 * Reads `payload` (the request's body as its preParsing hooks left it) whole, then calls
 * `done` once: with the body, or with Fastify's own errors for a body past `limit`
 * (413 FST_ERR_CTP_BODY_TOO_LARGE) or not of its declared length (400
 * FST_ERR_CTP_INVALID_CONTENT_LENGTH), or with the stream's error (400 unless it has a
 * status of its own: a RECEIVE_FULL refusal keeps its 503).
 */
export function readBody (request: FastifyRequest, payload: Readable, limit: number, done: BodyDone): void {
  const declared = Number(request.headers['content-length'])
  if (declared > limit) { done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()); return }
  const sized = Number.isSafeInteger(declared) && declared > 0
  /** The body's one buffer, once made; allocUnsafe: every byte is written before it is handed on (checked in onEnd). */
  let whole: Buffer | undefined
  const chunks: Buffer[] = []
  let received = 0

  const stop = (): void => {
    payload.removeListener('data', onData)
    payload.removeListener('end', onEnd)
    payload.removeListener('error', onEnd)
  }
  function onData (chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (received + bytes.length > limit || (sized && received + bytes.length > declared)) {
      stop()
      done(received + bytes.length > limit ? new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE() : new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH())
      return
    }
    if (whole === undefined && sized && (declared <= PREALLOCATE_BYTES || (received + bytes.length) * 4 >= declared)) {
      whole = Buffer.allocUnsafe(declared)
      let at = 0
      for (const chunk of chunks) at += chunk.copy(whole, at)
      chunks.length = 0
    }
    if (whole !== undefined) bytes.copy(whole, received)
    else chunks.push(bytes)
    received += bytes.length
  }
  function onEnd (error?: Error & { statusCode?: number }): void {
    stop()
    if (error !== undefined && error !== null) {
      if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400
      done(error)
      return
    }
    if (!Number.isNaN(declared) && received !== declared) { done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH()); return }
    // Always a buffer of the body's own: never a view over the socket's read buffer.
    done(null, whole ?? Buffer.concat(chunks, received))
  }

  payload.on('data', onData)
  payload.on('end', onEnd)
  payload.on('error', onEnd)
  payload.resume()
}
