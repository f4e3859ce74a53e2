// Keeps one worker per slot (1..size): hands prepared workers to the pool (the
// initial ones, recycling's spares), spawns replacements with exponential
// backoff, and stops the workers generic-pool destroys. The pool decides when
// a worker goes; this module decides how the next one comes.

import type { FastifyBaseLogger } from 'fastify'
import { PythonWorker } from './python-worker.js'

const MAX_BACKOFF_MS = 5_000
const FIRST_BACKOFF_MS = 100

export interface SupervisorOptions {
  spawn: (id: number) => Promise<PythonWorker>
  stopGraceMs: number
  log: FastifyBaseLogger
  /** A worker entered its slot (after generic-pool has taken it in). */
  onReady: (worker: PythonWorker) => void
  /** A replacement for slot `id` failed to start; its next attempt is in `retryInMs`. */
  onStartFailed: (retryInMs: number, id: number) => void
  /** A worker left its slot for good. */
  onGone: (worker: PythonWorker) => void
}

export interface WorkerSnapshot {
  id: number
  pid: number | null
  state: string
  calls: number
  rssBytes: number
  startedAt: string | null
  task: string | null
}

export class Supervisor {
  readonly #options: SupervisorOptions
  /** Slot id -> its worker, or 'starting' while a replacement is being spawned. */
  readonly #slots = new Map<number, PythonWorker | 'starting'>()
  /** Ready workers waiting to enter the pool, in order. */
  readonly #handoff: PythonWorker[] = []
  #startFailures = 0
  /** Slot id -> when its next start attempt is due (performance.now()), while it backs off. */
  readonly #retriesAt = new Map<number, number>()
  #closed = false
  /** The most recently created worker that has entered a slot (see tasks). */
  #newest: PythonWorker | undefined
  /** Slot id -> the `sequence` its start in progress will have at least (PythonWorker.created when it began). */
  readonly #startsInProgress = new Map<number, number>()
  /** Ends the backoff waits early (close): one per slot that is backing off. */
  readonly #wakers = new Set<() => void>()

  constructor (options: SupervisorOptions) {
    this.#options = options
  }

