// Where the server's log lines go: stdout, through a buffer that is written
// when it holds 3 KiB or every 100 ms, and that drops lines (counted, and
// reported once stdout is read again) instead of growing without bound.

import { constants, fstatSync, openSync } from 'node:fs'
import { Socket } from 'node:net'
import pino from 'pino'
import { flushAtExit, isWriting, PIPE_BUF_BYTES } from './log-exit-flush.js'
import type { FastifyBaseLogger } from 'fastify'

/**
 * Lines are written together once this much is buffered. One write per line (pino's
 * default) is one trip through libuv's thread pool per request at LOG_LEVEL=info, and
 * each trip wakes a thread: ~7 µs of Node's CPU per echo request on the benchmark
 * machine, about 6 % of its throughput.
 */
const LOG_BATCH_BYTES = 3072
/** A batch short of LOG_BATCH_BYTES is written after this long: a quiet server's lines still show at once, to a reader. */
const LOG_FLUSH_INTERVAL_MS = 100
/**
 * Lines waiting for stdout at most (a stalled reader: a paused terminal, a log
 * collector that fell behind). Past it new lines are dropped: memory stays bounded and
 * requests are never held up by logging. At a busy server's ~2 MB of lines a second,
 * this is several seconds of a reader's stall.
 */
const LOG_BACKLOG_MAX_BYTES = 16 * 1024 * 1024
/** Dropped lines are reported in one warning this long after the first drop. */
const DROP_REPORT_DELAY_MS = 1000

export interface LogDestinationOptions {
  /** A file descriptor or path; stdout by default. */
  dest?: number | string
  /** LOG_BACKLOG_MAX_BYTES by default (tests use less). */
  backlogMaxBytes?: number
}

/** The destinations made in this process, for flushLogs. */
const destinations = new Set<LogDestination>()

/**
 * Waits until every destination has written what it holds, or `maxWaitMs`, whichever
 * comes first (a stdout nobody reads must not hold up what comes next). For the one
 * line a failed start writes to stderr: after the log lines that explain it, not
 * before, when both go to one place (`2>&1`, a container's log).
 */
export async function flushLogs (maxWaitMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const flushed = Promise.all([...destinations].map(async (destination) => {
    // Twice: asked while a write is under way, sonic-boom calls back once that write is done,
    // leaving what was buffered meanwhile (under a batch's size) unwritten. "worker exited" came
    // after the failed start's line that way on a loaded machine (CI). The second writes it.
    await flushOnce(destination.stream)
    await flushOnce(destination.stream)
  }))
  await Promise.race([flushed, new Promise<void>((resolve) => { timer = setTimeout(resolve, maxWaitMs) })])
  clearTimeout(timer)
}

async function flushOnce (stream: ReturnType<typeof pino.destination>): Promise<void> {
  await new Promise<void>((resolve) => {
    try {
      stream.flush(() => { resolve() })
    } catch { // ended or destroyed: nothing to wait for
      resolve()
    }
  })
}

export class LogDestination {
  readonly stream: ReturnType<typeof pino.destination>
  readonly #backlogMaxBytes: number
  #unreported = 0
  #report: NodeJS.Timeout | undefined
  /** stdout's reader has gone (EPIPE): lines are counted as dropped, not written. */
  #readerGone = false
  /** The error writes to stdout fail with (ENOSPC), while they do: said once on stderr. */
  #failing: string | undefined
  #countDropped: ((lines: number) => void) | undefined

  constructor ({ dest = stdoutForWrites(), backlogMaxBytes = LOG_BACKLOG_MAX_BYTES }: LogDestinationOptions = {}) {
    this.#backlogMaxBytes = backlogMaxBytes
    // A retry of a full pipe is waiting (sonic-boom retries EAGAIN after 100 ms) rather than a
    // write under way: the exit's write may then write that batch itself (log-exit-flush.ts).
    let retryPending = false
    const retryEAGAIN = (): boolean => { retryPending = true; return true }
    // No write longer than PIPE_BUF (a longer line alone excepted): a pipe takes such a write whole
    // or not at all, and sonic-boom's batches hold whole lines, so a pipe never holds half a line,
    // even when what follows is never written (a reader gone for good at exit).
    const stream = pino.destination({ dest, sync: false, minLength: LOG_BATCH_BYTES, maxWrite: PIPE_BUF_BYTES, maxLength: backlogMaxBytes, retryEAGAIN })
    this.stream = stream
    stream.on('write', () => {
      retryPending = false
      if (this.#failing !== undefined) {
        process.stderr.write(`pyfleet: log lines are written to stdout again (they had failed with ${this.#failing})\n`)
        this.#failing = undefined
      }
    })
    // What pino's exit hook calls: a bounded write, in order (log-exit-flush.ts).
    stream.flushSync = (): void => { flushAtExit(stream, retryPending) }
    // A short batch is written on a timer, only when a line came since the last one: sonic-boom's
    // own periodicFlush writes (an empty write through the thread pool) every time, idle or not.
    let written = false
    const write = stream.write.bind(stream)
    const writeOrCount = (data: string): boolean => {
      if (this.#readerGone) { this.#countDropped?.(countLines(data)); return true }
      written = true
      return write(data)
    }
    stream.write = writeOrCount
    // The reader of stdout has gone for good (a `| head` that ended, a log shipper that
    // died): sonic-boom says so once, and pino then makes write() a no-op, so every later
    // line vanished without a count or a word. Said once on stderr instead, and every line
    // from then on counted as dropped (pyfleet_log_dropped_lines_total).
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') { this.#writeFailed(error); return }
      if (this.#readerGone) return
      this.#readerGone = true
      // pino's own listener, called before this one, has made write() a no-op: counted instead.
      stream.write = writeOrCount
      process.stderr.write('pyfleet: stdout was closed by its reader (EPIPE): log lines are lost from now on, counted in pyfleet_log_dropped_lines_total\n')
    })
    const flusher = setInterval(() => {
      if (!written) return
      // A flush while a write is under way does nothing (sonic-boom returns), and that write
      // leaves what was buffered behind it for the next line, however long that takes (an
      // ERROR line held for seconds on a quiet server): the next turn tries again.
      if (isWriting(stream)) return
      written = false
      try {
        stream.flush()
      } catch { // destroyed without a 'close' yet: the close below ends the timer
      }
    }, LOG_FLUSH_INTERVAL_MS).unref()
    destinations.add(this)
    stream.once('close', () => {
      clearInterval(flusher)
      destinations.delete(this)
    })
  }

