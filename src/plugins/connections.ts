// The HTTP connections open at shutdown, after the pool has drained. Node's
// server.close() destroys every connection it deems idle, and to Node a connection
// whose response has been ended is idle even while the response is still being
// flushed to a slow reader: that answer would be cut off. A connection still
// receiving a request (a stalled upload, or headers trickling in) is not idle, and
// would hold close() open, since Node stops enforcing its request timeouts once
// close() is called: only main.ts's backstop (exit 1) would end it. settle()
// deals with both before close() runs. Before the drain, closeAfterAnswers() has the
// answers already due say `connection: close`, so that few keep-alive clients are still
// using a connection when settle() closes it.
//
// While the server runs, the same list finds clients that stopped reading: an
// answer Node has handed to a socket stays in memory until the client takes it,
// and nothing else bounds that (the call is over, QUEUE_LIMIT does not see it,
// keep-alive timeouts do not apply mid-response). A socket whose pending bytes
// make no progress for RESPONSE_STALL_TIMEOUT_MS is closed. Progress is seen in
// steps: the kernel reports a socket writable again only once about a third of
// its send buffer has drained (~1 MB with Linux's defaults), so a reader slower
// than that per timeout looks stalled too; hence the long default (300 s). An answer that
// fits in the kernel's buffers whole is done to Node, and the connection idle: when it is
// let go (its keep-alive timeout, the shutdown) and its client has not read that answer's
// end, it is reset instead of closed (letGo, kernel-send-queue.ts).

import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import { closeWhenAnswered, isAnswering, responseOf } from '../connection-reuse.js'
import { closeByServer, resetByServer } from '../closed-by-server.js'
import { replyOf } from '../abandoned.js'
import { requestFields } from '../request-log.js'
import { LOOK_UP_FROM_BYTES, unsentInKernel } from '../kernel-send-queue.js'

const POLL_MS = 50
/** How often stalled writes are looked for, at most (a quarter of the limit when that is shorter). */
const STALL_SWEEP_MS = 5_000

/**
 * A request whose headers had arrived but not its whole body when shutdown closes its
 * connection: no answer, no call, and the process is about to exit (no metric will be
 * scraped), so its line is its only trace. An idle connection has none.
 */
function logCutOff (socket: Socket): void {
  const response = responseOf(socket)
  const reply = response === undefined || response.headersSent ? undefined : replyOf(response.req)
  if (reply === undefined) return
  reply.log.info(requestFields(reply.request, reply.request.pyfleetCall), 'request not run: the server shut down while its body arrived')
}

/** Bytes the socket has been given that the kernel has not taken yet (writableLength counts libuv's queue too). */
function pendingBytes (socket: Socket): number {
  return socket.writableLength
}

/**
 * A socket's progress in sending, for change detection only: it grows as libuv's
 * write queue drains into the kernel (bytesWritten also counts what is still queued).
 */
export function sendProgress (socket: Socket): number {
  const handle = (socket as Socket & { _handle?: { writeQueueSize?: number } | null })._handle
  return socket.bytesWritten - (handle?.writeQueueSize ?? 0)
}

export interface Connections {
  /**
   * At the start of the drain, or of SHUTDOWN_DELAY_MS: every connection's last request
   * answers with `connection: close` (when its answer has not started), so keep-alive
   * clients move to a new connection instead of reusing one that settle() is about to
   * close. `noneRunBehind` (the delay, while calls still run): a request pipelined behind
   * that answer is not run.
   */
  closeAfterAnswers: (noneRunBehind?: boolean) => void
  /**
   * Waits (up to maxWaitMs) until every answer under way has been flushed, and
   * closes the connections with nothing to answer: idle, still sending headers, or
   * in the middle of a body (never admitted, and they never will be now); after
   * maxWaitMs, every connection. Runs after the drain, so no call is still running.
   */
  settle: (maxWaitMs: number) => Promise<void>
  /** Stops looking for stalled writes (the server is closing). */
  stop: () => void
  /** Client connections open now (pyfleet_http_connections). */
  readonly open: number
}

interface Stall { flushed: number, since: number }

/**
 * The id of the request whose answer a connection is writing, while its reply is known
 * (abandoned.ts): the raw response's own headers do not hold it, Fastify writes them at once.
 */
function requestIdOn (socket: Socket): string | undefined {
  const response = responseOf(socket)
  return response === undefined ? undefined : replyOf(response.req)?.request.id
}

