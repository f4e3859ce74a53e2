// The offload thread as a resource: started at the first job, sent one job at a time,
// ended after IDLE_STOP_MS without one, and its unplanned end told. job-runner.ts decides
// which job goes next and what an outcome or a loss means for it.

import { Worker } from 'node:worker_threads'
import { ownBytes, type Job } from './jobs.js'
import type { JobMessage, OutcomeMessage, StartedMessage } from './offload-thread.js'
import { messageWithLimitAdvice } from '../process-limit.js'

/** How long the thread waits for another job before it ends (the next large body starts it again, in ~40 ms). */
export const IDLE_STOP_MS = 30_000

export interface JobThreadEvents {
  /** The thread has begun a job (after loading its modules, if it is new). */
  started: (id: number) => void
  /** The thread has answered a job: its outcome, or why it failed. */
  done: (message: OutcomeMessage) => void
  /** The thread ended on its own (a crash, an exit), not by idle() or stop(): the job it was running is lost. */
  stopped: (why: string) => void
}

/** No thread could be started: `cause` is Node's error (ERR_WORKER_INIT_FAILED at a pids limit, a script that cannot be loaded). */
export class ThreadStartError extends Error {
  override name = 'ThreadStartError'
  constructor (override readonly cause: Error) {
    super(cause.message)
  }
}

/**
 * The thread's heap has the same limit as the event loop's: running out of it ends the
 * process, as a body parsed on the event loop would (Node cannot promise to end only the
 * thread: resourceLimits' termination is best-effort), so its limit is not lowered.
 */
export class JobThread {
  readonly #script: URL
  readonly #idleStopMs: number
  readonly #on: JobThreadEvents
  #thread: Worker | undefined
  #starts = 0
  #idleTimer: NodeJS.Timeout | undefined

  constructor (script: URL, idleStopMs: number, on: JobThreadEvents) {
    this.#script = script
    this.#idleStopMs = idleStopMs
    this.#on = on
  }

  /** How often the thread was started: again after it failed, or after it ended idle. */
  get starts (): number { return this.#starts }
  get isRunning (): boolean { return this.#thread !== undefined }

  /**
   * Sends a job (its bytes moved, not copied), starting the thread if none runs. Throws
   * ThreadStartError when no thread can be started (a pids limit, say; nothing was sent),
   * anything else when the job cannot be sent.
   */
  send (id: number, job: Job): void {
    this.#cancelIdleStop()
    const thread = this.#thread ?? this.#start()
    const bytes = ownBytes(job.op === 'input' ? job.bytes : job.frame)
    const moved = job.op === 'input' ? { ...job, bytes } : { ...job, frame: bytes }
    thread.postMessage({ id, job: moved } satisfies JobMessage, [bytes.buffer as ArrayBuffer])
    thread.ref() // while a job runs: an idle thread must not keep the process alive
  }

  /** No job runs or waits: the thread ends after IDLE_STOP_MS unless send() comes first. */
  idle (): void {
    this.#cancelIdleStop()
    if (this.#thread !== undefined) this.#idleTimer = setTimeout(this.#stopIdle, this.#idleStopMs).unref()
  }

  /** Ends the thread now; a job it was running gets no outcome. */
  async stop (): Promise<void> {
    this.#cancelIdleStop()
    const thread = this.#thread
    this.#thread = undefined
    if (thread !== undefined) await thread.terminate()
  }

  #cancelIdleStop (): void {
    clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
  }

  readonly #stopIdle = (): void => {
    this.#idleTimer = undefined
    // Forgotten first: a job sent from now on starts a new thread, and this one's exit says nothing.
    const thread = this.#thread
    this.#thread = undefined
    void thread?.terminate()
  }

  #start (): Worker {
    let thread: Worker
    try {
      thread = new Worker(this.#script, { name: 'pyfleet-offload' })
    } catch (error) {
      throw new ThreadStartError(error as Error)
    }
    this.#starts++
    thread.unref()
    thread.on('message', (message: OutcomeMessage | StartedMessage) => {
      if ('started' in message) {
        this.#on.started(message.id)
        return
      }
      thread.unref()
      this.#on.done(message)
    })
    let reason: string | undefined
    // A process limit reached as it started says which limit (process-limit.ts), as the start's own failure does.
    thread.on('error', (error) => { reason = messageWithLimitAdvice(error) })
    thread.on('exit', (code) => {
      // Ended on purpose (idle, or stopped): whoever ended it has settled what it had.
      if (this.#thread !== thread) return
      this.#thread = undefined
      this.#on.stopped(reason ?? `it exited with code ${code}`)
    })
    this.#thread = thread
    return thread
  }
}