  /**
   * A write failed for another reason than a full pipe or a reader gone: a full disk under a
   * file (ENOSPC), an I/O error. sonic-boom keeps the batch and writes it again with the next
   * line; lines wait in the backlog meanwhile, and past it are dropped and counted. Nothing
   * said so: a log to /var/log on a full disk went quiet, and the exit blamed a stall.
   */
  #writeFailed (error: NodeJS.ErrnoException): void {
    if (this.#failing !== undefined) return
    this.#failing = error.code ?? error.message
    process.stderr.write(`pyfleet: writing log lines to stdout failed (${this.#failing}: ${error.message}): they are kept, up to ${this.#backlogMaxBytes} bytes, and written again with the next line; past that, dropped and counted in pyfleet_log_dropped_lines_total\n`)
  }

  /**
   * Counts lines the backlog had no room for, and logs how many, once a second at most
   * (into the same stream: if it still has no room, that line is dropped and counted too).
   */
  watch (log: FastifyBaseLogger, countDropped: (lines: number) => void): void {
    this.#countDropped = countDropped
    this.stream.on('drop', (data: string | Buffer) => {
      const lines = countLines(data)
      countDropped(lines)
      this.#unreported += lines
      this.#report ??= setTimeout(() => {
        this.#report = undefined
        const dropped = this.#unreported
        this.#unreported = 0
        log.warn({ droppedLines: dropped, backlogMaxBytes: this.#backlogMaxBytes }, `${dropped} log line(s) dropped: stdout was not read as fast as the server wrote`)
      }, DROP_REPORT_DELAY_MS).unref()
    })
  }
}

/**
 * Where stdout's lines are written, so that no write to it can block: a write to a stdout
 * nobody reads then waits on a timer (sonic-boom retries every 100 ms) instead of holding
 * one of libuv's threads in write(2), and Node's exit waits for those threads, so such a
 * write kept a stopped server from ever exiting (log-exit-flush.ts bounds pino's own write
 * at exit the same way). Start-up only: sync calls.
 * - A pipe: a description of that pipe of our own, opened non-blocking. The pipe's shared
 *   description keeps its flags: the shell or the container runtime that holds it sees no change.
 * - A socket (what Node's spawn() and systemd's journal give a process as its stdout): it
 *   cannot be opened again, so its own description is made non-blocking, as Node makes any
 *   socket it writes to, its own process.stdout included. On Node 24 the exit hung there
 *   every time; on Node 20 when the timing fell so.
 * - Files and terminals keep fd 1.
 */
function stdoutForWrites (): number {
  try {
    const stdout = fstatSync(1)
    if (stdout.isSocket()) {
      stdoutSocket ??= new Socket({ fd: 1, readable: false, writable: true }).unref()
      return 1
    }
    if (!stdout.isFIFO()) return 1
    return openSync('/proc/self/fd/1', constants.O_WRONLY | constants.O_NONBLOCK)
  } catch { // no /proc, or a FIFO whose reader has gone (ENXIO): the blocking fd as before
    return 1
  }
}

/**
 * A handle on a socket stdout, never written to: opening it is what makes fd 1 non-blocking
 * (libuv's uv_pipe_open). Kept for the process's life: a handle collected would close fd 1.
 */
let stdoutSocket: Socket | undefined

function countLines (data: string | Buffer): number {
  const text = typeof data === 'string' ? data : data.toString('latin1')
  let lines = 0
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) lines++
  return Math.max(1, lines)
}
