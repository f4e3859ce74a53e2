// Converts large bodies and replies on one Node thread (offload-thread.ts), so that
// the event loop goes on serving meanwhile: without it, a 16 MiB JSON body of
// distinct keys held the event loop for 1.6 s on its way in and as long on its way out.

import type { IncomingMessage } from 'node:http'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyBaseLogger } from 'fastify'
import { MAX_TIMER_MS } from '../config.js'
import { errorOfCode, expectedRefusal } from '../errors.js'
import { checkedTooLong, OffloadCancelledError, OffloadThreadError, shuttingDown, waitedTooLong } from './offload-errors.js'
import { markAsBodyParseError } from '../connection-reuse.js'
import { EncodedInput, type DeferredReply } from '../pool/protocol.js'
import { queueWaitLimit } from '../pool/budget-timer.js'
import { OBJECTS_OFFLOAD_DIVISOR } from '../value-shape.js'
import type { ResultCheck } from '../pool/result-check.js'
import type { TaskInfo } from '../pool/ready-message.js'
import type { TaskInput } from '../routes/body.js'
import type { AnswerFormat, PendingBody } from './encoded.js'
import type { AnswerJob, Job, JobOutcome } from './jobs.js'
import { JobQueue } from './job-queue.js'
import { IDLE_STOP_MS, JobThread } from './job-thread.js'
import type { OutcomeMessage } from './offload-thread.js'

