// A worker's stderr, turned into log lines. Python logs there (the runtime's
// handler writes "LEVEL message" lines), tracebacks land there, and so does
// anything a task prints to stderr. Each line is logged at the level its prefix
// names, tagged with the worker and the request it most likely belongs to; the
// last few lines before the worker was ready, and a `pyfleet-fatal:` line, are
// kept so that a failed start can say why in one sentence. A worker that writes
// faster than a log can take (a print per row in a tight loop) has lines dropped
// past a budget, and a count of them logged instead: logged in full, such a flood
// took Node to 1 GB in 15 s (pino buffers whatever stdout cannot take yet) and
// slowed every other call 40-fold.

import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { StuckAt } from './stuck-at.js'
import type { CallOutputMarks } from './call-output-marks.js'
import { jsonFittingPrefix } from '../short-text.js'

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
type Level = 'error' | 'warn' | 'info' | 'debug'
const LAST_WORDS = 5
/**
 * The first line of a stack in a dump: faulthandler's for each thread (`Current thread 0x...`,
 * `Thread 0x...`, `Stack` for one thread alone), the runtime's for each pending asyncio task
 * (workers/pyfleet/stack_dump.py). Such a stack, and the indented lines that follow it, are
 * logged at warn (error after a `Fatal Python error` line): they are where a task past its
 * timeout was stuck, or where a worker crashed, and were info lines, lost at LOG_LEVEL=warn
 * where the timeout's own warning was kept (an operator's review).
 */
const STACK_HEADER = /^(?:(?:Current thread|Thread) 0x[0-9a-f]+ |Stack |Asyncio task '.*' )\(most recent call first\):$/
/**
 * The same header, or faulthandler's fatal line for a signal, ending output that had not ended
 * its line (see gluedApart): the whole line's end, so that a task's own line that mentions
 * "Fatal Python error: " in passing is not split.
 */
const GLUED_START = /(?:(?:Current thread|Thread) 0x[0-9a-f]+ |Stack )\(most recent call first\):$|Fatal Python error: (?:Segmentation fault|Aborted|Bus error|Floating point exception|Illegal instruction)$/
/**
 * The first line of a printed ExceptionGroup's traceback, at any depth of a chain: its header,
 * or, for a group with no frames of its own (the one `except*` raises), its exception's line.
 */
const GROUP_TRACEBACK_HEADER = /^ {2,}\+ Exception Group Traceback \(most recent call last\):$|^ {2,}\| [\w.]+: .*\(\d+ sub-exceptions?\)$/
/** Every line of it, nested groups' too: in its margin, `  | ` or `  +-`, at some depth. */
const GROUP_TRACEBACK_LINE = /^ {2,}[|+]/
/** What Python prints between the tracebacks of a chain of exceptions. */
const CHAIN_SENTENCES = new Set(['The above exception was the direct cause of the following exception:', 'During handling of the above exception, another exception occurred:'])
const LAST_WORD_CHARS = 500
/**
 * The log budget of one worker's stderr: a line costs one unit per started KiB. The
 * burst lets a traceback or a chatty start through whole; the rate allows a line per
 * call at thousands of calls a second.
 */
const BUDGET_UNITS_PER_SECOND = 5_000
const BUDGET_BURST_UNITS = 20_000
/**
 * Once lines are dropped, none is logged until the budget holds this much again: a
 * flood then logs in chunks, each after one count of what was dropped, instead of a
 * count before every line the refill lets through.
 */
const RESUME_UNITS = BUDGET_UNITS_PER_SECOND
/**
 * A second, smaller budget for lines the main one refuses that name a warning or an error
 * (`ERROR `, `CRITICAL `, `WARNING `, `Traceback `): a task that prints a flood and then
 * logs why it failed kept only the count of dropped lines (a review), and its failure was
 * the line that mattered. Lines, not KiB: at most this many a second, this many at once.
 */
