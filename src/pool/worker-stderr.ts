// A worker's stderr, turned into log lines. Python logs there (the runtime's
// handler writes "LEVEL message" lines), tracebacks land there, and so does
// anything a task prints to stderr. Each line is logged at the level its prefix
// names, tagged with the worker and the request it most likely belongs to; the
// last few lines before the worker was ready, and a `pyfleet-fatal:` line, are
// kept so that a failed start can say why in one sentence.

import type { FastifyBaseLogger } from 'fastify'

const FATAL_PREFIX = 'pyfleet-fatal: '
/** A line longer than this without a newline is logged as it is, so one huge line cannot grow memory. */
const MAX_LINE_CHARS = 16 * 1024
const LAST_WORDS = 5
const LAST_WORD_CHARS = 500
const LEVEL_PREFIXES: ReadonlyArray<[string, 'error' | 'warn' | 'debug']> = [
  ['CRITICAL ', 'error'], ['ERROR ', 'error'], ['WARNING ', 'warn'], ['DEBUG ', 'debug'], ['Traceback ', 'error']
]

/** Fields every stderr line of a worker is logged with. */
export interface StderrContext {
  worker: number
  workerPid: number
  /** The request and task of the call that ran last: output may lag its reply, or come from a thread it left. */
  requestId: string | undefined
  task: string | undefined
}

export class WorkerStderr {
  readonly #log: FastifyBaseLogger
  readonly #context: () => StderrContext
  #partial = ''
  #lastWords: string[] = []
  #fatalLine: string | undefined
  readonly #isStarting: () => boolean

  /** `isStarting`: last words are kept only while the worker starts; afterwards nobody asks for them. */
  constructor (log: FastifyBaseLogger, context: () => StderrContext, isStarting: () => boolean) {
    this.#log = log
    this.#context = context
    this.#isStarting = isStarting
  }

  /** The reason the runtime gave for refusing to start or to go on, if it printed one. */
  get fatalLine (): string | undefined { return this.#fatalLine }

  /** Up to the last five lines printed while starting, each cut to 500 characters. */
  get lastWords (): readonly string[] { return this.#lastWords }

  write (text: string): void {
    const lines = (this.#partial + text).split('\n')
    this.#partial = lines.pop() ?? ''
    if (this.#partial.length > MAX_LINE_CHARS) {
      lines.push(this.#partial)
      this.#partial = ''
    }
    for (const line of lines) this.#logLine(line)
  }

  /** Logs a last line that had no newline (the process has exited). */
  flush (): void {
    if (this.#partial !== '') this.#logLine(this.#partial)
    this.#partial = ''
  }

  #logLine (line: string): void {
    if (line === '') return
    if (line.startsWith(FATAL_PREFIX)) this.#fatalLine = line.slice(FATAL_PREFIX.length)
    if (this.#isStarting()) {
      this.#lastWords.push(line.slice(0, LAST_WORD_CHARS))
      if (this.#lastWords.length > LAST_WORDS) this.#lastWords.shift()
    }
    // The runtime's reason for giving up is an error, whatever the server later makes of it.
    const level = line.startsWith(FATAL_PREFIX) ? 'error' : LEVEL_PREFIXES.find(([prefix]) => line.startsWith(prefix))?.[1] ?? 'info'
    this.#log[level]({ ...this.#context(), stream: 'stderr' }, line)
  }
}
