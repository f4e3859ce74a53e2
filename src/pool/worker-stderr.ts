// A worker's stderr, turned into log lines. Python logs there (the runtime's
// handler writes "LEVEL message" lines), tracebacks land there, and so does
// anything a task prints to stderr. Each line is logged at the level its prefix
// names, tagged with the worker and the request it most likely belongs to; the
// last few lines before the worker was ready, and a `pyfleet-fatal:` line, are
// kept so that a failed start can say why in one sentence. Lines a worker writes
// faster than a log can take are dropped and counted (stderr-budget.ts); a line's level
// is stderr-levels.ts's to say.

import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { StuckAt } from './stuck-at.js'
import type { CallOutputMarks } from './call-output-marks.js'
import { jsonFittingPrefix } from '../short-text.js'
import { StderrBudget } from './stderr-budget.js'
import { StderrLevels, gluedApart, type Level } from './stderr-levels.js'

const FATAL_PREFIX = 'pyfleet-fatal: '
/**
 * A line that takes more than this in the log's JSON (its escapes and UTF-8 counted: a
 * control character takes six bytes, CJK three) is logged in pieces that take at most this,
 * so that one huge line cannot grow memory, nor make a log line larger than collectors take
 * (Docker's splits at 16 KiB, and a pipeline's JSON parser then loses both halves); the
 * line's other fields fit in the KiB left. Each piece after the first is marked `continued`
 * and has the first piece's level: an error's 3 MB message otherwise read as an error line
 * and 45 unrelated info lines. Counted in characters, as it was, a line of quotes or of
 * control characters made log lines of 32 and 98 KB (a review).
 */
const MAX_PIECE_BYTES = 15 * 1024
/** Text this short fits whatever it holds (no character takes more than six bytes). */
const ALWAYS_FITS_CHARS = Math.floor(MAX_PIECE_BYTES / 6)
/**
 * How a logging record writes its own line breaks (workers/pyfleet/reporting.py): one record is
 * one line on the pipe, since a level is read per line. Logged as line breaks, so that
 * `jq -r .msg` or pino-pretty shows a traceback as Python prints it; they were `\n`, which a
 * task's own print (`C:\new`, a JSON string) holds too, so the server could not give them back.
 * A task that prints one gets a line break too: that is what the character means.
 */
const RECORD_LINE_BREAK = /\u2028/g
const LAST_WORDS = 5
const LAST_WORD_CHARS = 500
/**
 * A line still without its end this long after its last bytes is logged as it is, its rest
 * (if it comes) as a `continued` piece: output a task writes without a newline and not
 * through sys.stdout (os.write(1, ...), a C library), which the runtime cannot end after the
 * call, otherwise waited for the next output, or the worker's exit, and then was logged under
 * another call's request id.
 */
const UNENDED_LINE_WAIT_MS = 1000

/** Fields every stderr line of a worker is logged with. */
export interface StderrContext {
  worker: number
  workerPid: number
  /** The request and task of the call whose output a mark says the line is, else of the call sent last (output between calls, or that the runtime cannot mark). */
  requestId: string | undefined
  /** The trace's and the client span's ids of the call's client's traceparent, if it sent one (trace-context.ts). */
  traceId?: string | undefined
  spanId?: string | undefined
  task: string | undefined
}

export class WorkerStderr {
  readonly #log: FastifyBaseLogger
  /** Who a line belongs to: the call whose output a mark said it is, if any (call-output-marks.ts), else the call sent last. */
  readonly #contextOf: (markedCall: number | undefined) => StderrContext
  readonly #marks: CallOutputMarks | undefined
  /** The call whose output is being read, from its mark until its end mark. */
  #markedCall: number | undefined
  #partial = ''
  /** Logs #partial once it has waited UNENDED_LINE_WAIT_MS for its end. */
  #unendedTimer: NodeJS.Timeout | undefined
  /** The level of a line logged in pieces whose end has not come yet ('dropped': its first piece was). */
  #continuing: Level | 'dropped' | undefined
  #lastWords: string[] = []
  #fatalLine: string | undefined
  /** The stack dump asked for by awaitWhereStuck(), being read, and who waits for its answer. */
  #stuck: { reader: StuckAt, resolve: (where: string) => void } | undefined
  /** A fatal line has been seen: only the first gets past the log budget. */
  #fatalSeen = false
  readonly #isStarting: () => boolean
  readonly #levels = new StderrLevels()
  readonly #budget: StderrBudget