const SEVERE_LINES_PER_SECOND = 50
const SEVERE_BURST_LINES = 500
/** How soon after the first dropped line the count is logged, if no line is let through sooner. */
const DROPPED_SUMMARY_DELAY_MS = 1_000
const LEVEL_PREFIXES: ReadonlyArray<[string, 'error' | 'warn' | 'debug']> = [
  ['CRITICAL ', 'error'], ['ERROR ', 'error'], ['WARNING ', 'warn'], ['DEBUG ', 'debug'], ['Traceback ', 'error'],
  // faulthandler's first line when the worker crashes in C code (a segfault); its stacks follow.
  ['Fatal Python error: ', 'error']
]

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
  /** The level of a line logged in pieces whose end has not come yet ('dropped': its first piece was). */
  #continuing: Level | 'dropped' | undefined
  #lastWords: string[] = []
  #fatalLine: string | undefined
  /** The level of the stack being written (its header seen, not yet a line that is not part of it). */
  #stack: 'warn' | 'error' | undefined
  /** A `Fatal Python error` line came, and no line since that is not part of its stacks. */
  #afterFatal = false
  /** A `Traceback (most recent call last):` came: its indented lines, then the exception's line, are errors. */
  #traceback = false
  /** An ExceptionGroup's traceback came: all of it is indented, in its `|` margin. */
  #group = false
  /** A traceback just ended: a chain's sentence may lead to the next one. */
  #chainMayFollow = false
  /** The stack dump asked for by awaitWhereStuck(), being read, and who waits for its answer. */
  #stuck: { reader: StuckAt, resolve: (where: string) => void } | undefined
  /** A fatal line has been seen: only the first gets past the log budget. */
  #fatalSeen = false
  readonly #isStarting: () => boolean
  readonly #now: () => number
  #units = BUDGET_BURST_UNITS
  #unitsAt: number
  #suppressing = false
  #severeLines = SEVERE_BURST_LINES
  #severeAt: number
  #droppedLines = 0
  #droppedChars = 0
  /** The call the first dropped line came with: the one whose output flooded, not whichever runs when the count is logged. */
  #droppedContext: StderrContext | undefined
  #summaryTimer: NodeJS.Timeout | undefined

  readonly #onDropped: ((lines: number) => void) | undefined

  /**
   * `isStarting`: last words are kept only while the worker starts; afterwards nobody asks for them.
   * `now`: the clock (milliseconds) the log budget refills by.
   * `onDropped`: told how many lines were dropped each time their count is logged (a metric).
   * `marks`: the marks the worker writes around each call's output, taken out and followed.
   */
  constructor (log: FastifyBaseLogger, context: (markedCall: number | undefined) => StderrContext, isStarting: () => boolean, now: () => number = performance.now.bind(performance), onDropped?: (lines: number) => void, marks?: CallOutputMarks) {
    this.#onDropped = onDropped
    this.#log = log
    this.#contextOf = context
    this.#marks = marks
    this.#isStarting = isStarting
    this.#now = now
    this.#unitsAt = now()
    this.#severeAt = this.#unitsAt
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
      this.#markedCall = mark === 'end' ? undefined : mark.call
    }
    const markAt = this.#marks?.startIn(this.#partial) ?? -1
    this.#partial = markAt < 0 ? this.#cutLong(this.#partial) : this.#cutLong(this.#partial.slice(0, markAt)) + this.#partial.slice(markAt)
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
    if (this.#partial !== '') this.#logPiece(withoutCarriageReturn(this.#partial), true)
    this.#partial = ''
    this.#continuing = undefined
    this.#logDropped()
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
    } else if (continued === 'dropped' || !this.#withinBudget(piece)) {
      // A piece of a line counted already (its first was dropped) adds its characters, not a line.
      this.#drop(piece, continued !== 'dropped')
      if (!ends) this.#continuing = 'dropped'
    } else {
      this.#log[continued]({ ...this.#context(), stream: 'stderr', continued: true }, piece)
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
      this.#lastWords.push(line.slice(0, LAST_WORD_CHARS))
      if (this.#lastWords.length > LAST_WORDS) this.#lastWords.shift()
    }
    const named = LEVEL_PREFIXES.find(([prefix]) => line.startsWith(prefix))?.[1]
    // Read for every line, logged or not: a traceback whose frames were dropped must not make
    // a later line an error.
    const stack = this.#stackLevel(line)
    // The runtime's reason for giving up is never dropped: it explains an exit. Warnings,
    // errors and stacks (a traceback down to its exception) have a budget of their own.
    const budgeted = unbudgeted || this.#withinBudget(line)
    if (!budgeted && !((stack !== undefined || named === 'error' || named === 'warn') && this.#withinSevereBudget())) {
      this.#drop(line)
      return 'dropped'
    }
    // Before the line, so that the log reads in order; a line let through on the budget of
    // its own leaves the count for later (a summary before each would double a flood).
    if (budgeted) this.#logDropped()
    // The runtime's reason for giving up is an error, whatever the server later makes of it.
    const level = fatal ? 'error' : stack ?? named ?? 'info'
    this.#log[level]({ ...this.#context(), stream: 'stderr' }, line)
    return level
  }

  /** The level of a (non-empty) line that is part of a stack dump (STACK_HEADER), or undefined. */
  #stackLevel (line: string): Level | undefined {
    if (STACK_HEADER.test(line)) return (this.#stack = this.#afterFatal ? 'error' : 'warn')
    // A traceback a task printed (traceback.print_exc()): at LOG_LEVEL=warn its header alone
    // was kept, without where or what the exception was.
    if (line === 'Traceback (most recent call last):') {
      this.#traceback = true
      return (this.#stack = 'error')
    }
    // An ExceptionGroup's (a TaskGroup's failure), printed: its sub-exceptions' tracebacks and
    // exception lines are all in its indented margin (`  | `, `  +-+---- 1 ----`).
    if (GROUP_TRACEBACK_HEADER.test(line)) {
      this.#group = true
      return (this.#stack = 'error')
    }
    if (this.#group) {
      if (GROUP_TRACEBACK_LINE.test(line)) return 'error'
      // The group has ended; its last line is indented too, so "indented" cannot say it has:
      // a task's own lines that start with spaces, in this call or the next, were errors.
      this.#group = false
      this.#stack = undefined
      this.#chainMayFollow = true
    }
    if (this.#stack !== undefined && line.startsWith('  ')) return this.#stack
    const exception = this.#traceback // the line that ends a traceback names the exception
    const chainMayFollow = this.#chainMayFollow || this.#group
    this.#traceback = false
    this.#group = false
    this.#afterFatal = line.startsWith('Fatal Python error: ')
    this.#stack = undefined
    // `raise ... from` and an exception raised while handling another: a sentence between the
    // tracebacks, which at LOG_LEVEL=warn read as two unrelated ones without it.
    if (!exception && chainMayFollow && CHAIN_SENTENCES.has(line)) return 'error'
    this.#chainMayFollow = exception
    return exception ? 'error' : undefined
  }

  /** Counts a line (or piece) the budget did not let through; the count is logged later. */
  #drop (line: string, aLine = true): void {
    if (this.#droppedLines === 0) this.#droppedContext = this.#context()
    if (aLine) this.#droppedLines++
    this.#droppedChars += line.length
    this.#summaryTimer ??= setTimeout(() => { this.#logDropped() }, DROPPED_SUMMARY_DELAY_MS).unref()
  }

  /** Takes the line's units from the budget if it has them (a token bucket), and may log it. */
  #withinBudget (line: string): boolean {
    const now = this.#now()
    this.#units = Math.min(BUDGET_BURST_UNITS, this.#units + (now - this.#unitsAt) * BUDGET_UNITS_PER_SECOND / 1000)
    this.#unitsAt = now
    if (this.#suppressing && this.#units < RESUME_UNITS) return false
    const cost = 1 + Math.floor(line.length / 1024)
    this.#suppressing = this.#units < cost
    if (this.#suppressing) return false
    this.#units -= cost
    return true
  }

  /** Takes a line from the budget of warnings and errors (SEVERE_LINES_PER_SECOND), if it has one. */
  #withinSevereBudget (): boolean {
    const now = this.#now()
    this.#severeLines = Math.min(SEVERE_BURST_LINES, this.#severeLines + (now - this.#severeAt) * SEVERE_LINES_PER_SECOND / 1000)
    this.#severeAt = now
    if (this.#severeLines < 1) return false
    this.#severeLines--
    return true
  }

  #logDropped (): void {
    if (this.#droppedLines === 0) return // the common case: called before every logged line
    clearTimeout(this.#summaryTimer)
    this.#summaryTimer = undefined
    const fields = { ...(this.#droppedContext ?? this.#context()), stream: 'stderr', droppedLines: this.#droppedLines, droppedChars: this.#droppedChars }
    this.#log.warn(fields, `${this.#droppedLines} stderr lines of this worker were not logged: it wrote faster than its log budget of ${BUDGET_UNITS_PER_SECOND.toLocaleString('en-US')} lines (or KiB) a second`)
    this.#onDropped?.(this.#droppedLines)
    this.#droppedLines = 0
    this.#droppedChars = 0
    this.#droppedContext = undefined
  }
}

/**
 * A line without the `\r` of a CRLF ending (a task writing Windows line ends): it would end
 * every log message, and a line that just fit before it was logged with a piece of its own.
 */
/**
 * A line split before a stack dump's header or a fatal line glued to its end: faulthandler
 * writes from C at once, so output a task had not ended with a newline (a progress bar's
 * `\rprogress 2/3`, `print(..., end="")`, often the last thing before a hang) came before
 * its first header on one line, which was then logged as that output, at info: lost at
 * LOG_LEVEL=warn, where the timeout's stacks are meant to be kept.
 */
function gluedApart (line: string): string[] {
  if (!line.endsWith('(most recent call first):') && !line.includes('Fatal Python error: ')) return [line] // the common case, at once
  const at = GLUED_START.exec(line)?.index ?? 0
  return at > 0 ? [line.slice(0, at), line.slice(at)] : [line]
}

function withoutCarriageReturn (line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line
}
