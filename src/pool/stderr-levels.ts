// The log level of each line of a worker's stderr: the prefix it starts with, or the traceback,
// exception group or stack dump it is part of, which takes the lines before it to know. How lines
// are read, cut, budgeted and logged is worker-stderr.ts's.

export type Level = 'error' | 'warn' | 'info' | 'debug'

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
const LEVEL_PREFIXES: ReadonlyArray<[string, 'error' | 'warn' | 'debug']> = [
  ['CRITICAL ', 'error'], ['ERROR ', 'error'], ['WARNING ', 'warn'], ['DEBUG ', 'debug'], ['Traceback ', 'error'],
  // faulthandler's first line when the worker crashes in C code (a segfault); its stacks follow.
  ['Fatal Python error: ', 'error']
]

/** The levels of one worker's stderr lines, read in order: a line's level may depend on the lines before it. */
export class StderrLevels {
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

  /**
   * The level of a non-empty line: a stack's, else its prefix's, else info. To be read for every
   * line, logged or not: a traceback whose frames were dropped must not make a later line an error.
   */
  levelOf (line: string): Level {
    const named = LEVEL_PREFIXES.find(([prefix]) => line.startsWith(prefix))?.[1]
    return this.#stackLevel(line) ?? named ?? 'info'
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
}

/**
 * A line split before a stack dump's header or a fatal line glued to its end: faulthandler
 * writes from C at once, so output a task had not ended with a newline (a progress bar's
 * `\rprogress 2/3`, `print(..., end="")`, often the last thing before a hang) came before
 * its first header on one line, which was then logged as that output, at info: lost at
 * LOG_LEVEL=warn, where the timeout's stacks are meant to be kept.
 */
export function gluedApart (line: string): string[] {
  if (!line.endsWith('(most recent call first):') && !line.includes('Fatal Python error: ')) return [line] // the common case, at once
  const at = GLUED_START.exec(line)?.index ?? 0
  return at > 0 ? [line.slice(0, at), line.slice(at)] : [line]
}
