// The HTTP connections open at shutdown, after the pool has drained. Node's
// server.close() destroys every connection it deems idle, and to Node a connection
// whose response has been ended is idle even while the response is still being
// flushed to a slow reader: that answer would be cut off. A connection still
// receiving a request (a stalled upload, or headers trickling in) is not idle, and
// would hold close() open, since Node stops enforcing its request timeouts once
// close() is called: only main.ts's backstop (exit 1) would end it. settle()
// deals with both before close() runs.

import type { Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

const POLL_MS = 50

/** The response a connection is on: Node links it to the socket as `_httpMessage`. */
function responseOf (socket: Socket): ServerResponse | undefined {
  return (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined
}

/**
 * An answer under way: started, or due (the request has all arrived, so its
 * handler may be about to answer), and not yet flushed.
 */
function isAnswering (socket: Socket): boolean {
  const response = responseOf(socket)
  return response !== undefined && !response.writableFinished && (response.headersSent || response.req.complete)
}

export interface Connections {
  /**
   * Waits (up to maxWaitMs) until every answer under way has been flushed, and
   * closes the connections with nothing to answer: idle, still sending headers, or
   * in the middle of a body (never admitted, and they never will be now); after
   * maxWaitMs, every connection. Runs after the drain, so no call is still running.
   */
  settle: (maxWaitMs: number) => Promise<void>
}

export function trackConnections (server: Server): Connections {
  // Socket -> when it was accepted.
  const sockets = new Map<Socket, number>()
  server.on('connection', (socket: Socket) => {
    sockets.set(socket, Date.now())
    socket.once('close', () => { sockets.delete(socket) })
  })
  /** The listener is still open while settle() waits: a connection younger than one round is left its chance to be answered (503). */
  const closeUnanswered = (minAgeMs: number): void => {
    const now = Date.now()
    for (const [socket, acceptedAt] of sockets) {
      if (now - acceptedAt >= minAgeMs && !isAnswering(socket)) socket.destroy()
    }
  }
  const closeAll = (): void => {
    for (const socket of sockets.keys()) socket.destroy()
  }
  const answering = (): boolean => {
    for (const socket of sockets.keys()) if (isAnswering(socket)) return true
    return false
  }
  return {
    async settle (maxWaitMs: number): Promise<void> {
      const deadline = Date.now() + maxWaitMs
      while (answering() && Date.now() < deadline) {
        closeUnanswered(POLL_MS)
        await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      }
      // Past the deadline an answer still being written is given up on: close() must
      // not wait for it (exit 0 within the grace periods, not the backstop's exit 1).
      if (answering()) closeAll()
      else closeUnanswered(0)
    }
  }
}