  /** Consecutive failed starts (0 once one succeeds). */
  get startFailures (): number { return this.#startFailures }

  /** How long until the next start attempt of a slot backing off (0 if one is due or none backs off). */
  get nextRetryInMs (): number {
    if (this.#retriesAt.size === 0) return 0
    return Math.max(0, Math.min(...this.#retriesAt.values()) - performance.now())
  }

  /** Queues a ready worker to fill the next slot generic-pool asks for. */
  handOver (worker: PythonWorker): void {
    this.#handoff.push(worker)
  }

  /** generic-pool's factory.create: a handed-over worker, or a new one (retried with backoff). */
  async create (): Promise<PythonWorker> {
    const handed = this.#handoff.shift()
    if (handed !== undefined) return this.#enter(handed)
    let id = 1
    while (this.#slots.has(id)) id++
    this.#slots.set(id, 'starting')
    for (;;) {
      if (this.#closed) { this.#slots.delete(id); throw new Error('the pool is closed') }
      this.#startsInProgress.set(id, PythonWorker.created)
      try {
        const worker = await this.#options.spawn(id).finally(() => { this.#startsInProgress.delete(id) })
        if (this.#closed) { void worker.kill(); continue }
        this.#startFailures = 0
        return this.#enter(worker)
      } catch (error) {
        if (this.#closed) { this.#slots.delete(id); throw error }
        this.#startFailures++
        const retryInMs = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (this.#startFailures - 1))
        this.#retriesAt.set(id, performance.now() + retryInMs)
        this.#options.log.error({ worker: id, attempt: this.#startFailures, retryInMs }, (error as Error).message)
        this.#options.onStartFailed(retryInMs, id)
        await new Promise<void>((resolve) => {
          const wake = (): void => { clearTimeout(timer); this.#wakers.delete(wake); this.#retriesAt.delete(id); resolve() }
          const timer = setTimeout(wake, retryInMs)
          this.#wakers.add(wake)
        })
      }
    }
  }

  #enter (worker: PythonWorker): PythonWorker {
    this.#slots.set(worker.id, worker)
    if (this.#newest === undefined || worker.sequence > this.#newest.sequence) this.#newest = worker
    // generic-pool adds the worker to its idle list a few microtasks after create resolves.
    setImmediate(() => { this.#options.onReady(worker) })
    return worker
  }

  /** generic-pool's factory.destroy: free the slot (unless a spare already took it) and stop the process. */
  async destroy (worker: PythonWorker): Promise<void> {
    if (this.#slots.get(worker.id) === worker) this.#slots.delete(worker.id)
    this.#options.onGone(worker)
    await worker.stop(this.#options.stopGraceMs)
  }

  /** True while a replacement is starting that was created before `sequence` (a reload waits for it, then replaces it). */
  isStartingBefore (sequence: number): boolean {
    for (const from of this.#startsInProgress.values()) if (from < sequence) return true
    return false
  }

  /** True while any replacement is being spawned (not while one waits out its backoff). */
  get isStarting (): boolean { return this.#startsInProgress.size > 0 }

  /** True while this worker holds its slot. */
  holds (worker: PythonWorker): boolean {
    return this.#slots.get(worker.id) === worker
  }

  /** Workers in their slots now. */
  members (): PythonWorker[] {
    return [...this.#slots.values()].filter((w): w is PythonWorker => w !== 'starting')
  }

  /** Workers that can take a call now or after their current one. */
  get liveWorkers (): number {
    let live = 0
    for (const w of this.#slots.values()) if (w !== 'starting' && w.isAlive) live++
    return live
  }

  /**
   * The tasks declared by the most recently created worker that has entered a slot,
   * kept when it leaves: at a moment with no worker in any slot (one crashed, its
   * replacement still starting), the table must not read as empty.
   */
  get tasks (): PythonWorker['tasks'] { return this.#newest?.tasks ?? [] }

  snapshot (): WorkerSnapshot[] {
    return [...this.#slots.entries()].sort((a, b) => a[0] - b[0]).map(([id, w]) => w === 'starting'
      ? { id, pid: null, state: 'starting', calls: 0, rssBytes: 0, startedAt: null, task: null }
      : { id, pid: w.pid, state: w.state === 'idle' && w.answering !== undefined ? 'busy' : w.state, calls: w.calls, rssBytes: w.rssBytes, startedAt: w.startedAt.toISOString(), task: w.task ?? w.answering ?? null })
  }

  /** No more starts: a start that fails now ends its slot's retries quietly, and backoff waits end. */
  stopSpawning (): void {
    this.#closed = true
    this.retryNow()
  }

  /** Slots backing off after failed starts try again at once (a reload: each try loads the code on disk). */
  retryNow (): void {
    for (const wake of [...this.#wakers]) wake()
  }

  /** Stops spawning and stops every worker: those in slots gracefully, unused hand-overs at once. */
  async close (): Promise<void> {
    this.stopSpawning()
    const stopping = this.members().map(async (w) => { await w.stop(this.#options.stopGraceMs) })
    stopping.push(...this.#handoff.splice(0).map(async (w) => { await w.kill() }))
    await Promise.all(stopping)
  }
}

/**
 * Spawns the workers of slots 1..size at once and resolves once every one is ready. The
 * first start to fail stops the others (their starts are aborted, the ready ones killed) and
 * is the WorkerStartError thrown: a task module that fails to import in one worker is
 * reported at once, not after the others have finished importing, or timed out.
 */
export async function spawnAll (size: number, spawn: (id: number, signal: AbortSignal) => Promise<PythonWorker>): Promise<PythonWorker[]> {
  const ids = Array.from({ length: size }, (_, i) => i + 1)
  const failed = new AbortController()
  let firstFailure: unknown
  const results = await Promise.allSettled(ids.map(async (id) => await spawn(id, failed.signal).catch((error: unknown) => {
    if (!failed.signal.aborted) {
      firstFailure = error
      // A string: the reason the starts it aborts give (StartWait reads it).
      failed.abort(`was stopped while starting: worker ${id}'s start failed`)
    }
    throw error
  })))
  const started = results.flatMap((r) => r.status === 'fulfilled' ? [r.value] : [])
  if (failed.signal.aborted) {
    await Promise.all(started.map(async (w) => { await w.kill() }))
    throw firstFailure
  }
  return started
}
