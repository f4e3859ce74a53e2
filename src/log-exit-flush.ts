// The log's last write, at exit: what the destination still holds, written synchronously
// (the event loop is gone), but never waiting for ever on a stdout that takes nothing.
// It replaces sonic-boom's flushSync (pino calls it from its exit hook), which retries a
// full pipe (EAGAIN) and a pipe whose reader has gone (EPIPE) every 100 ms for ever, and
// skips the batch a retry is waiting to write, writing later lines ahead of it.

import { closeSync, constants, fstatSync, openSync, writeSync } from 'node:fs'
import type pino from 'pino'

/**
 * How long the exit's write waits for a stdout that takes nothing; each byte taken starts
 * it again. Long enough for a log collector that pauses (a slow disk, a busy node), short
 * beside a shutdown's grace period.
 */
const EXIT_STALL_MS = 5000
/** A pipe takes a write of at most this many bytes whole or not at all (PIPE_BUF on Linux). */
export const PIPE_BUF_BYTES = 4096
const RETRY_MS = 10
const sleeper = new Int32Array(new SharedArrayBuffer(4))

/** The parts of sonic-boom's state the exit's write reads and clears (sonic-boom 4). */
interface SonicBoomState {
  fd: number
  destroyed: boolean
  _bufs: Array<string | Buffer>
  _writingBuf: string | Buffer
  _writing: boolean
  _len: number
}

/** A write of `stream`'s through the thread pool is under way: a flush() now does nothing. */
export function isWriting (stream: ReturnType<typeof pino.destination>): boolean {
  return (stream as unknown as SonicBoomState)._writing
}

/**
 * Writes what `stream` holds, in order: the batch being written first, unless an async write
 * of it is under way right now (`retryPending` false while `_writing`: that write is the
 * thread pool's to finish). Waits out a full pipe while the reader makes progress, and gives
 * up after EXIT_STALL_MS without any, or at once on another error (the reader has gone). A
 * pipe gets whole lines where it can: writes end at a line break and stay within PIPE_BUF,
 * so what is left behind does not start with the rest of a line. Lines left behind are said
 * on stderr, unless stderr is the same stalled pipe. (One race is left: a retry sent in the
 * same turn of the event loop as the exit, and taken by the pipe, has its batch written twice.)
 */
export function flushAtExit (stream: ReturnType<typeof pino.destination>, retryPending: boolean): void {
  const state = stream as unknown as SonicBoomState
  if (state.destroyed || state.fd < 0) return
  const parts = state._writingBuf.length > 0 && (!state._writing || retryPending) ? [state._writingBuf, ...state._bufs] : [...state._bufs]
  // Taken from the stream before writing: nothing is written twice, whatever happens below.
  state._bufs = []
  state._writingBuf = ''
  state._len = 0
  let pending = Buffer.concat(parts.map((part) => typeof part === 'string' ? Buffer.from(part) : part))
  let progressAt = performance.now()
  let failedWith: string | undefined
  while (pending.length > 0) {
    try {
      pending = pending.subarray(writeSync(state.fd, pending, 0, wholeLines(pending)))
      progressAt = performance.now()
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'EAGAIN') failedWith = code ?? String(error)
      if (code !== 'EAGAIN' || performance.now() - progressAt >= EXIT_STALL_MS) break
      Atomics.wait(sleeper, 0, 0, RETRY_MS)
    }
  }
  if (pending.length > 0) sayLeftBehind(state.fd, pending, failedWith)
}

/** How many of `bytes` to write at once: up to the last line break within PIPE_BUF, or one whole longer line. */
function wholeLines (bytes: Buffer): number {
  if (bytes.length <= PIPE_BUF_BYTES) return bytes.length
  const lastBreak = bytes.lastIndexOf(0x0a, PIPE_BUF_BYTES - 1)
  if (lastBreak !== -1) return lastBreak + 1
  const firstBreak = bytes.indexOf(0x0a)
  return firstBreak === -1 ? bytes.length : firstBreak + 1
}

/**
 * The lines at level fatal among those left behind: the one line that says why the process
 * exits (an uncaught exception, last-resort.ts) must not be lost with the rest.
 */
function fatalLines (pending: Buffer): string {
  if (!pending.includes('"level":60,')) return ''
  return pending.toString('utf8').split('\n').filter((line) => line.startsWith('{"level":60,')).map((line) => `${line}\n`).join('')
}

/** `failedWith`: the error that ended the writes (ENOSPC, EPIPE), if not a stall. */
function sayLeftBehind (fd: number, pending: Buffer, failedWith?: string): void {
  try {
    const out = fstatSync(fd)
    const err = fstatSync(2)
    if (out.dev === err.dev && out.ino === err.ino) return // 2>&1: the same stalled pipe would hold the exit up
    // Through a description of its own, non-blocking: a stderr that is a stalled pipe too must not hold the exit up.
    const stderr = err.isFIFO() ? openSync('/proc/self/fd/2', constants.O_WRONLY | constants.O_NONBLOCK) : 2
    try {
      // The cause as it was: a full disk is not a reader that has gone.
      const why = failedWith === undefined ? `stdout took nothing for ${EXIT_STALL_MS} ms` : failedWith === 'EPIPE' ? 'its reader had gone (EPIPE)' : `writing to stdout failed (${failedWith})`
      writeSync(stderr, `pyfleet: ${pending.length} bytes of log lines not written at exit: ${why}\n${fatalLines(pending)}`)
    } finally {
      if (stderr !== 2) closeSync(stderr)
    }
  } catch { // stderr gone too: nothing more to say it with
  }
}
