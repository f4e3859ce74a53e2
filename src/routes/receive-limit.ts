// RECEIVE_LIMIT_BYTES: a bound on the request-body bytes being received at once,
// across all connections. Each connection may upload one body of up to
// BODY_LIMIT_BYTES, and a body is held in memory as it arrives; without this,
// a thousand connections each sending 16 MiB slowly would hold 16 GB before any
// call could be queued (QUEUE_LIMIT_BYTES counts a body only once it has all
// arrived and its call waits).
//
// A body is counted from the moment its reading begins (the task route's
// preParsing hook, once the task is known) until it has all arrived or its
// request ends otherwise, by the bytes that have arrived: a client that declares
// 16 MiB and sends nothing holds nothing, and must not keep others out. A body
// whose declared length would pass the limit is refused before it is uploaded
// (with Expect: 100-continue, before it is even sent); one whose bytes pass it as
// they arrive, while others are held, is refused then. One body alone may always
// be received, as one call alone may always wait: the limit never refuses a body
// that BODY_LIMIT_BYTES accepts on an idle server. A large body that goes on to
// wait for the offload thread stays counted until the thread has parsed it
// (holdArrived): it is still held as bytes, also while it is parsed.
//
// Bodies of up to SMALL_BODY_BYTES are not counted at all: they arrive in a packet
// or two, counting them cost every small request about 5 % of Node's CPU in paired
// runs (listeners on its request, response and socket), and what they can hold is
// bounded by the connections: 16 KiB each.

import { Transform, type Readable } from 'node:stream'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ReceiveFullError, withExtras } from '../errors.js'
import { ChunkGatherer } from './chunk-gatherer.js'

/** Bodies up to this size (declared) are not counted; larger and chunked ones are, as their bytes arrive. */
export const SMALL_BODY_BYTES = 16 * 1024

/** The part of the count one request holds, given back once (release) when its request ends or its body is dropped. */
interface Held { bytes: number, released: boolean, release: () => void, readonly request: IncomingMessage }

export class ReceiveLimit {
  readonly #limitBytes: number
  readonly #bodyLimitBytes: number
  readonly #onRefused: () => void
  #bytes = 0
  /** The part of #bytes that is bodies waiting for the offload thread or being parsed on it (for the refusal's wording). */
  #arrivedBytes = 0

  /**
   * `limitBytes` 0: no limit (nothing is counted); `bodyLimitBytes`: the bodies Fastify
   * refuses with 413 before reading them; `onRefused`: counts a refusal (metrics).
   */
  constructor (limitBytes: number, bodyLimitBytes: number, onRefused: () => void) {
    this.#limitBytes = limitBytes
    this.#bodyLimitBytes = bodyLimitBytes
    this.#onRefused = onRefused
  }

