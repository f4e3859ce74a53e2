// A worker's start, from spawn to its ready message: the start timeout, the shutdown's
// abort, and the one WorkerStartError a start that fails ends with. python-worker.ts says
// when the worker is ready or why it failed, stack-dumps.ts where a start past its timeout is stuck.

import { WorkerStartError } from './worker-failures.js'

interface Settle { resolve: () => void, reject: (error: Error) => void }

export class StartWait {
  /** Resolves at ready(); rejects with the WorkerStartError of the first fail(). */
  readonly done: Promise<void>
  readonly #python: string
  readonly #giveUp: () => void
  readonly #signal: AbortSignal | undefined
  readonly #timer: NodeJS.Timeout
  readonly #whereStuck: (() => Promise<string | undefined>) | undefined
  #settle: Settle | undefined
  /** The start timed out, and where it is stuck is being asked: that is its failure, whatever else happens meanwhile. */
  #timingOut = false

  /**
   * `giveUp` kills the process of a start that failed. `whereStuck`, asked once the start
   * has timed out (briefly: the process is killed after it), says where the worker is
   * stuck, if it can tell.
   */
  constructor (python: string, startTimeoutMs: number, signal: AbortSignal | undefined, giveUp: () => void, whereStuck?: () => Promise<string | undefined>) {
    this.#python = python
    this.#giveUp = giveUp
    this.#signal = signal
    this.#whereStuck = whereStuck
    this.done = new Promise<void>((resolve, reject) => { this.#settle = { resolve, reject } })
    this.#timer = setTimeout(() => { void this.#timedOut(startTimeoutMs) }, startTimeoutMs)
    signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  async #timedOut (startTimeoutMs: number): Promise<void> {
    this.#timingOut = true
    const where = await this.#whereStuck?.().catch(() => undefined)
    const at = where === undefined ? '' : `: it was ${where}`
    this.#fail(`did not say ready within ${startTimeoutMs} ms${at} (slow imports in a task module? WORKER_START_TIMEOUT_MS sets the limit${where === undefined ? '' : '; every thread\'s stack is in the log'})`)
  }

  ready (): void {
    const settle = this.#end()
    settle?.resolve()
  }

  /**
   * Fails the start, if it is still under way, with "Python worker <python> <reason>"; once it
   * has timed out, with the timeout (asking where it was stuck may end the process).
   */
  fail (reason: string): void {
    if (!this.#timingOut) this.#fail(reason)
  }

  #fail (reason: string): void {
    const settle = this.#end()
    if (settle === undefined) return
    this.#giveUp()
    settle.reject(new WorkerStartError(`Python worker ${this.#python} ${reason}`))
  }

  /** An abort's reason, when it is a string, says why (another worker's start failed); otherwise it is the shutdown. */
  readonly #onAbort = (): void => {
    const reason: unknown = this.#signal?.reason
    this.fail(typeof reason === 'string' ? reason : 'was stopped while starting: the server is shutting down')
  }

  #end (): Settle | undefined {
    const settle = this.#settle
    this.#settle = undefined
    clearTimeout(this.#timer)
    this.#signal?.removeEventListener('abort', this.#onAbort)
    return settle
  }
}
