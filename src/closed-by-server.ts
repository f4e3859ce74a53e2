// Which connections the server closed itself: one Node's parser could not go on with
// (the error handler's clientError answers it, 400 or 408, and closes it), one a
// shutdown closed with nothing to answer, one whose client stopped reading. A request
// whose body was cut off by such a close was not given up by its client, and has its
// record already (or, at shutdown, is the drain's doing): the error handler must not
// log and measure it as abandoned (status_code 499).

import type { Socket } from 'node:net'

const closedByServer = new WeakSet<Socket>()

/** Destroys `socket`, noting that the server closed it. */
export function closeByServer (socket: Socket, error?: Error): void {
  closedByServer.add(socket)
  socket.destroy(error)
}

/**
 * Resets `socket` (RST), noting that the server closed it: for an answer given up on while
 * still being sent (its client stopped reading, or the shutdown's grace ran out). A plain
 * close would leave the answer's last megabytes in the kernel's send buffer, in an orphaned
 * socket that outlives the process and goes on offering them to a reader that does not read,
 * and a client that read again later would get a body that just ends; with a reset the kernel
 * drops them at once, and the client reads ECONNRESET.
 */
export function resetByServer (socket: Socket): void {
  closedByServer.add(socket)
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy() // not a TCP socket (ERR_INVALID_HANDLE_TYPE): nothing to reset
  }
}

/** Whether the server closed `socket` (closeByServer), rather than its client. */
export function wasClosedByServer (socket: Socket): boolean {
  return closedByServer.has(socket)
}
