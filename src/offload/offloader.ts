// Converts large bodies and replies on one Node thread (offload-thread.ts), so that
// the event loop goes on serving meanwhile: without it, a 16 MiB JSON body of
// distinct keys held the event loop for 1.6 s on its way in and as long on its way out.

import type { IncomingMessage } from 'node:http'
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
import { JobRunner, type JobRunnerOptions, type Queued } from './job-runner.js'

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

/** With the log, onJobDone, and in tests the thread's script and IDLE_STOP_MS (job-runner.ts). */
export interface OffloaderOptions extends JobRunnerOptions {
  /** Bodies and reply frames of at least this many bytes go to the thread; 0: none do. */
  minBytes: number
  /** QUEUE_TIMEOUT_MS: the longest a body waits for the thread, as a call waits for a worker (503 QUEUE_TIMEOUT past it). */
  queueTimeoutMs?: number
  /**
   * Counts a body waiting for the thread against RECEIVE_LIMIT_BYTES (routes/receive-limit.ts
   * holdArrived), taking over the share its request held while it arrived: throws
   * RECEIVE_FULL past it; returns the function that gives it back.
   */
  holdBody?: (bytes: number, request?: IncomingMessage) => () => void
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
 * Node and the Python workers is what a small machine can spare. Jobs wait for it, one at
 * a time, answers first (job-runner.ts). A body whose client leaves, whose budget runs out,
 * or that still waits when the server drains is dropped at once, before it costs anything.
 */
export class Offloader {
  readonly #options: OffloaderOptions
  readonly #jobs: JobRunner
  /** Each task's schema as JSON, made once per task (a reload makes new Task objects). */
  readonly #schemaKeys = new WeakMap<SchemaHolder, string>()

  constructor (options: OffloaderOptions) {
    this.#options = options
    this.#jobs = new JobRunner(options)
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
  get pendingJobs (): number { return this.#jobs.pendingJobs }
  /** Body bytes waiting for the thread or being parsed on it. */
  get pendingBodyBytes (): number { return this.#jobs.pendingBodyBytes }
  /** How often the thread was started: again after it failed, or after it ended idle. */
  get threadStarts (): number { return this.#jobs.threadStarts }
  /** Whether the thread is running now. */
  get threadRunning (): boolean { return this.#jobs.threadRunning }

  /**
   * A large body as `task`'s input, parsed, checked and encoded on the thread. Throws what
   * the event loop's path would (400, 415: routes/body.ts); 503 RECEIVE_FULL when the bodies
   * waiting would pass RECEIVE_LIMIT_BYTES; 503 WORKERS_UNAVAILABLE while the server drains;
   * 503 QUEUE_TIMEOUT when its budget runs out while it waits; OffloadCancelledError when
   * its client leaves while it waits.
   */
  async input (task: SchemaHolder, body: PendingBody, { parseOnly = false, onClientGone, budgetMs, request, timeLimitMs = Infinity }: InputOptions = {}): Promise<OffloadedInput> {
    if (this.#jobs.isDraining) throw expectedRefusal(shuttingDown())
    const bytes = body.bytes.length
    const release = this.#options.holdBody?.(bytes, request) ?? (() => {})
    const job: Job = { op: 'input', kind: body.kind, bytes: body.bytes, raw: body.raw, schema: task.schema, schemaKey: this.#schemaKey(task), parseOnly }
    let queued: Queued | undefined
    const overran = (): Error => checkedTooLong(task.name, timeLimitMs)
    const outcome = await this.#jobs.enqueue(job, bytes, release, { timeLimitMs, overran }, (waiting) => {
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
      unsubscribe = onClientGone?.(() => { this.#jobs.drop(waiting, new OffloadCancelledError('the client left before its body was parsed')) })
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
    return await this.#jobs.enqueue(job, 0, () => {}, { timeLimitMs, overran })
  }

  /**
   * The server drains: bodies waiting are answered 503 WORKERS_UNAVAILABLE now, and so are
   * those that come later, rather than be parsed for calls that cannot run. Answers go on:
   * their calls were admitted, and the drain waits for them.
   */
  drain (): void {
    this.#jobs.drain()
  }

  /**
   * Stops the thread, after the pool has drained: what still waits is a body whose call
   * could not run any more (503), or, past the drain's grace, an answer nobody will read.
   */
  async close (): Promise<void> {
    await this.#jobs.close()
  }

  /**
   * Drops a waiting body when its client's budget or QUEUE_TIMEOUT_MS runs out, whichever
   * is first, with the 503 QUEUE_TIMEOUT a call waiting that long for a worker gets.
   */
  #waitLimit (waiting: Queued, budgetMs: number | undefined): NodeJS.Timeout | undefined {
    const { limitMs, byBudget } = queueWaitLimit(budgetMs, this.#options.queueTimeoutMs ?? Infinity)
    if (!Number.isFinite(limitMs)) return undefined
    // Capped: Node fires a longer timer at once (a budget header may have any number of digits).
    return setTimeout(() => { this.#jobs.drop(waiting, waitedTooLong(limitMs, byBudget, this.#jobs.retryAfterSeconds())) }, Math.min(limitMs, MAX_TIMER_MS))
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
}