// offload-thread.js beside this file in dist/; offload-thread.ts beside it in src/ (tests,
// whose threads inherit the TypeScript loader in execArgv).
const THREAD_SCRIPT = new URL(`./offload-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url)

/**
 * A raw text body goes to the thread from this many times OFFLOAD_MIN_BYTES (2 MiB by
 * default): decoding text costs about a tenth of what parsing JSON does per byte, and
 * below that the thread's own cost per job outweighs the stall it saves (1 MB of XML
 * through the thread: ×0.94 req/s, paired, for ~1.5 ms of event loop it kept free).
 */
export const TEXT_OFFLOAD_FACTOR = 8


/** What input() needs of a task. */
interface SchemaHolder { readonly name: string, readonly schema: TaskInfo['schema'] }


export interface InputOptions {
  /** Only parse the body (its errors thrown); the input returned is then empty. */
  parseOnly?: boolean
  /** Subscribes to the client leaving (returns the unsubscribe): a body still waiting is dropped then. */
  onClientGone?: (drop: () => void) => () => void
  /** The client's x-request-timeout-ms: a body still waiting when it runs out is answered 503 QUEUE_TIMEOUT. */
  budgetMs?: number
  /** The request the body came with, whose share of RECEIVE_LIMIT_BYTES the body keeps. */
  request?: IncomingMessage
  /** The task's timeout: the longest the thread may work on the body (504 TASK_TIMEOUT past it, and a new thread). */
  timeLimitMs?: number
}

export interface OffloaderOptions {
  /** Bodies and reply frames of at least this many bytes go to the thread; 0: none do. */
  minBytes: number
  /** QUEUE_TIMEOUT_MS: the longest a body waits for the thread, as a call waits for a worker (503 QUEUE_TIMEOUT past it). */
  queueTimeoutMs?: number
  log: FastifyBaseLogger
  /**
   * Counts a body waiting for the thread against RECEIVE_LIMIT_BYTES (routes/receive-limit.ts
   * holdArrived), taking over the share its request held while it arrived: throws
   * RECEIVE_FULL past it; returns the function that gives it back.
   */
  holdBody?: (bytes: number, request?: IncomingMessage) => () => void
  /** The thread has done a job: for pyfleet_offload_jobs_total. */
  onJobDone?: (op: Job['op']) => void
  /** The thread's script; tests give one that fails. */
  script?: URL
  /** IDLE_STOP_MS, shorter in tests. */
  idleStopMs?: number
}

/** A job waiting for the thread or running on it, with its promise. */
interface Queued {
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
}

/** An input, and how long its body waited for the thread (which counts against the client's budget). */
export interface OffloadedInput extends TaskInput {
  waitedMs: number
}


/**
 * One thread, started at the first job and ended after IDLE_STOP_MS without one: the
 * heap a body shaped to cost grows (hundreds of MB for 16 MiB of distinct keys) goes
 * with it, rather than staying for the life of the process as the event loop's does.
 * One thread, because the work costs the same CPU on any thread, and one more beside
 * Node and the Python workers is what a small machine can spare. Jobs wait here, not
 * in the thread's message queue, and go to it one at a time: answers first (each holds
 * a worker, which must not wait behind other clients' bodies; at most
 * MAX_ANSWERS_IN_A_ROW before a waiting body: job-queue.ts), then bodies in order. A body whose
 * client leaves, whose budget runs out, or that still waits when the server drains is
 * dropped at once, before it costs anything.
 */
export class Offloader {
  readonly #options: OffloaderOptions
  readonly #thread: JobThread
  readonly #waiting = new JobQueue<Queued>()
  /** The job the thread is running. */
  #running: Queued | undefined
  /** open; draining: bodies are refused, answers go on; closed: the thread is stopped. */
  #phase: 'open' | 'draining' | 'closed' = 'open'
  #nextId = 0
  #pendingBodyBytes = 0
  /** Each task's schema as JSON, made once per task (a reload makes new Task objects). */
  readonly #schemaKeys = new WeakMap<SchemaHolder, string>()

  constructor (options: OffloaderOptions) {
    this.#options = options
    this.#thread = new JobThread(options.script ?? THREAD_SCRIPT, options.idleStopMs ?? IDLE_STOP_MS, {
      started: (id) => { this.#onStarted(id) },
      done: (message) => { this.#onDone(message) },
      stopped: (why) => { this.#onThreadStopped(why) }
    })
  }

  /** Whether a body or frame of `bytes` is converted on the thread. */
  takes (bytes: number): boolean {
    return this.#options.minBytes > 0 && bytes >= this.#options.minBytes
  }

  /**
   * Whether a msgpack body smaller than that, holding `objects` maps, arrays and bins, is
   * decoded on the thread all the same (OBJECTS_OFFLOAD_DIVISOR).
   */
  takesObjects (objects: number): boolean {
    return this.#options.minBytes > 0 && objects >= this.#options.minBytes / OBJECTS_OFFLOAD_DIVISOR
  }

  /** Whether a raw text body of `bytes` is decoded on the thread (TEXT_OFFLOAD_FACTOR). */
  takesText (bytes: number): boolean {
    return this.#options.minBytes > 0 && bytes >= this.#options.minBytes * TEXT_OFFLOAD_FACTOR
  }

  get minBytes (): number { return this.#options.minBytes }
  /** Jobs waiting for the thread or running on it. */
  get pendingJobs (): number { return this.#waiting.size + (this.#running === undefined ? 0 : 1) }
  /** Body bytes waiting for the thread or being parsed on it. */
  get pendingBodyBytes (): number { return this.#pendingBodyBytes }
  /** How often the thread was started: again after it failed, or after it ended idle. */
  get threadStarts (): number { return this.#thread.starts }
  /** Whether the thread is running now. */
  get threadRunning (): boolean { return this.#thread.isRunning }

  /**
   * A large body as `task`'s input, parsed, checked and encoded on the thread. Throws what
   * the event loop's path would (400, 415: routes/body.ts); 503 RECEIVE_FULL when the bodies
   * waiting would pass RECEIVE_LIMIT_BYTES; 503 WORKERS_UNAVAILABLE while the server drains;
   * 503 QUEUE_TIMEOUT when its budget runs out while it waits; OffloadCancelledError when
   * its client leaves while it waits.
   */
  async input (task: SchemaHolder, body: PendingBody, { parseOnly = false, onClientGone, budgetMs, request, timeLimitMs = Infinity }: InputOptions = {}): Promise<OffloadedInput> {
    if (this.#isDraining()) throw expectedRefusal(shuttingDown())
    const bytes = body.bytes.length
    const release = this.#options.holdBody?.(bytes, request) ?? (() => {})
    const job: Job = { op: 'input', kind: body.kind, bytes: body.bytes, raw: body.raw, schema: task.schema, schemaKey: this.#schemaKey(task), parseOnly }
    let queued: Queued | undefined
    const overran = (): Error => checkedTooLong(task.name, timeLimitMs)
    const outcome = await this.#enqueue(job, bytes, release, { timeLimitMs, overran }, (waiting) => {
      queued = waiting
      let unsubscribe: (() => void) | undefined
      let timer: NodeJS.Timeout | undefined
      let ended = false
      // In place before anything can drop the job: a drop ends what watches it.
      waiting.unwatch = () => {
        ended = true
        unsubscribe?.()
        clearTimeout(timer)
      }
      unsubscribe = onClientGone?.(() => { this.#drop(waiting, new OffloadCancelledError('the client left before its body was parsed')) })
      if (ended) unsubscribe?.()
      else timer = this.#waitLimit(waiting, budgetMs)
    })
    const waitedMs = queued?.waitedMs ?? 0
    if (outcome.t === 'refused') {
      const { code, message, details, parsing } = outcome.error
      const error = errorOfCode(code, message, details)
      // Answered as the content-type parser's errors are on the event loop (connection-reuse.ts).
      if (parsing) markAsBodyParseError(error)
      throw error
    }
    if (outcome.t === 'parsed') return { input: undefined, holdsWideNumbers: false, waitedMs }
    if (outcome.t !== 'input') throw new Error(`the offload thread answered an input job with ${outcome.t}`)
    // Widened already, if it held integers past 32 bits: holdsWideNumbers is for values still to be encoded.
    return { input: new EncodedInput(outcome.bytes), holdsWideNumbers: false, waitedMs }
  }

  /**
   * A large reply frame decoded and written as the answer, in `format`. Goes before bodies
   * waiting (up to four in a row: job-queue.ts): its worker is held until it is done. Rejects with OffloadThreadError
   * when the thread cannot do it (not the worker's doing: the caller answers 500), or
   * works on it past `timeLimitMs` (the task's timeout; the thread is ended then).
   */
  async answer (reply: DeferredReply, format: AnswerFormat, checkAgainst?: Pick<ResultCheck, 'outputSchema' | 'schemaKey'>, timeLimitMs = Infinity): Promise<JobOutcome> {
    const job: AnswerJob = { op: 'answer', frame: reply.frame, callId: reply.id, format }
    // VALIDATE_RESULTS: checked on the thread too, as call-run.ts checks replies decoded on the event loop.
    if (checkAgainst !== undefined) job.result = { schema: checkAgainst.outputSchema, schemaKey: checkAgainst.schemaKey }
    const overran = (): Error => new OffloadThreadError(`writing the answer took longer than the task's timeout (${timeLimitMs} ms), and was stopped`)
    return await this.#enqueue(job, 0, () => {}, { timeLimitMs, overran })
  }

  /**
   * The server drains: bodies waiting are answered 503 WORKERS_UNAVAILABLE now, and so are
   * those that come later, rather than be parsed for calls that cannot run. Answers go on:
   * their calls were admitted, and the drain waits for them.
   */
  drain (): void {
    if (this.#phase === 'open') this.#phase = 'draining'
    for (const waiting of this.#waiting.inputs()) this.#drop(waiting, shuttingDown())
  }

  /**
   * Stops the thread, after the pool has drained: what still waits is a body whose call
   * could not run any more (503), or, past the drain's grace, an answer nobody will read.
   */
  async close (): Promise<void> {
    this.#phase = 'closed'
    await this.#thread.stop()
    const left = this.#waiting.clear()
    if (this.#running !== undefined) left.push(this.#running)
    this.#running = undefined
    for (const queued of left) this.#fail(queued, queued.job.op === 'input' ? shuttingDown() : new OffloadThreadError('the server shut down before the answer was written'))
  }

  /**
   * Drops a waiting body when its client's budget or QUEUE_TIMEOUT_MS runs out, whichever
   * is first, with the 503 QUEUE_TIMEOUT a call waiting that long for a worker gets.
   */
  #waitLimit (waiting: Queued, budgetMs: number | undefined): NodeJS.Timeout | undefined {
    const { limitMs, byBudget } = queueWaitLimit(budgetMs, this.#options.queueTimeoutMs ?? Infinity)
    if (!Number.isFinite(limitMs)) return undefined
    // Capped: Node fires a longer timer at once (a budget header may have any number of digits).
    return setTimeout(() => { this.#drop(waiting, waitedTooLong(limitMs, byBudget)) }, Math.min(limitMs, MAX_TIMER_MS))
  }

  #isDraining (): boolean {
    return this.#phase !== 'open'
  }

  /** A schema's JSON, the thread's cache key for its validator, made once per task object (a reload makes new ones). */
  #schemaKey (task: SchemaHolder): string {
    let key = this.#schemaKeys.get(task)
    if (key === undefined) {
      key = JSON.stringify(task.schema)
      this.#schemaKeys.set(task, key)
    }
    return key
  }

  /** Queues a job; `watch` starts watching it while it waits, and sets its `unwatch`. */
  #enqueue (job: Job, bodyBytes: number, release: () => void, limit: Pick<Queued, 'timeLimitMs' | 'overran'>, watch?: (queued: Queued) => void): Promise<JobOutcome> {
    if (this.#phase === 'closed') {
      release()
      return Promise.reject(job.op === 'input' ? shuttingDown() : new OffloadThreadError('the server shut down before the answer was written'))
    }
    return new Promise<JobOutcome>((resolve, reject) => {
      const queued: Queued = { id: ++this.#nextId, job, resolve, reject, bodyBytes, release, queuedAt: performance.now(), waitedMs: 0, unwatch: () => {}, bytes: job.op === 'input' ? job.bytes.length : job.frame.length, ...limit, limitTimer: undefined }
      this.#waiting.push(queued)
      this.#pendingBodyBytes += bodyBytes
      watch?.(queued)
      this.#pump()
    })
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
      } catch (error) {
        // No thread could be started (a pids limit, say), or the job could not be sent.
        this.#fail(next, new OffloadThreadError(`the offload thread could not take the job: ${(error as Error).message}`))
      }
    }
  }

  /** Takes a job that still waits out of its queue, and fails it with `error` (a job already running is left to end). */
  #drop (queued: Queued, error: Error): void {
    if (this.#waiting.remove(queued)) this.#fail(queued, error)
  }

  #finish (queued: Queued): void {
    queued.unwatch()
    clearTimeout(queued.limitTimer)
    this.#pendingBodyBytes -= queued.bodyBytes
    queued.release()
  }

  #fail (queued: Queued, error: Error): void {
    this.#finish(queued)
    queued.reject(error)
  }

  /** The thread began the running job: its time limit counts from now, not from a new thread's start-up. */
  #onStarted (id: number): void {
    const running = this.#running
    if (running === undefined || running.id !== id || !Number.isFinite(running.timeLimitMs)) return
    // Capped: Node fires a longer timer at once.
    running.limitTimer = setTimeout(() => { this.#overran(running) }, Math.min(running.timeLimitMs, MAX_TIMER_MS))
  }

  #onDone ({ id, outcome, failed }: OutcomeMessage): void {
    const running = this.#running
    if (running === undefined || running.id !== id) return
    this.#running = undefined
    this.#finish(running)
    if (outcome !== undefined) {
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
