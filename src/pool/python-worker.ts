// One Python worker: the ready message, one call at a time, stop, kill (what each way
// of failing is called: worker-failures.ts); its OS process is worker-process.ts, its start timeout
// start-wait.ts, a call's timeout call-deadline.ts. It knows nothing of pools or HTTP:
// worker-pool.ts decides what to do with a failed worker.

import type { FastifyBaseLogger } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { FrameDecoder, FrameError, HEADER_BYTES } from './frames.js'
import { WorkerProcess } from './worker-process.js'
import type { Killer } from './oom-kills.js'
import { CallOutputMarks } from './call-output-marks.js'
import { traceLogFieldsOf, type TraceContext, type TraceLogFields } from '../trace-context.js'
import { WorkerStderr } from './worker-stderr.js'
import { CallDeadline } from './call-deadline.js'
import { decodeReply, encodeCall, ProtocolError, MSG_DEFERRED, type DeferredReply, type ReplyMessage } from './protocol.js'
import { decodeReady, type ReadyMessage, type TaskInfo } from './ready-message.js'
import { StartWait } from './start-wait.js'
import { InputTooLargeError, WorkerCallError, WorkerStartError, type WorkerFailure } from './worker-failures.js'
import { msgpackObjects, OBJECTS_OFFLOAD_DIVISOR } from '../value-shape.js'

export type WorkerState = 'starting' | 'idle' | 'busy' | 'stopping' | 'dead'

export interface WorkerOptions {
  /** Slot number 1..N, stable across replacements (a metric label). */
  id: number
  python: string
  args: readonly string[]
  env: NodeJS.ProcessEnv
  cwd: string
  maxFrameBytes: number
  startTimeoutMs: number
  /** Aborts the start (kills the process) if it is still starting then: the server is shutting down. */
  signal?: AbortSignal
  log: FastifyBaseLogger
  /** Called once when the process has exited, whatever the reason. */
  onExit?: (worker: PythonWorker, code: number | null, signal: NodeJS.Signals | null) => void
  /** Stderr lines not logged, past the worker's log budget (counted for a metric). */
  onStderrDropped?: (lines: number) => void
  /**
   * Reply frames of at least this many bytes are not decoded here: the call resolves with
   * a DeferredReply holding the frame, for the offload thread (OFFLOAD_MIN_BYTES; 0: every frame is decoded).
   */
  offloadMinBytes?: number
}

/** The runtime's exit code when it refused a frame from us (EXIT_PROTOCOL_ERROR in workers/pyfleet/reporting.py). */
export const EXIT_PROTOCOL_ERROR = 5
/**
 * The ready message lists every task with its schema: with many tasks it can outgrow a small
 * MAX_FRAME_BYTES, which is about calls. It has a limit of its own, at least this.
 */
const READY_FRAME_MAX_BYTES = 16 * 1024 * 1024
/** The ready frame's limit, as its error names it: the user may have set MAX_FRAME_BYTES far lower, and the task table is what to shrink. */
const READY_FRAME_LIMIT = 'for the ready message, which lists every task with its schemas: MAX_FRAME_BYTES or 16 MiB, whichever is larger; raise MAX_FRAME_BYTES, or declare fewer or smaller schemas'
/** How long an exit may lag the end of the worker's stdout before the worker counts as mute. */
const STREAM_END_GRACE_MS = 500
/** The largest call id, a msgpack uint32 (workers/pyfleet/testing.py's WIDEST_CALL_ID). */
const MAX_CALL_ID = 2 ** 32 - 1
/** How long a failed start waits for its killed process to exit (a SIGKILL: at once, unless the kernel is stuck). */
const EXIT_AFTER_FAILED_START_MS = 2000
/** How long a worker past its call's timeout has to print its stacks (SIGUSR1) before its SIGKILL. */
const STACK_DUMP_MS = 100
/**
 * How long a worker past its start timeout has to print its stacks before its SIGKILL: the
 * start's failure quotes the frame they show, so this waits for it (and no longer), where a
 * call's dump is only logged.
 */
const START_STACK_DUMP_MS = 1000

/**
 * Whether a reply frame is decoded and made into its answer on the offload thread: from
 * OFFLOAD_MIN_BYTES, or from OFFLOAD_MIN_BYTES / 8 maps, arrays and bins in a smaller one
 * (an echo of 200 KB of empty maps held the event loop ~70–200 ms). Only frames that could
 * hold that many (one byte each) are counted: the usual small reply costs one comparison.
 */