export function trackConnections (server: Server, stallTimeoutMs: number, log: FastifyBaseLogger): Connections {
  // Socket -> when it was accepted.
  const sockets = new Map<Socket, number>()
  server.on('connection', (socket: Socket) => {
    sockets.set(socket, Date.now())
    socket.once('close', () => { sockets.delete(socket) })
  })
  /** Connections being let go (letGo), looked up once, and their lookups, which settle() waits for: close() would destroy them first. */
  const lettingGo = new Map<Socket, Promise<void>>()
  /**
   * Closes a connection that is idle to Node, on its keep-alive timeout or at shutdown:
   * reset instead when the kernel still holds part of an answer its client has not read
   * (kernel-send-queue.ts), so that those bytes do not stay in an orphaned socket. `why`
   * names the moment for the log. On a keep-alive timeout, a connection that sends a
   * request while it is looked up is left open: its timeout starts again after the answer.
   */
  const letGo = (socket: Socket, close: (socket: Socket) => void, why: 'keep-alive' | 'shutdown'): void => {
    if (lettingGo.has(socket) || socket.destroyed) return
    if (socket.bytesWritten < LOOK_UP_FROM_BYTES) { close(socket); return }
    const readBefore = socket.bytesRead
    lettingGo.set(socket, unsentInKernel(socket).catch(() => 0).then((unsent) => {
      lettingGo.delete(socket)
      if (socket.destroyed || (why === 'keep-alive' && socket.bytesRead !== readBefore)) return
      if (unsent === 0) { close(socket); return }
      const when = why === 'keep-alive' ? 'its keep-alive timeout (KEEP_ALIVE_TIMEOUT_MS) ran out' : 'the server shut down'
      log.warn({ remoteAddress: socket.remoteAddress, unsentBytes: unsent }, `resetting a connection whose client had not read the end of its last answer when ${when}: the kernel still held ${unsent} bytes of it`)
      resetByServer(socket)
    }))
  }
  // Node destroys a connection whose keep-alive timeout runs out unless the server listens for it.
  server.on('timeout', (socket: Socket) => { letGo(socket, (idle) => idle.destroy(), 'keep-alive') })
  /** The listener is still open while settle() waits: a connection younger than one round is left its chance to be answered (503). */
  const closeUnanswered = (minAgeMs: number): void => {
    const now = Date.now()
    for (const [socket, acceptedAt] of sockets) {
      if (now - acceptedAt >= minAgeMs && !isAnswering(socket) && !lettingGo.has(socket)) {
        logCutOff(socket)
        letGo(socket, closeByServer, 'shutdown')
      }
    }
  }
  const closeAll = (): void => {
    for (const socket of sockets.keys()) letGo(socket, closeByServer, 'shutdown')
  }
  const answering = (): boolean => {
    for (const socket of sockets.keys()) if (isAnswering(socket)) return true
    return false
  }
  // Socket -> its flushed count when it was first seen stuck, and when that was.
  const stalls = new Map<Socket, Stall>()
  const closeStalled = (): void => {
    const now = Date.now()
    for (const socket of sockets.keys()) {
      if (pendingBytes(socket) === 0) { stalls.delete(socket); continue }
      const flushed = sendProgress(socket)
      const stall = stalls.get(socket)
      if (stall === undefined || stall.flushed !== flushed) stalls.set(socket, { flushed, since: now })
      else if (now - stall.since >= stallTimeoutMs) {
        stalls.delete(socket)
        // The request's own line said 200 already: Node had taken the whole answer.
        const requestId = requestIdOn(socket)
        log.warn({ requestId, remoteAddress: socket.remoteAddress, unsentBytes: pendingBytes(socket), stalledMs: now - stall.since }, 'closing a connection whose client stopped reading its answer (RESPONSE_STALL_TIMEOUT_MS)')
        resetByServer(socket)
      }
    }
    for (const socket of stalls.keys()) if (!sockets.has(socket)) stalls.delete(socket)
  }
  const sweep = stallTimeoutMs > 0 ? setInterval(closeStalled, Math.min(STALL_SWEEP_MS, Math.max(100, Math.floor(stallTimeoutMs / 4)))) : undefined
  sweep?.unref()
  return {
    get open () { return sockets.size },
    stop () { clearInterval(sweep) },
    closeAfterAnswers (noneRunBehind = false) {
      for (const socket of sockets.keys()) closeWhenAnswered(socket, noneRunBehind)
    },
    async settle (maxWaitMs: number): Promise<void> {
      const deadline = Date.now() + maxWaitMs
      while (answering() && Date.now() < deadline) {
        closeUnanswered(POLL_MS)
        await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      }
      // Past the deadline an answer still being written is given up on: close() must
      // not wait for it (exit 0 within the grace periods, not the backstop's exit 1).
      // Its request's line said 200 already: this says it was cut.
      if (answering()) {
        for (const socket of sockets.keys()) {
          if (!isAnswering(socket)) continue
          const requestId = requestIdOn(socket)
          log.warn({ requestId, remoteAddress: socket.remoteAddress, unsentBytes: pendingBytes(socket) }, 'closing a connection whose answer was still being written when the shutdown\'s grace ran out (SHUTDOWN_GRACE_MS)')
          // Reset: what the kernel still held of the answer would otherwise outlive the process, in an orphaned socket.
          resetByServer(socket)
        }
        closeAll()
      } else closeUnanswered(0)
      await Promise.all(lettingGo.values())
    }
  }
}
