// Keeps the event loop serving while large bodies and results are converted. Parsing,
// checking and encoding a body of megabytes takes the event loop for as long as it
// takes: a 16 MiB JSON body of distinct keys held it for 1.6 s, and its answer for
// as long again, during which no other request, /health or /metrics was answered.
// Bodies and reply frames of at least OFFLOAD_MIN_BYTES go to one worker thread
// instead (offload-thread.ts), started at the first of them. One thread: the work is
// the same whichever thread does it, and one more thread beside Node and the Python
// workers is what a small machine can spare. Jobs run one at a time, in order.
// The thread ends after IDLE_STOP_MS without a job: the heap a hostile body grew
// (hundreds of MB for 16 MiB of distinct keys) goes with it, instead of staying
// for the life of the process as the event loop's heap does.

import { Worker } from 'node:worker_threads'
import { getHeapStatistics } from 'node:v8'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyBaseLogger } from 'fastify'
import { ReceiveFullError, errorOfCode, withExtras } from '../errors.js'
import { markAsBodyParseError } from '../connection-reuse.js'
import { EncodedInput, type DeferredReply, type TaskInfo } from '../pool/protocol.js'
import type { TaskInput } from '../routes/body.js'
import type { AnswerFormat, PendingBody } from './encoded.js'
import { ownBytes, type Job, type JobOutcome } from './jobs.js'
import type { JobMessage, OutcomeMessage } from './offload-thread.js'

