// A connection that closes after an answer given before its request's body was read (a 404,
// 413 or 415 found first, RECEIVE_FULL, a GET with a body) goes on reading, and discarding,
// what the client still sends for a while before it closes: nginx's "lingering close".
//
// Closed at once, the socket was destroyed with the client's bytes unread in it, and the
// kernel answered them with a reset. A client that writes its whole body before it reads
// (Python's http.client and urllib, many others) then got BrokenPipeError or ECONNRESET
// instead of the 413 already waiting in its receive buffer: a review saw it from bodies of
// about 4 MB up, over loopback. The answer is sent and the write side closed (the client
// reads it, then end of stream) while the rest of the body is read and dropped (Node's
// parser discards a body nobody reads), within bounds, so that a client cannot keep the
// connection open by sending for ever.

import type { Socket } from 'node:net'

/** The connection closes once nothing has arrived for this long: a client that sent its body and reads its answer closes first. */
const LINGER_IDLE_MS = 2_000
/** And after this long, however much still arrives (nginx's lingering_time). */
const LINGER_MAX_MS = 30_000
/**
 * And past the body's declared length (with room for a request's head), or, for a chunked
 * body, past 4 MiB: discarding costs CPU, not memory, but is work for nothing, and the
 * clients this is for send a content-length. Never past 64 MiB (and what arrives between two looks).
 */
const LINGER_MAX_BYTES = 64 * 1024 * 1024
const LINGER_CHUNKED_BYTES = 4 * 1024 * 1024
const LINGER_SLACK_BYTES = 64 * 1024
/** How often the lingering connections are looked at: the bounds are this coarse (a quarter second's bytes past the length may be read). */
const CHECK_EVERY_MS = 250

const kLingering = Symbol('pyfleet.lingering')
type Lingering = Socket & { [kLingering]?: true }

/** A connection lingering now: when it began, its bytes then and when they last grew, and its byte bound. */
interface Linger {
  readonly startedAt: number
  readonly startBytes: number
  readonly maxBytes: number
  lastBytes: number
  quietSince: number
}

/** Every lingering connection, looked at by one timer (one per connection was 40,000 callbacks a second at MAX_CONNECTIONS). */
const lingering = new Map<Socket, Linger>()
let sweep: NodeJS.Timeout | undefined

function sweepLingering (): void {
  const now = Date.now()
  for (const [socket, linger] of lingering) {
    if (socket.bytesRead !== linger.lastBytes) { linger.lastBytes = socket.bytesRead; linger.quietSince = now }
    if (now - linger.quietSince >= LINGER_IDLE_MS || now - linger.startedAt >= LINGER_MAX_MS || socket.bytesRead - linger.startBytes > linger.maxBytes) socket.destroy()
  }
}

/**
 * Makes `socket` linger when Node closes it after the current answer. Node ends a
 * connection whose answer says `connection: close` with socket.destroySoon(), which
 * destroys it as soon as the answer is flushed; this socket's own destroySoon half-closes
 * it instead, and destroys it once the client has gone quiet or the bounds above are reached.
 * `declaredLength`: the request's content-length, undefined for a chunked body.
 */
export function lingerOnClose (socket: Socket, declaredLength: number | undefined): void {
  const marked = socket as Lingering
  if (marked[kLingering] === true) return
  marked[kLingering] = true
  const maxBytes = declaredLength === undefined ? LINGER_CHUNKED_BYTES : Math.min(LINGER_MAX_BYTES, declaredLength + LINGER_SLACK_BYTES)
  socket.destroySoon = function destroySoonLingering (this: Socket) {
    if (this.destroyed || lingering.has(this)) return
    this.end()
    const now = Date.now()
    lingering.set(this, { startedAt: now, startBytes: this.bytesRead, maxBytes, lastBytes: this.bytesRead, quietSince: now })
    this.once('close', () => {
      lingering.delete(this)
      if (lingering.size === 0) { clearInterval(sweep); sweep = undefined }
    })
    if (sweep === undefined) {
      sweep = setInterval(sweepLingering, CHECK_EVERY_MS)
      sweep.unref()
    }
  }
}
