// One Python worker: the ready message, one call at a time, stop, kill (what each way
// of failing is called: worker-failures.ts); its OS process is worker-process.ts, its start timeout
// start-wait.ts, its stdout's frames worker-stdout.ts, the call in flight and its timeout
// call-in-flight.ts. It knows nothing of pools or HTTP: worker-pool.ts decides what to do
// with a failed worker.

import type { FastifyBaseLogger } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { HEADER_BYTES } from './frames.js'
import { WorkerProcess } from './worker-process.js'
import type { Killer } from './oom-kills.js'
import { CallOutputMarks } from './call-output-marks.js'
import type { TraceContext } from '../trace-context.js'
import { WorkerStderr } from './worker-stderr.js'
import { CallInFlight } from './call-in-flight.js'
import { WorkerStdout } from './worker-stdout.js'
import { encodeCall, ProtocolError, MSG_DEFERRED, type DeferredReply, type ReplyMessage } from './protocol.js'
import type { ReadyMessage, TaskInfo } from './ready-message.js'
import { StartWait } from './start-wait.js'
import { dumpCallStacks, whereStartIsStuck } from './stack-dumps.js'
import { callFailureAtExit, failureOfExit, InputTooLargeError, startFailureAtExit, WorkerStartError, type WorkerFailure } from './worker-failures.js'
import { messageWithLimitAdvice } from '../process-limit.js'

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

export { EXIT_PROTOCOL_ERROR } from './worker-failures.js'
/** How long a failed start waits for its killed process to exit (a SIGKILL: at once, unless the kernel is stuck). */
const EXIT_AFTER_FAILED_START_MS = 2000

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
  readonly #stdout: WorkerStdout
  readonly #log: FastifyBaseLogger
  #ready: ReadyMessage | undefined
  readonly #start: StartWait
  readonly #stderr: WorkerStderr
  readonly #call = new CallInFlight(() => this.#stdout.isMidFrame, () => { this.#onTimeout() })
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
      (markedCall) => ({ worker: this.id, workerPid: this.pid, ...this.#call.logFieldsOf(markedCall) }),
      () => this.#state === 'starting', undefined, options.onStderrDropped, marks)
    this.#stdout = new WorkerStdout(options.maxFrameBytes, options.offloadMinBytes ?? 0, {
      frame: (body) => { this.#onFrame(body) },
      // Not for bytes read after the exit (a process a task left holding the stream wrote them,
      // or they were read after the exit was): the exit has said how the worker ended.
      protocolError: (message) => { if (this.#state !== 'dead') this.#onProtocolError(message) },
      isAlive: () => this.isAlive
    })
    this.#process = new WorkerProcess({ ...options, args: [...options.args, '--stderr-mark', marks.token] }, {
      stdout: (chunk) => { this.#stdout.write(chunk) },
      stdoutEnd: () => { this.#stdout.end() },
      stderr: (text) => { this.#stderr.write(text) },
      exit: (code, signal) => { this.#onExit(code, signal) },
      spawnError: (error) => { this.#onSpawnError(error) },
      stdioHeld: () => {
        this.#log.warn({ worker: this.id, workerPid: this.pid }, 'the worker had exited, but a process one of its tasks started in a session of its own (setsid, start_new_session=True) still held its pipes open: closed them. Such a process outlives its worker; the task should wait for it or not detach it')
      }
    })
    // After the spawn, which may throw (an invalid env value): no start timer is left behind then.
    this.#start = new StartWait(options.python, options.startTimeoutMs, options.signal, () => { this.#process.signal('SIGKILL') }, async () => await whereStartIsStuck(this.#process, this.#stderr))
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
  get task (): string | undefined { return this.#call.task }
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
    const id = this.#call.nextId()
    const frame = encodeCall(id, task, input, requestId, Math.max(1, Math.floor(Math.min(answerWithinMs, timeoutMs))), widenIntegers, trace)
    // The worker would refuse an oversize frame by exiting. Bodies under BODY_LIMIT_BYTES
    // can still grow past MAX_FRAME_BYTES when re-encoded, if the two are set close.
    const bytes = frame.length - HEADER_BYTES
    if (bytes > this.#options.maxFrameBytes) {
      throw new InputTooLargeError(`the input is ${bytes} bytes once encoded for the worker, over MAX_FRAME_BYTES (${this.#options.maxFrameBytes})`)
    }
    this.#state = 'busy'
    this.#stderr.callStarted()
    this.#calls++
    const reply = this.#call.begin(id, task, requestId, trace, timeoutMs)
    this.#process.write(frame)
    return reply
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
    this.#call.fail('timeout', `task ${this.#call.task ?? '?'} timed out`)
    void this.#dumpStacksAndKill()
  }

  /** Its stacks logged (stack-dumps.ts), then killed; taken out of service at once. */
  async #dumpStacksAndKill (): Promise<void> {
    if (this.#state === 'dead') return
    this.#state = 'stopping'
    await dumpCallStacks(this.#process)
    await this.kill()
  }

  #onFrame (body: Buffer): void {
    switch (this.#state) {
      case 'starting': {
        this.#ready = this.#stdout.readyOf(body)
        this.#state = 'idle'
        this.#start.ready()
        return
      }
      case 'busy': {
        const reply = this.#stdout.replyOf(body, this.#call.id)
        if (reply.t === MSG_DEFERRED) this.#answering = this.#call.task
        // Asked to stop during the call (the shutdown): it goes on stopping, its stdin closed, and
        // takes no other call (it went back to idle, alive to the pool, and a call given it failed).
        this.#state = this.#stopRequested ? 'stopping' : 'idle'
        this.#call.resolve(reply)
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

  #onProtocolError (message: string, requestId = this.#call.requestId): void {
    this.#failure ??= 'protocol'
    const trace = this.#call.traceOf(requestId)
    this.#log.error({ worker: this.id, workerPid: this.pid, requestId, ...trace }, `worker broke the protocol: ${message}`)
    this.#start.fail(`broke the protocol during start-up: ${message}`)
    this.#call.fail('protocol', message)
    void this.kill()
  }

  #onSpawnError (error: Error): void {
    this.#state = 'dead'
    // EAGAIN (a pids limit reached) says which limit and what to do, not the bare code.
    const why = messageWithLimitAdvice(error)
    this.#start.fail(`could not be started: ${why}`)
    this.#call.fail('crash', `worker could not be started: ${why}`)
  }

  #onExit (code: number | null, signal: NodeJS.Signals | null): void {
    const wasMidFrame = this.#stdout.isMidFrame
    this.#state = 'dead'
    this.#stderr.flush()
    const how = this.#process.describeExit(code, signal)
    this.#exitDescription = how
    const { fatalLine, lastWords } = this.#stderr
    this.#start.fail(startFailureAtExit(how, fatalLine, lastWords))
    const failure = failureOfExit(code)
    this.#failure ??= failure
    this.#call.fail(failure, callFailureAtExit(how, fatalLine, signal, this.#call.task, wasMidFrame))
    this.#options.onExit?.(this, code, signal)
  }
}
