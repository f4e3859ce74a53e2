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
 * clients this is for send a content-length. Never past 64 MiB.
 */
const LINGER_MAX_BYTES = 64 * 1024 * 1024
const LINGER_CHUNKED_BYTES = 4 * 1024 * 1024
const LINGER_SLACK_BYTES = 64 * 1024
const CHECK_EVERY_MS = 250

const kLingering = Symbol('pyfleet.lingering')
type Lingering = Socket & { [kLingering]?: true }

/**
 * Makes `socket` linger when Node closes it after the current answer. Node ends a
 * connection whose answer says `connection: close` with socket.destroySoon(), which
 * destroys it as soon as the answer is flushed; this socket's own destroySoon half-closes
 * it instead, and destroys it once the client has gone quiet or the bounds above are reached.
 * `declaredLength`: the request's content-length, undefined for a chunked body.
 */
export function lingerOnClose (socket: Socket, declaredLength: number | undefined): void {
  const maxBytes = declaredLength === undefined ? LINGER_CHUNKED_BYTES : Math.min(LINGER_MAX_BYTES, declaredLength + LINGER_SLACK_BYTES)
  const lingering = socket as Lingering
  if (lingering[kLingering] === true) return
  lingering[kLingering] = true
  socket.destroySoon = function destroySoonLingering (this: Socket) {
    if (this.destroyed) return
    this.end()
    const startBytes = this.bytesRead
    const startedAt = Date.now()
    let lastBytes = startBytes
    let quietSince = startedAt
    const check = setInterval(() => {
      const now = Date.now()
      if (this.bytesRead !== lastBytes) { lastBytes = this.bytesRead; quietSince = now }
      if (now - quietSince >= LINGER_IDLE_MS || now - startedAt >= LINGER_MAX_MS || this.bytesRead - startBytes > maxBytes) this.destroy()
    }, CHECK_EVERY_MS)
    check.unref()
    this.once('close', () => { clearInterval(check) })
  }
}