// offload-thread.js beside this file in dist/; offload-thread.ts beside it in src/ (tests,
// whose worker threads inherit the TypeScript loader in execArgv).
const THREAD_SCRIPT = new URL(`./offload-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url)

/** How long the thread waits for another job before it ends (the next large body starts it again, in ~40 ms). */
export const IDLE_STOP_MS = 30_000

/** What input() needs of a task. */
interface SchemaHolder { readonly name: string, readonly schema: TaskInfo['schema'] }

export interface OffloaderOptions {
  /** Bodies and reply frames of at least this many bytes go to the thread; 0: none do. */
  minBytes: number
  /** The most body bytes that may wait for the thread at once (RECEIVE_LIMIT_BYTES); 0: no limit. */
  maxPendingBytes: number
  log: FastifyBaseLogger
  /** A body refused because maxPendingBytes were waiting (counted with RECEIVE_FULL's other refusals). */
  onRefused?: () => void
  /** A job is done (whatever its outcome): for pyfleet_offload_jobs_total. */
  onJobDone?: (op: Job['op']) => void
  /** The thread's script; tests give one that fails. */
  script?: URL
  /** IDLE_STOP_MS, shorter in tests. */
  idleStopMs?: number
}

/** A job's promise, and the body bytes it holds against maxPendingBytes. */
interface Pending {
  resolve: (outcome: JobOutcome) => void
  reject: (error: Error) => void
  bodyBytes: number
  op: Job['op']
}

/** The thread stopped (a bug in it, or out of memory) while a job was waiting for it. */
export class OffloadThreadError extends Error {
  override name = 'OffloadThreadError'
}

export class Offloader {
  readonly #options: OffloaderOptions
  #thread: Worker | undefined
  readonly #pending = new Map<number, Pending>()
  #nextId = 0
  #pendingBodyBytes = 0
  #threadStarts = 0
  #closed = false
  #idleTimer: NodeJS.Timeout | undefined
  /** Each task's schema as JSON, made once per task (a reload makes new Task objects). */
  readonly #schemaKeys = new WeakMap<SchemaHolder, string>()

  constructor (options: OffloaderOptions) {
    this.#options = options
  }

  /** Whether a body or frame of `bytes` is converted on the thread. */
  takes (bytes: number): boolean {
    return this.#options.minBytes > 0 && bytes >= this.#options.minBytes
  }

  get minBytes (): number { return this.#options.minBytes }
  /** Jobs sent to the thread and not yet answered. */
  get pendingJobs (): number { return this.#pending.size }
  /** Body bytes waiting for the thread (counted against maxPendingBytes). */
  get pendingBodyBytes (): number { return this.#pendingBodyBytes }
  /** How often the thread was started: again after it failed, or after it ended idle. */
  get threadStarts (): number { return this.#threadStarts }
  /** Whether the thread is running now (it starts with the first job, and ends after IDLE_STOP_MS without one). */
  get threadRunning (): boolean { return this.#thread !== undefined }

  /**
   * A large body as `task`'s input, parsed, checked and encoded on the thread. Throws what
   * the event loop's path would (400, 415: routes/body.ts), and 503 RECEIVE_FULL when
   * maxPendingBytes of other bodies are waiting for the thread already. `parseOnly`: the
   * body is only parsed (its errors thrown); the input returned is then empty.
   */
  async input (task: SchemaHolder, body: PendingBody, parseOnly = false): Promise<TaskInput> {
    const bytes = body.bytes.length
    const limit = this.#options.maxPendingBytes
    if (limit > 0 && this.#pendingBodyBytes > 0 && this.#pendingBodyBytes + bytes > limit) {
      this.#options.onRefused?.()
      const message = `${this.#pendingBodyBytes} bytes of other request bodies are waiting to be parsed, and this one's ${bytes} would pass RECEIVE_LIMIT_BYTES=${limit}; retry later`
      throw withExtras(new ReceiveFullError(message), { retryAfterSeconds: 1 })
    }
    const job: Job = { op: 'input', kind: body.kind, bytes: ownBytes(body.bytes), schema: task.schema, schemaKey: this.#schemaKey(task), parseOnly }
    const outcome = await this.#run(job, bytes)
    if (outcome.t === 'refused') {
      const { code, message, details, parsing } = outcome.error
      const error = errorOfCode(code, message, details)
      // Answered as the content-type parser's errors are on the event loop (connection-reuse.ts).
      if (parsing) markAsBodyParseError(error)
      throw error
    }
    if (outcome.t === 'parsed') return { input: undefined, holdsWideNumbers: false }
    if (outcome.t !== 'input') throw new Error(`the offload thread answered an input job with ${outcome.t}`)
    // Widened already, if it held integers past 32 bits: holdsWideNumbers is for values still to be encoded.
    return { input: new EncodedInput(outcome.bytes), holdsWideNumbers: false }
  }

  /**
   * A large reply frame decoded and written as the answer, in `format`. A thread that
   * fails is not the worker's doing: the caller turns OffloadThreadError into a 500.
   */
  async answer (reply: DeferredReply, format: AnswerFormat): Promise<JobOutcome> {
    const outcome = await this.#run({ op: 'answer', frame: ownBytes(reply.frame), callId: reply.id, format }, 0)
    return outcome
  }

  /** Stops the thread (after the pool has drained: no job is waiting any more). */
  async close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#idleTimer)
    const thread = this.#thread
    this.#thread = undefined
    if (thread !== undefined) await thread.terminate()
    for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(new OffloadThreadError('the server is shutting down'))
  }

  #schemaKey (task: SchemaHolder): string {
    let key = this.#schemaKeys.get(task)
    if (key === undefined) {
      key = JSON.stringify(task.schema)
      this.#schemaKeys.set(task, key)
    }
    return key
  }

  #run (job: Job, bodyBytes: number): Promise<JobOutcome> {
    if (this.#closed) return Promise.reject(new OffloadThreadError('the server is shutting down'))
    const thread = this.#thread ?? this.#start()
    clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
    const id = ++this.#nextId
    const bytes = job.op === 'input' ? job.bytes : job.frame
    return new Promise<JobOutcome>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, bodyBytes, op: job.op })
      this.#pendingBodyBytes += bodyBytes
      // Held while a job waits: an idle thread must not keep the process alive.
      if (this.#pending.size === 1) thread.ref()
      thread.postMessage({ id, job } satisfies JobMessage, [bytes.buffer as ArrayBuffer])
    })
  }

  #settle (id: number): Pending | undefined {
    const pending = this.#pending.get(id)
    if (pending === undefined) return undefined
    this.#pending.delete(id)
    this.#pendingBodyBytes -= pending.bodyBytes
    if (this.#pending.size === 0 && this.#thread !== undefined) {
      this.#thread.unref()
      this.#idleTimer = setTimeout(this.#stopIdle, this.#options.idleStopMs ?? IDLE_STOP_MS).unref()
    }
    return pending
  }

  readonly #stopIdle = (): void => {
    this.#idleTimer = undefined
    const thread = this.#thread
    if (thread === undefined || this.#pending.size > 0) return
    // Forgotten first: a job sent from now on starts a new thread, and this one's exit says nothing.
    this.#thread = undefined
    void thread.terminate()
  }

  #start (): Worker {
    this.#threadStarts++
    // The main thread's heap limit: past it, the thread alone ends (ERR_WORKER_OUT_OF_MEMORY)
    // and its jobs fail, instead of the whole process.
    const heapMb = Math.floor(getHeapStatistics().heap_size_limit / 1024 / 1024)
    const thread = new Worker(this.#options.script ?? THREAD_SCRIPT, { name: 'pyfleet-offload', resourceLimits: { maxOldGenerationSizeMb: heapMb } })
    thread.unref()
    thread.on('message', ({ id, outcome, failed }: OutcomeMessage) => {
      const pending = this.#settle(id)
      if (pending === undefined) return
      this.#options.onJobDone?.(pending.op)
      if (outcome !== undefined) pending.resolve(outcome)
      else pending.reject(new OffloadThreadError(`the offload thread failed: ${failed ?? 'no reason given'}`))
    })
    let reason: string | undefined
    thread.on('error', (error) => { reason = error.message })
    thread.on('exit', (code) => {
      // Ended on purpose (idle, or closed): whoever ended it has settled what it had.
      if (this.#thread !== thread) return
      this.#thread = undefined
      const why = reason ?? `it exited with code ${code}`
      if (this.#pending.size > 0 || reason !== undefined) this.#options.log.error({ jobs: this.#pending.size }, `the offload thread stopped: ${why}; its jobs failed, and the next large body starts a new one`)
      for (const id of [...this.#pending.keys()]) this.#settle(id)?.reject(new OffloadThreadError(`the offload thread stopped: ${why}`))
    })
    this.#thread = thread
    return thread
  }
}
