// A worker's start, from spawn to its ready message: the start timeout, the shutdown's
// abort, and the one WorkerStartError a start that fails ends with. python-worker.ts says
// when the worker is ready or why it failed.

import { WorkerStartError } from './worker-failures.js'

interface Settle { resolve: () => void, reject: (error: Error) => void }

export class StartWait {
  /** Resolves at ready(); rejects with the WorkerStartError of the first fail(). */
  readonly done: Promise<void>
  readonly #python: string
  readonly #giveUp: () => void
  readonly #signal: AbortSignal | undefined
  readonly #timer: NodeJS.Timeout
  #settle: Settle | undefined

  /** `giveUp` kills the process of a start that failed. */
  constructor (python: string, startTimeoutMs: number, signal: AbortSignal | undefined, giveUp: () => void) {
    this.#python = python
    this.#giveUp = giveUp
    this.#signal = signal
    this.done = new Promise<void>((resolve, reject) => { this.#settle = { resolve, reject } })
    this.#timer = setTimeout(() => {
      this.fail(`did not say ready within ${startTimeoutMs} ms (slow imports in a task module? WORKER_START_TIMEOUT_MS sets the limit)`)
    }, startTimeoutMs)
    signal?.addEventListener('abort', this.#onAbort, { once: true })
  }

  ready (): void {
    const settle = this.#end()
    settle?.resolve()
  }

  /** Fails the start, if it is still under way, with "Python worker <python> <reason>". */
  fail (reason: string): void {
    const settle = this.#end()
    if (settle === undefined) return
    this.#giveUp()
    settle.reject(new WorkerStartError(`Python worker ${this.#python} ${reason}`))
  }

  readonly #onAbort = (): void => { this.fail('was stopped while starting: the server is shutting down') }

  #end (): Settle | undefined {
    const settle = this.#settle
    this.#settle = undefined
    clearTimeout(this.#timer)
    this.#signal?.removeEventListener('abort', this.#onAbort)
    return settle
  }
}