  /** Body bytes counted now: the bytes of bodies over SMALL_BODY_BYTES (or chunked) received so far, and of bodies waiting for the offload thread or being parsed on it. */
  get bytes (): number { return this.#bytes }
  get limitBytes (): number { return this.#limitBytes }

  /**
   * Called before a body is read: returns the stream to read it from (the same
   * one for a small body; for a larger or chunked one, a stream that counts its
   * bytes as they pass). Throws RECEIVE_FULL when the body's declared length would
   * take the count past the limit.
   */
  enter (request: FastifyRequest, reply: FastifyReply, payload: Readable): Readable {
    const raw = request.raw
    // Gone already: its 'close' has been emitted, and nothing will be read.
    if (this.#limitBytes === 0 || raw.destroyed) return payload
    const length = request.headers['content-length']
    if (length !== undefined) {
      const bytes = Number(length)
      // A small body, or one Fastify answers 413 for without reading it (a 503 must not hide that 413).
      if (!Number.isSafeInteger(bytes) || bytes <= SMALL_BODY_BYTES || bytes > this.#bodyLimitBytes) return payload
      this.#check(bytes, 0)
    } else if (raw.headers['transfer-encoding'] === undefined) {
      return payload
    }
    return this.#counting(payload, this.#hold(raw, reply.raw))
  }

  /**
   * Each chunk is counted before it is passed on, and refused when it would take the count
   * past the limit; small chunks are passed on gathered (chunk-gatherer.ts), so that what
   * the parser keeps is the bytes, not an object per chunk.
   */
  #counting (payload: Readable, held: Held): Readable {
    const gatherer = new ChunkGatherer((chunk) => { counter.push(chunk) })
    const counter: Transform = new Transform({
      transform: (chunk: Buffer, _encoding, next) => {
        // Past BODY_LIMIT_BYTES Fastify answers 413 (at once: what was gathered goes with it)
        // and drops what it read: the rest of the body flows past unread, nobody keeps it.
        if (held.released) { gatherer.flush(); next(null, chunk); return }
        if (held.bytes + chunk.length > this.#bodyLimitBytes) {
          held.release()
          gatherer.flush()
          next(null, chunk)
          return
        }
        try {
          this.#check(chunk.length, held.bytes)
        } catch (error) {
          next(error as Error)
          return
        }
        held.bytes += chunk.length
        this.#bytes += chunk.length
        gatherer.add(chunk)
        next()
      },
      flush: (done) => {
        gatherer.flush()
        done()
      }
    })
    // Not pipeline(): a refusal must leave the request alone (destroying it would
    // close the connection before the 503 is sent); pipe() just stops reading. A client
    // that leaves mid-body must still end the counter, or the parser would wait for ever.
    payload.pipe(counter)
    payload.once('close', () => {
      if (!payload.readableEnded) counter.destroy(new Error('the client closed the connection before its body had all arrived'))
    })
    // A refusal, or a client gone: the parser drops what it read, so the share is given back
    // now, and the request reads no more into the counter. Listening also keeps an error that
    // comes after the parser has stopped listening (it answered 413 and left) from being
    // unhandled, which would end the process.
    counter.on('error', () => {
      payload.unpipe(counter)
      held.release()
    })
    return counter
  }

  /**
   * Counts a body that has arrived and waits to be converted on the offload thread
   * (offload/offloader.ts): held as bytes as it was while it arrived, so it stays in the
   * same bound. The share it held while it arrived, if it is still held (its request has
   * not closed yet), is kept as it is: it was checked then. Otherwise it is counted anew,
   * and throws RECEIVE_FULL if it would take the count past the limit while other bodies
   * are counted (one alone always goes). Returns the function that gives it back.
   */
  holdArrived (bytes: number, request?: IncomingMessage): () => void {
    if (this.#limitBytes === 0) return () => {}
    const share = request === undefined ? undefined : shareOf(request)
    let held: number
    if (share !== undefined && !share.released) {
      held = share.bytes
      share.bytes = 0 // taken over: its release (listeners off) no longer gives the bytes back
      share.release()
    } else {
      this.#check(bytes, 0)
      this.#bytes += bytes
      held = bytes
    }
    this.#arrivedBytes += held
    return () => {
      this.#bytes -= held
      this.#arrivedBytes -= held
      held = 0
    }
  }

  /** Throws RECEIVE_FULL if `bytes` more would take the count past the limit, unless the request's own bytes are all there is. */
  #check (bytes: number, alreadyHeld: number): void {
    const others = this.#bytes - alreadyHeld
    if (others === 0 || this.#bytes + bytes <= this.#limitBytes) return
    this.#onRefused()
    const what = this.#arrivedBytes > 0 ? 'being received or waiting to be parsed' : 'being received'
    const message = `${others} bytes of other request bodies are ${what}, and this one's ${alreadyHeld + bytes} would pass RECEIVE_LIMIT_BYTES=${this.#limitBytes}; retry later`
    throw withExtras(new ReceiveFullError(message), { retryAfterSeconds: 1 })
  }

  /**
   * A request's share, given back once, at the first of: its request closes (Node
   * closes it once its body has been read to the end, or when the client leaves);
   * its response closes (answered while the body was still arriving: the request then
   * never closes); its connection ends before the body has all arrived (no more of it
   * can come; and a request pipelined behind an answer still being written gets no
   * 'close' of its own when the client leaves) or closes. A refusal mid-body, or the
   * body passing BODY_LIMIT_BYTES, gives it back at once (#counting).
   */
  #hold (request: IncomingMessage, response: ServerResponse): Held {
    const release = (): void => {
      if (held.released) return
      held.released = true
      this.#bytes -= held.bytes
      held.bytes = 0
      request.off('close', release)
      response.off('close', release)
      heldOn(request.socket)?.delete(held)
    }
    const held: Held = { bytes: 0, released: false, release, request }
    request.once('close', release)
    response.once('close', release)
    watchConnection(request.socket).add(held)
    return held
  }
}

// A connection's held shares, and its one pair of listeners. A deep pipeline may
// hold many shares on one socket: a pair per request would pass Node's listener-leak
// warning, and raising the socket's limit would hide real leaks of other listeners.
const HELD = Symbol('pyfleet.receiveLimit.held')
type Watched = Socket & { [HELD]?: Set<Held> }

function heldOn (socket: Socket): Set<Held> | undefined {
  return (socket as Watched)[HELD]
}

/** The share a request holds while its body arrives, if it holds one. */
function shareOf (request: IncomingMessage): Held | undefined {
  for (const held of heldOn(request.socket) ?? []) if (held.request === request) return held
  return undefined
}

function watchConnection (socket: Socket): Set<Held> {
  const watched = socket as Watched
  let shares = watched[HELD]
  if (shares !== undefined) return shares
  shares = new Set()
  watched[HELD] = shares
  const all = shares
  // Copies: release() deletes from the set being walked.
  socket.once('end', () => { for (const held of [...all]) if (!held.request.complete) held.release() })
  socket.once('close', () => { for (const held of [...all]) held.release() })
  return shares
}
