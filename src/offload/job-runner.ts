// The jobs waiting for the offload thread and the one running on it (offloader.ts makes
// them): each job's promise, the body bytes it holds, its time limit on the thread, and how
// it ends (its outcome, its overrun, the thread's loss, the shutdown). job-queue.ts picks
// which goes next; job-thread.ts is the thread.

import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyBaseLogger } from 'fastify'
import { MAX_TIMER_MS } from '../config.js'
import { OffloadThreadError, shuttingDown } from './offload-errors.js'
import type { Job, JobOutcome } from './jobs.js'
import { JobQueue } from './job-queue.js'
import { IDLE_STOP_MS, JobThread, ThreadStartError } from './job-thread.js'
import { JobExecutor } from './job-executor.js'
import { ThreadPace } from './thread-pace.js'
import type { OutcomeMessage } from './offload-thread.js'
import { isProcessLimit, messageWithLimitAdvice } from '../process-limit.js'

// offload-thread.js beside this file in dist/; offload-thread.ts beside it in src/ (tests,
// whose threads inherit the TypeScript loader in execArgv).
const THREAD_SCRIPT = new URL(`./offload-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url)

export interface JobRunnerOptions {
  log: FastifyBaseLogger
  /** The thread has done a job: for pyfleet_offload_jobs_total. */
  onJobDone?: (op: Job['op']) => void
  /** The thread's script; tests give one that fails. */
  script?: URL
  /** IDLE_STOP_MS, shorter in tests. */
  idleStopMs?: number
}

/** A job waiting for the thread or running on it, with its promise. */
export interface Queued {
  id: number
  job: Job
  resolve: (outcome: JobOutcome) => void
  reject: (error: Error) => void
  /** The body bytes it holds against RECEIVE_LIMIT_BYTES (0 for answers), and how to give them back. */
  bodyBytes: number
  release: () => void
  /** When it was queued (performance.now()), and how long it waited before the thread took it. */
  queuedAt: number
  waitedMs: number
  /** Ends what watches it while it waits (its client leaving, its budget): called when it starts or ends. */
  unwatch: () => void
  /** The job's size (its bytes move to the thread when it starts), for the log. */
  bytes: number
  /** The longest the thread may run it, and what it fails with past that (the thread is ended then). */
  timeLimitMs: number
  overran: () => Error
  /** Set while it runs with a time limit. */
  limitTimer: NodeJS.Timeout | undefined
  /** When the thread began it (performance.now()), for the thread's pace. */
  startedAt: number | undefined
}

/**
 * Jobs wait here, not in the thread's message queue, and go to it one at a time: answers
 * first (each holds a worker, which must not wait behind other clients' bodies; at most
 * MAX_ANSWERS_IN_A_ROW before a waiting body: job-queue.ts), then bodies in order.
 */
export class JobRunner {
  readonly #options: JobRunnerOptions
  readonly #thread: JobThread
  readonly #waiting = new JobQueue<Queued>()
  /** The job the thread is running. */
  #running: Queued | undefined
  /** open; draining: bodies are refused, answers go on; closed: the thread is stopped. */
  #phase: 'open' | 'draining' | 'closed' = 'open'
  #nextId = 0
  #pendingBodyBytes = 0
  /** Bytes of every job waiting or running, answers too: what the thread has ahead of it. */
  #pendingJobBytes = 0
  readonly #pace = new ThreadPace()
  /**
   * Runs jobs on the event loop while no thread can be started for want of processes or
   * threads (a pids limit): made at the first such job, kept for the next.
   */
  #executor: JobExecutor | undefined
  /** Jobs are being run on the event loop: said once in the log, until a thread starts again. */
  #onEventLoop = false

  constructor (options: JobRunnerOptions) {
    this.#options = options
    this.#thread = new JobThread(options.script ?? THREAD_SCRIPT, options.idleStopMs ?? IDLE_STOP_MS, {
      started: (id) => { this.#onStarted(id) },
      done: (message) => { this.#onDone(message) },
      stopped: (why) => { this.#onThreadStopped(why) }
    })
  }

  /** Jobs waiting for the thread or running on it. */
  get pendingJobs (): number { return this.#waiting.size + (this.#running === undefined ? 0 : 1) }
  /** Body bytes waiting for the thread or being parsed on it. */
  get pendingBodyBytes (): number { return this.#pendingBodyBytes }
  /** How often the thread was started: again after it failed, or after it ended idle. */
  get threadStarts (): number { return this.#thread.starts }
  /** Whether the thread is running now. */
  get threadRunning (): boolean { return this.#thread.isRunning }

  /**
   * Retry-After for a body whose wait ran out: about how long the thread needs for what it
   * has waiting and running, at the pace of its recent jobs (thread-pace.ts).
   */
  retryAfterSeconds (): number {
    return this.#pace.retryAfterSeconds(this.#pendingJobBytes)
  }

  /** Whether bodies are refused: the server drains, or has closed. */
  get isDraining (): boolean {
    return this.#phase !== 'open'
  }

  /**
   * Queues a job; `watch` starts watching it while it waits, and sets its `unwatch`.
   * `release` gives back its `bodyBytes` when it ends (at once, if the thread is stopped).
   */
  enqueue (job: Job, bodyBytes: number, release: () => void, limit: Pick<Queued, 'timeLimitMs' | 'overran'>, watch?: (queued: Queued) => void): Promise<JobOutcome> {
    if (this.#phase === 'closed') {
      release()
      return Promise.reject(job.op === 'input' ? shuttingDown() : new OffloadThreadError('the server shut down before the answer was written'))
    }
    return new Promise<JobOutcome>((resolve, reject) => {
      const queued: Queued = { id: ++this.#nextId, job, resolve, reject, bodyBytes, release, queuedAt: performance.now(), waitedMs: 0, unwatch: () => {}, bytes: job.op === 'input' ? job.bytes.length : job.frame.length, ...limit, limitTimer: undefined, startedAt: undefined }
      this.#waiting.push(queued)
      this.#pendingBodyBytes += bodyBytes
      this.#pendingJobBytes += queued.bytes
      watch?.(queued)
      this.#pump()
    })
  }

  /** Takes a job that still waits out of its queue, and fails it with `error` (a job already running is left to end). */
  drop (queued: Queued, error: Error): void {
    if (this.#waiting.remove(queued)) this.#fail(queued, error)
  }

  /** Refuses bodies from now on, and fails those waiting with 503 WORKERS_UNAVAILABLE; answers go on. */
  drain (): void {
    if (this.#phase === 'open') this.#phase = 'draining'
    for (const waiting of this.#waiting.inputs()) this.drop(waiting, shuttingDown())
  }

  /** Stops the thread, then fails every job still waiting or running. */
  async close (): Promise<void> {
    this.#phase = 'closed'
    await this.#thread.stop()
    const left = this.#waiting.clear()
    if (this.#running !== undefined) left.push(this.#running)
    this.#running = undefined
    for (const queued of left) this.#fail(queued, queued.job.op === 'input' ? shuttingDown() : new OffloadThreadError('the server shut down before the answer was written'))
  }

  /** Sends the next job to the thread, if it is free. */
  #pump (): void {
    while (this.#running === undefined && this.#phase !== 'closed') {
      const next = this.#waiting.next()
      if (next === undefined) {
        this.#thread.idle()
        return
      }
      next.unwatch()
      next.waitedMs = performance.now() - next.queuedAt
      try {
        this.#thread.send(next.id, next.job)
        this.#running = next
        this.#backOnThread()
      } catch (error) {
        if (error instanceof ThreadStartError && isProcessLimit(error.cause)) {
          this.#runOnEventLoop(next, error.cause)
          continue
        }
        // A thread that cannot be loaded (a broken install), or a job that cannot be sent: a bug to report.
        this.#fail(next, new OffloadThreadError(`the offload thread could not take the job: ${messageWithLimitAdvice(error as Error)}`))
      }
    }
  }

  /**
   * No thread can be started for want of processes or threads: the job is done here, as it is
   * with OFFLOAD_MIN_BYTES=0, rather than fail a call the server can answer. The event loop
   * is held meanwhile (tens of ms per MiB, seconds for 16 MiB shaped to cost), and the job's
   * time limit cannot stop it; the next job tries a thread again.
   */
  #runOnEventLoop (queued: Queued, why: Error): void {
    if (!this.#onEventLoop) {
      this.#onEventLoop = true
      this.#options.log.warn({ job: queued.job.op, bytes: queued.bytes }, `the offload thread could not be started: ${messageWithLimitAdvice(why)}. Large bodies and answers are converted on the event loop until it can be, which holds every other request while each one is`)
    }
    this.#executor ??= new JobExecutor()
    let outcome: JobOutcome
    try {
      outcome = this.#executor.run(queued.job)
    } catch (error) {
      this.#fail(queued, new OffloadThreadError(`converting on the event loop (no offload thread could be started) failed: ${(error as Error).message}`))
      return
    }
    this.#finish(queued)
    queued.resolve(outcome)
  }

  /** A thread started (or runs) again after jobs were run on the event loop: said in the log. */
  #backOnThread (): void {
    if (!this.#onEventLoop) return
    this.#onEventLoop = false
    this.#options.log.info('the offload thread started again: large bodies and answers are converted on it again')
  }

  #finish (queued: Queued): void {
    queued.unwatch()
    clearTimeout(queued.limitTimer)
    this.#pendingBodyBytes -= queued.bodyBytes
    this.#pendingJobBytes -= queued.bytes
    queued.release()
  }

  #fail (queued: Queued, error: Error): void {
    this.#finish(queued)
    queued.reject(error)
  }

  /** The thread began the running job: its time limit counts from now, not from a new thread's start-up. */
  #onStarted (id: number): void {
    const running = this.#running
    if (running === undefined || running.id !== id) return
    running.startedAt = performance.now()
    if (!Number.isFinite(running.timeLimitMs)) return
    // Capped: Node fires a longer timer at once.
    running.limitTimer = setTimeout(() => { this.#overran(running) }, Math.min(running.timeLimitMs, MAX_TIMER_MS))
  }

  #onDone ({ id, outcome, failed }: OutcomeMessage): void {
    const running = this.#running
    if (running === undefined || running.id !== id) return
    this.#running = undefined
    this.#finish(running)
    if (outcome !== undefined) {
      if (running.startedAt !== undefined) this.#pace.jobRan(running.bytes, performance.now() - running.startedAt)
      this.#options.onJobDone?.(running.job.op)
      running.resolve(outcome)
    } else {
      running.reject(new OffloadThreadError(`the offload thread failed: ${failed ?? 'no reason given'}`))
    }
    this.#pump()
  }

  /**
   * The running job passed its time limit: the thread is ended (a job cannot be stopped any
   * other way), the job fails, and the next one starts a new thread. RE2 is linear, but its
   * constant grows with a pattern's counted repetitions: an unanchored `[0-9a-f]{64}`
   * takes ~1 s per MiB of a value shaped to almost match it, and the thread would otherwise
   * hold every body and answer behind it, and the workers whose answers wait.
   */
  #overran (queued: Queued): void {
    if (this.#running !== queued) return
    this.#running = undefined
    void this.#thread.stop()
    const { bytes } = queued
    this.#options.log.warn({ job: queued.job.op, bytes, timeLimitMs: queued.timeLimitMs }, `the offload thread worked on a job of ${bytes} bytes past its task's timeout (${queued.timeLimitMs} ms); it was ended, and the next job starts a new one`)
    this.#fail(queued, queued.overran())
    this.#pump()
  }

  #onThreadStopped (why: string): void {
    const running = this.#running
    this.#running = undefined
    this.#options.log.error({ job: running?.job.op }, `the offload thread stopped: ${why}; ${running === undefined ? 'no job was running' : 'the job it was running failed'}, and the next job starts a new one`)
    if (running !== undefined) this.#fail(running, new OffloadThreadError(`the offload thread stopped: ${why}`))
    this.#pump()
  }
}