function isForTheThread (frame: Buffer, offloadMinBytes: number): boolean {
  if (offloadMinBytes === 0) return false
  if (frame.length >= offloadMinBytes) return true
  // The frame's own map ({t, id, value}) aside: the value's count, as a body's is counted (takesObjects).
  const objects = offloadMinBytes / OBJECTS_OFFLOAD_DIVISOR + 1
  return frame.length >= objects && msgpackObjects(frame, objects) >= objects
}

export class PythonWorker {
  static #created = 0
  /** How many workers this process has created: the next one's `sequence` is this. */
  static get created (): number { return PythonWorker.#created }
  readonly id: number
  /** Order of creation (monotonic, unlike startedAt): which workers began starting before a reload. */
  readonly sequence = PythonWorker.#created++
  readonly startedAt = new Date()
  #state: WorkerState = 'starting'
  readonly #options: WorkerOptions
  readonly #process: WorkerProcess
  readonly #decoder: FrameDecoder
  readonly #log: FastifyBaseLogger
  #ready: ReadyMessage | undefined
  readonly #start: StartWait
  readonly #stderr: WorkerStderr
  // The call in flight: one at a time, so plain fields instead of a map.
  #callId = 0
  #task: string | undefined
  #requestId: string | undefined
  /** Request id and task for stderr lines: kept after the call ends, since stderr may lag the reply. */
  #logRequestId: string | undefined
  #logTrace: TraceLogFields | undefined
  #logTask: string | undefined
  /**
   * The call before: its output may still be read after the next call was sent, and the
   * worker's marks say whose a line is (call-output-marks.ts).
   */
  #sentCallId = 0
  #previousCallId = 0
  #previousRequestId: string | undefined
  #previousTrace: TraceLogFields | undefined
  #previousTask: string | undefined
  #resolve: ((reply: ReplyMessage | DeferredReply) => void) | undefined
  #reject: ((error: WorkerCallError) => void) | undefined
  readonly #deadline = new CallDeadline(() => this.#decoder.isMidFrame, () => { this.#onTimeout() })
  #calls = 0
  #rssBytes = 0
  /** Why the worker is unusable, once it is: what a call in flight would have been told. */
  #failure: WorkerFailure | undefined
  #exitDescription: string | undefined
  // Beside the state, not in it: a busy worker asked to stop stays busy until its call ends or it is killed.
  #stopRequested = false
  /** The task whose large reply (a DeferredReply) is being made into its answer, the worker held meanwhile. */
  #answering: string | undefined

  private constructor (options: WorkerOptions) {
    this.id = options.id
    this.#options = options
    this.#log = options.log
    const marks = new CallOutputMarks()
    this.#stderr = new WorkerStderr(options.log,
      (markedCall) => markedCall === this.#previousCallId && markedCall !== this.#sentCallId
        ? { worker: this.id, workerPid: this.pid, requestId: this.#previousRequestId, ...this.#previousTrace, task: this.#previousTask }
        : { worker: this.id, workerPid: this.pid, requestId: this.#logRequestId, ...this.#logTrace, task: this.#logTask },
      () => this.#state === 'starting', undefined, options.onStderrDropped, marks)
    this.#decoder = new FrameDecoder(Math.max(options.maxFrameBytes, READY_FRAME_MAX_BYTES), (body) => { this.#onFrame(body) }, READY_FRAME_LIMIT)
    this.#process = new WorkerProcess({ ...options, args: [...options.args, '--stderr-mark', marks.token] }, {
      stdout: (chunk) => { this.#onStdout(chunk) },
      stdoutEnd: () => { this.#onStdoutEnd() },
      stderr: (text) => { this.#stderr.write(text) },
      exit: (code, signal) => { this.#onExit(code, signal) },
      spawnError: (error) => { this.#onSpawnError(error) },
      stdioHeld: () => {
        this.#log.warn({ worker: this.id, workerPid: this.pid }, 'the worker had exited, but a process one of its tasks started in a session of its own (setsid, start_new_session=True) still held its pipes open: closed them. Such a process outlives its worker; the task should wait for it or not detach it')
      }
    })
    // After the spawn, which may throw (an invalid env value): no start timer is left behind then.
    this.#start = new StartWait(options.python, options.startTimeoutMs, options.signal, () => { this.#process.signal('SIGKILL') }, async () => await this.#whereStartIsStuck())
  }

  /** Starts a worker and resolves once it has sent its ready message. */
  static async spawn (options: WorkerOptions): Promise<PythonWorker> {
    if (options.signal?.aborted === true) throw new WorkerStartError(`Python worker ${options.python} was not started: the server is shutting down`)
    const worker = new PythonWorker(options)
    try {
      await worker.#start.done
    } catch (error) {
      // A failed start has killed its process (or seen it exit): its exit is awaited, so that
      // its 'worker exited' line comes before the failure is reported, and no process outlives
      // the start. Bounded, and skipped for a process that could not be spawned (it never exits).
      if (worker.pid !== 0) await Promise.race([worker.#process.exited, sleep(EXIT_AFTER_FAILED_START_MS, undefined, { ref: false })])
      throw error
    }
    return worker
  }

  get state (): WorkerState { return this.#state }
  get pid (): number { return this.#process.pid }
  get calls (): number { return this.#calls }
  get task (): string | undefined { return this.#task }
  /**
   * The task whose large reply the offload thread is making into the answer: the worker has
   * replied (it is idle) but stays lent to its call until then (call-run.ts), and reports
   * itself busy with that task (supervisor.ts snapshot).
   */
  get answering (): string | undefined { return this.#answering }
  /** Its deferred reply has been made into the answer (or failed to be). */
  answered (): void { this.#answering = undefined }
  get rssBytes (): number { return this.#rssBytes }
  get python (): string { return this.#ready?.python ?? '' }
  get tasks (): TaskInfo[] { return this.#ready?.tasks ?? [] }
  get isAlive (): boolean { return this.#state !== 'dead' && this.#state !== 'stopping' }
  /** How it failed (a crash, a broken protocol, a timeout), also when no call was running. */
  get failure (): WorkerFailure | undefined { return this.#failure }
  /** How the process ended, in words (a SIGKILL pyfleet did not send says whether the OOM killer sent it); undefined while it runs. */
  get exitDescription (): string | undefined { return this.#exitDescription }
  /** Who most likely killed it, once a SIGKILL pyfleet did not send has: the OOM killer, someone, or unknown. */
  get killedBy (): Killer | undefined { return this.#process.killedBy }
  /** True once stop() was called: a call it ends was cut off by pyfleet, not lost to a crash. */
  get stopRequested (): boolean { return this.#stopRequested }

  /**
   * Sends one call and resolves with the worker's reply (a result or a task error), or
   * with its frame undecoded when it is large (a DeferredReply: see offloadMinBytes).
   * Rejects with WorkerCallError when the worker times out, dies or breaks the
   * protocol; the worker is then dead or being killed and must not be reused.
   * Throws synchronously (before anything is sent) if the input cannot be encoded.
   * `widenIntegers`: the input holds numbers past 32 bits (see protocol.ts encodeCall).
   * `answerWithinMs`: how long the caller waits for the answer (the client's budget, if
   * shorter than `timeoutMs`, past which the worker is killed), told to the task.
   * `trace`: the client's trace context (trace-context.ts), handed to the task; its ids are logged with the call's stderr lines.
   */
  call (task: string, input: unknown, requestId: string, timeoutMs: number, widenIntegers = false, answerWithinMs = timeoutMs, trace?: TraceContext): Promise<ReplyMessage | DeferredReply> {
    if (this.#state !== 'idle') throw new Error(`worker ${this.id} is ${this.#state}, not idle`)
    // Ids only tell a call's reply from a stale one: they wrap before 2^32, past which msgpackr
    // would write one as a float64, which resultValueBytes does not read (a msgpack answer
    // would then be encoded again, not passed on).
    const id = this.#callId = this.#callId >= MAX_CALL_ID ? 1 : this.#callId + 1
    const frame = encodeCall(id, task, input, requestId, Math.max(1, Math.floor(Math.min(answerWithinMs, timeoutMs))), widenIntegers, trace)
    // The worker would refuse an oversize frame by exiting. Bodies under BODY_LIMIT_BYTES
    // can still grow past MAX_FRAME_BYTES when re-encoded, if the two are set close.
    const bytes = frame.length - HEADER_BYTES
    if (bytes > this.#options.maxFrameBytes) {
      throw new InputTooLargeError(`the input is ${bytes} bytes once encoded for the worker, over MAX_FRAME_BYTES (${this.#options.maxFrameBytes})`)
    }
    this.#state = 'busy'
    this.#stderr.callStarted()
    this.#previousCallId = this.#sentCallId
    this.#sentCallId = id
    this.#previousRequestId = this.#logRequestId
    this.#previousTrace = this.#logTrace
    this.#previousTask = this.#logTask
    this.#task = task
    this.#requestId = requestId
    this.#logRequestId = requestId
    this.#logTrace = traceLogFieldsOf(trace?.traceparent)
    this.#logTask = task
    this.#calls++
    this.#deadline.start(timeoutMs)
    this.#process.write(frame)
    return new Promise<ReplyMessage | DeferredReply>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
  }

  /**
   * A reply this worker sent broke the protocol, as found once it was decoded elsewhere (a
   * DeferredReply, decoded by the offload thread after the call resolved): it is killed, as
   * for a frame decoded here.
   */
  reportProtocolError (message: string, requestId: string): void {
    this.#onProtocolError(message, requestId)
  }

  /** The RSS the worker reported itself (in a reply, past MAX_WORKER_RSS_MB): the latest reading. */
  noteRss (rssBytes: number): void {
    this.#rssBytes = rssBytes
  }

  /** Reads the worker's resident set size from /proc (Linux); keeps the last value where unavailable. */
  async sampleRss (): Promise<number> {
    if (this.#state === 'dead') return this.#rssBytes
    this.#rssBytes = await this.#process.readRss() ?? this.#rssBytes
    return this.#rssBytes
  }

  /**
   * Graceful stop: close stdin (the worker exits at EOF after its current call),
   * SIGTERM after graceMs, SIGKILL after graceMs more. Resolves once it has exited.
   */
  async stop (graceMs: number): Promise<void> {
    if (this.#state === 'dead') return
    this.#stopRequested = true
    if (this.#state !== 'busy') this.#state = 'stopping'
    this.#process.endInput()
    const term = setTimeout(() => { this.#process.signal('SIGTERM') }, graceMs)
    const kill = setTimeout(() => { this.#process.signal('SIGKILL') }, 2 * graceMs)
    await this.#process.exited
    clearTimeout(term)
    clearTimeout(kill)
  }

  /** Kills the process at once (SIGKILL). Resolves once it has exited. */
  async kill (): Promise<void> {
    if (this.#state === 'dead') return
    this.#state = 'stopping'
    this.#process.signal('SIGKILL')
    await this.#process.exited
  }

  #onTimeout (): void {
    this.#failure ??= 'timeout'
    this.#failCall('timeout', `task ${this.#task ?? '?'} timed out`)
    void this.#dumpStacksAndKill()
  }

  /**
   * Where was the task stuck? The runtime prints every thread's stack on SIGUSR1
   * (faulthandler, in workers/pyfleet/__main__.py), which stderr's lines log under the
   * call's request id; then the worker is killed. Taken out of service at once.
   */
  async #dumpStacksAndKill (): Promise<void> {
    if (this.#state === 'dead') return
    this.#state = 'stopping'
    this.#process.signalWorker('SIGUSR1')
    await Promise.race([this.#process.exited, new Promise((resolve) => { setTimeout(resolve, STACK_DUMP_MS).unref() })])
    await this.kill()
  }

  /**
   * Where a start past its timeout is stuck: the runtime prints every thread's stack on
   * SIGUSR1 (set up before any task module is imported), and the main thread's stack says
   * which import it is stuck in (stuck-at.ts).
   */
  async #whereStartIsStuck (): Promise<string | undefined> {
    const frame = this.#stderr.awaitWhereStuck()
    this.#process.signalWorker('SIGUSR1')
    let timer: NodeJS.Timeout | undefined
    const gaveUp = new Promise<undefined>((resolve) => { timer = setTimeout(() => { resolve(undefined) }, START_STACK_DUMP_MS) })
    try {
      return await Promise.race([frame, gaveUp, this.#process.exited.then(() => undefined)])
    } finally {
      clearTimeout(timer)
    }
  }

  #onStdout (chunk: Buffer): void {
    try {
      this.#decoder.push(chunk)
    } catch (error) {
      if (!(error instanceof FrameError || error instanceof ProtocolError)) throw error
      this.#onProtocolError(error.message)
    }
  }

  #onFrame (body: Buffer): void {
    switch (this.#state) {
      case 'starting': {
        this.#ready = decodeReady(body)
        this.#decoder.limitFrames(this.#options.maxFrameBytes)
        this.#state = 'idle'
        this.#start.ready()
        return
      }
      case 'busy': {
        const deferred = isForTheThread(body, this.#options.offloadMinBytes ?? 0)
        const reply = deferred ? { t: MSG_DEFERRED, id: this.#callId, frame: body } as const : decodeReply(body, this.#callId)
        if (deferred) this.#answering = this.#task
        const resolve = this.#resolve
        this.#endCall()
        this.#state = 'idle'
        resolve?.(reply)
        return
      }
      case 'stopping':
      case 'dead':
        // The reply to a call given up on (it timed out, and the kill is on its way), or a
        // last frame of a worker being stopped: it is going away, and nobody waits for it.
        return
      default:
        throw new ProtocolError(`unexpected frame while ${this.#state}`)
    }
  }

  #endCall (): void {
    this.#deadline.clear()
    this.#resolve = undefined
    this.#reject = undefined
    this.#task = undefined
    this.#requestId = undefined
  }

  #failCall (failure: WorkerFailure, message: string): void {
    const reject = this.#reject
    this.#endCall()
    reject?.(new WorkerCallError(failure, message))
  }

  /**
   * The protocol stream ended. A process that exits closes it just before, so the exit
   * gets a moment to be reported (a crash stays a crash); one still alive after that
   * can never answer again (a task closed the stream), and waiting for its timeout
   * would only hold the call and the worker.
   */
  #onStdoutEnd (): void {
    setTimeout(() => {
      // Decided after the next poll phase: if the event loop was blocked past the grace,
      // timers run before the exit that was already pending has been read.
      setImmediate(() => {
        if (this.#state === 'dead' || this.#state === 'stopping') return
        this.#onProtocolError('it closed its protocol stream but is still running')
      })
    }, STREAM_END_GRACE_MS).unref()
  }

  #onProtocolError (message: string, requestId = this.#requestId): void {
    this.#failure ??= 'protocol'
    const trace = requestId !== undefined && requestId === this.#logRequestId ? this.#logTrace : undefined
    this.#log.error({ worker: this.id, workerPid: this.pid, requestId, ...trace }, `worker broke the protocol: ${message}`)
    this.#start.fail(`broke the protocol during start-up: ${message}`)
    this.#failCall('protocol', message)
    void this.kill()
  }

  #onSpawnError (error: Error): void {
    this.#state = 'dead'
    this.#start.fail(`could not be started: ${error.message}`)
    this.#failCall('crash', `worker could not be started: ${error.message}`)
  }

  #onExit (code: number | null, signal: NodeJS.Signals | null): void {
    const wasMidFrame = this.#decoder.isMidFrame
    this.#state = 'dead'
    this.#stderr.flush()
    const how = this.#process.describeExit(code, signal)
    this.#exitDescription = how
    const { fatalLine, lastWords } = this.#stderr
    this.#start.fail(fatalLine !== undefined
      ? `did not start: ${fatalLine}`
      : `${how} before it was ready${lastWords.length > 0 ? `; its last words: ${lastWords.join(' | ')}` : ''}`)
    // Exit code 5 is the runtime refusing a frame of ours: a protocol error seen from
    // the other side (its reason, when already read, is the fatal line).
    const failure = code === EXIT_PROTOCOL_ERROR ? 'protocol' : 'crash'
    this.#failure ??= failure
    // The runtime says why it exits when it knows (a refused frame, its own failure: exit 5 or 6),
    // and then exits with a code: a death by signal has no such reason, whatever a task printed.
    const reason = fatalLine !== undefined && signal === null ? `: ${fatalLine}` : ''
    this.#failCall(failure, `the worker ${how}${reason} while running ${this.#task ?? 'a call'}${wasMidFrame ? ' (mid-frame)' : ''}`)
    this.#options.onExit?.(this, code, signal)
  }
}
