// The log budget of one worker's stderr, and the count of the lines it dropped. A worker that
// writes faster than a log can take (a print per row in a tight loop) has lines dropped past a
// budget, and a count of them logged instead: logged in full, such a flood took Node to 1 GB in
// 15 s (pino buffers whatever stdout cannot take yet) and slowed every other call 40-fold. Which
// lines ask which budget is worker-stderr.ts's.

import type { FastifyBaseLogger } from 'fastify'
import type { StderrContext } from './worker-stderr.js'

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

export class StderrBudget {
  readonly #log: FastifyBaseLogger
  /** Whom a line read now belongs to (the worker's stderr says). */
  readonly #context: () => StderrContext
  readonly #now: () => number
  readonly #onDropped: ((lines: number) => void) | undefined
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

  /**
   * `now`: the clock (milliseconds) the budget refills by.
   * `onDropped`: told how many lines were dropped each time their count is logged (a metric).
   */
  constructor (log: FastifyBaseLogger, context: () => StderrContext, now: () => number, onDropped: ((lines: number) => void) | undefined) {
    this.#log = log
    this.#context = context
    this.#now = now
    this.#onDropped = onDropped
    this.#unitsAt = now()
    this.#severeAt = this.#unitsAt
  }

  /** Counts a line (or piece) the budget did not let through; the count is logged later. */
  drop (line: string, aLine = true): void {
    if (this.#droppedLines === 0) this.#droppedContext = this.#context()
    if (aLine) this.#droppedLines++
    this.#droppedChars += line.length
    // Armed by a counted line only (the rest of a line counted before adds characters, nothing to
    // report alone), and forgotten as it fires: a timer that fired with nothing to log was left
    // set, and a later flood's count then waited for the next line let through.
    if (this.#droppedLines > 0) {
      this.#summaryTimer ??= setTimeout(() => {
        this.#summaryTimer = undefined
        this.logDropped()
      }, DROPPED_SUMMARY_DELAY_MS).unref()
    }
  }

  /** Takes the line's units from the budget if it has them (a token bucket), and may log it. */
  withinBudget (line: string): boolean {
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
  withinSevereBudget (): boolean {
    const now = this.#now()
    this.#severeLines = Math.min(SEVERE_BURST_LINES, this.#severeLines + (now - this.#severeAt) * SEVERE_LINES_PER_SECOND / 1000)
    this.#severeAt = now
    if (this.#severeLines < 1) return false
    this.#severeLines--
    return true
  }

  /** Logs the count of the lines dropped since it was last logged, if any. */
  logDropped (): void {
    if (this.#droppedLines === 0) return // the common case: called before every logged line
    clearTimeout(this.#summaryTimer)
    this.#summaryTimer = undefined
    const fields = { ...(this.#droppedContext ?? this.#context()), stream: 'stderr', droppedLines: this.#droppedLines, droppedChars: this.#droppedChars }
    this.#log.warn(fields, `${this.#droppedLines === 1 ? '1 stderr line of this worker was' : `${this.#droppedLines} stderr lines of this worker were`} not logged: it wrote faster than its log budget of ${BUDGET_UNITS_PER_SECOND.toLocaleString('en-US')} lines (or KiB) a second`)
    this.#onDropped?.(this.#droppedLines)
    this.#droppedLines = 0
    this.#droppedChars = 0
    this.#droppedContext = undefined
  }
}
