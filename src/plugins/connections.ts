// The HTTP connections open at shutdown, after the pool has drained. Node's
// server.close() destroys every connection it deems idle, and to Node a connection
// whose response has been ended is idle even while the response is still being
// flushed to a slow reader: that answer would be cut off. A connection still
// receiving its request (a stalled upload) is not idle, and would hold close()
// until REQUEST_BODY_TIMEOUT_MS. settle() deals with both before close() runs.

import type { Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

const POLL_MS = 50

/** The response a connection is on: Node links it to the socket as `_httpMessage`. */
function responseOf (socket: Socket): ServerResponse | undefined {
  return (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage ?? undefined
}

/**
 * Nothing to wait for on this connection: it is between requests, still sending
 * headers, or stalled in a body (never admitted, and it never will be now).
 */
function isUnanswered (socket: Socket): boolean {
  const response = responseOf(socket)
  return response === undefined || (!response.req.complete && !response.headersSent)
}

/** A received request whose answer is not flushed yet. */
function isAnswering (socket: Socket): boolean {
  const response = responseOf(socket)
  return response !== undefined && response.req.complete && !response.writableFinished
}

export interface Connections {
  /**
   * Closes connections with nothing to answer (stalled uploads included), and waits
   * (up to maxWaitMs) until every answer under way has been flushed. Runs after the
   * drain, so no call is still running.
   */
  settle: (maxWaitMs: number) => Promise<void>
}

export function trackConnections (server: Server): Connections {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => { sockets.delete(socket) })
  })
  const closeUnanswered = (): void => {
    for (const socket of sockets) if (isUnanswered(socket)) socket.destroy()
  }
  const answering = (): boolean => {
    for (const socket of sockets) if (isAnswering(socket)) return true
    return false
  }
  return {
    async settle (maxWaitMs: number): Promise<void> {
      const deadline = Date.now() + maxWaitMs
      // The listener is still open: check again each round for uploads begun meanwhile.
      do {
        closeUnanswered()
        if (!answering()) return
        await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      } while (Date.now() < deadline)
      closeUnanswered()
    }
  }
}
