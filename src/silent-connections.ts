// Connections that never send a byte, on PROBE_PORT's listener. Node closes them once its
// limit on headers has passed, but only when it next looks (connectionsCheckingInterval:
// 30 s by default): a review held every one of PROBE_PORT's places with idle sockets and
// no probe was answered for 30 s. The listener looks every second, and this closes each such
// connection at its own deadline besides, whatever Node's bookkeeping. (The main server's
// limits are REQUEST_BODY_TIMEOUT_MS's, checked as app.ts sets them.)

import type { Server } from 'node:http'
import type { Socket } from 'node:net'

/**
 * Closes a connection of `server` that has sent nothing `ms` after it was accepted (and
 * tells `onClosed`).
 * Read through bytesRead, not a 'data' listener: Node's HTTP parser consumes a TCP socket's
 * handle directly, so 'data' is never emitted for it.
 */
export function closeSilentConnections (server: Server, ms: number, onClosed?: () => void): void {
  server.on('connection', (socket: Socket) => {
    const timer = setTimeout(() => {
      if (socket.bytesRead === 0 && !socket.destroyed) {
        socket.destroy()
        onClosed?.()
      }
    }, ms)
    timer.unref()
    socket.once('close', () => { clearTimeout(timer) })
  })
}