  /**
   * `isStarting`: last words are kept only while the worker starts; afterwards nobody asks for them.
   * `now`: the clock (milliseconds) the log budget refills by.
   * `onDropped`: told how many lines were dropped each time their count is logged (a metric).
   * `marks`: the marks the worker writes around each call's output, taken out and followed.
   */
  constructor (log: FastifyBaseLogger, context: (markedCall: number | undefined) => StderrContext, isStarting: () => boolean, now: () => number = performance.now.bind(performance), onDropped?: (lines: number) => void, marks?: CallOutputMarks) {
    this.#log = log
    this.#contextOf = context
    this.#marks = marks
    this.#isStarting = isStarting
    this.#budget = new StderrBudget(log, () => this.#context(), now, onDropped)
  }

  /** The reason the runtime gave for refusing to start or to go on, if it printed one. */
  get fatalLine (): string | undefined { return this.#fatalLine }

  /**
   * A call begins: a fatal line seen before it was no runtime's last words (the worker went
   * on), but a task printing the prefix, and must not be quoted as the reason a later call's
   * worker died.
   */
  callStarted (): void { this.#fatalLine = undefined }

  /** Up to the last five lines printed while starting, each cut to 500 characters. */
  get lastWords (): readonly string[] { return this.#lastWords }

  /**
   * Resolves with where the worker's main thread is ("still importing <path>, line <n>", or
   * "at <path>, line <n> in <function>"), read from the stack dump among the lines that come
   * next (stuck-at.ts), once the main thread's stack has come whole. Call before asking.
   */
  async awaitWhereStuck (): Promise<string> {
    return await new Promise((resolve) => { this.#stuck = { reader: new StuckAt(), resolve } })
  }

  write (text: string): void {
    const lines = (this.#partial + text).split('\n')
    this.#partial = lines.pop() ?? ''
    for (const line of lines) {
      const at = this.#marks?.indexIn(line) ?? -1
      if (at < 0) {
        this.#logWholeLine(line)
        continue
      }
      const mark = this.#marks?.read(withoutCarriageReturn(line.slice(at)))
      if (mark === undefined) {
        this.#logWholeLine(line)
        continue
      }
      if (at > 0) this.#logWholeLine(line.slice(0, at)) // output before the mark is not the marked call's
      // A line logged unended (#logUnended) ends at a mark: what follows is not its rest.
      this.#continuing = undefined
      this.#markedCall = mark === 'end' ? undefined : mark.call
    }
    const markAt = this.#marks?.startIn(this.#partial) ?? -1
    this.#partial = markAt < 0 ? this.#cutLong(this.#partial) : this.#cutLong(this.#partial.slice(0, markAt)) + this.#partial.slice(markAt)
    clearTimeout(this.#unendedTimer)
    // Not a mark on its way (written whole, with its newline, in one write): only text waits.
    if (this.#partial !== '' && markAt < 0) this.#unendedTimer = setTimeout(() => { this.#logUnended() }, UNENDED_LINE_WAIT_MS).unref()
  }

  #logUnended (): void {
    this.#unendedTimer = undefined
    const text = withoutCarriageReturn(this.#partial)
    this.#partial = ''
    if (text !== '') this.#logPiece(text, false)
  }

  #logWholeLine (line: string): void {
    for (const piece of gluedApart(withoutCarriageReturn(line))) this.#logPiece(this.#cutLong(piece), true)
  }

  #context (): StderrContext {
    return this.#contextOf(this.#markedCall)
  }

  /** Logs `text` in pieces of MAX_PIECE_BYTES but its end, which fits in one; returns that end. */
  #cutLong (text: string): string {
    let rest = text
    while (rest.length > ALWAYS_FITS_CHARS) {
      const cut = jsonFittingPrefix(rest, MAX_PIECE_BYTES)
      if (cut === rest.length) break
      this.#logPiece(rest.slice(0, cut), false)
      rest = rest.slice(cut)
    }
    return rest
  }

  /** Logs a last line that had no newline, and the count of dropped lines (the process has exited). */
  flush (): void {
    clearTimeout(this.#unendedTimer)
    if (this.#partial !== '') this.#logPiece(withoutCarriageReturn(this.#partial), true)
    this.#partial = ''
    this.#continuing = undefined
    this.#budget.logDropped()
  }

  /** Logs a line, or a piece of a long one; `ends`: the line ends with it. */
  #logPiece (piece: string, ends: boolean): void {
    const continued = this.#continuing
    if (ends) this.#continuing = undefined
    if (continued === undefined) {
      const level = this.#logLine(piece)
      if (!ends) this.#continuing = level
    } else if (piece === '') {
      // the line ended right where its last piece was cut
    } else if (continued === 'dropped' || !this.#budget.withinBudget(piece)) {
      // A piece of a line counted already (its first was dropped) adds its characters, not a line.
      this.#budget.drop(piece, continued !== 'dropped')
      if (!ends) this.#continuing = 'dropped'
    } else {
      this.#log[continued]({ ...this.#context(), stream: 'stderr', continued: true }, withLineBreaks(piece))
    }
  }

  /** Logs one line at the level its prefix names, and returns that level; 'dropped' if the log budget would not take it. */
  #logLine (line: string): Level | 'dropped' {
    if (line === '') return 'info'
    // The runtime writes one fatal line, then exits: it is the last one seen, and kept as the
    // reason. Only the first gets past the log budget: more are a task printing the prefix
    // (client text, say), which must not flood the log.
    const fatal = line.startsWith(FATAL_PREFIX)
    const unbudgeted = fatal && !this.#fatalSeen
    if (fatal) {
      this.#fatalLine = line.slice(FATAL_PREFIX.length)
      this.#fatalSeen = true
    }
    if (this.#stuck !== undefined) {
      const where = this.#stuck.reader.read(line)
      if (where !== undefined) {
        this.#stuck.resolve(where)
        this.#stuck = undefined
      }
    }
    if (this.#isStarting()) {
      // Quoted on one line (a failed start's reason): a record's breaks as `\n`, as the fatal line has them.
      this.#lastWords.push(line.slice(0, LAST_WORD_CHARS).replace(RECORD_LINE_BREAK, '\\n'))
      if (this.#lastWords.length > LAST_WORDS) this.#lastWords.shift()
    }
    // Read for every line, logged or not: a traceback whose frames were dropped must not make
    // a later line an error.
    const lineLevel = this.#levels.levelOf(line)
    // The runtime's reason for giving up is never dropped: it explains an exit. Warnings,
    // errors and stacks (a traceback down to its exception) have a budget of their own.
    const budgeted = unbudgeted || this.#budget.withinBudget(line)
    if (!budgeted && !((lineLevel === 'error' || lineLevel === 'warn') && this.#budget.withinSevereBudget())) {
      this.#budget.drop(line)
      return 'dropped'
    }
    // Before the line, so that the log reads in order; a line let through on the budget of
    // its own leaves the count for later (a summary before each would double a flood).
    if (budgeted) this.#budget.logDropped()
    // The runtime's reason for giving up is an error, whatever the server later makes of it.
    const level = fatal ? 'error' : lineLevel
    this.#log[level]({ ...this.#context(), stream: 'stderr' }, withLineBreaks(line))
    return level
  }
}

function withLineBreaks (text: string): string {
  return text.includes('\u2028') ? text.replace(RECORD_LINE_BREAK, '\n') : text
}

/**
 * A line without the `\r` of a CRLF ending (a task writing Windows line ends): it would end
 * every log message, and a line that just fit before it was logged with a piece of its own.
 */
function withoutCarriageReturn (line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line
}
