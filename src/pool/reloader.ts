// Rolling reload: replaces every worker that runs the code from before the
// reload, one spare starting at a time, each worker only once its replacement is
// ready and its task table accepted, so capacity never drops and no call fails.
// The pool does the swaps (through the recycler); this module decides which
// workers must go.
//
// A worker whose spare is ready but which is still busy does not hold up the rest:
// the workers that are free, or become free, are replaced meanwhile, and the busy one is
// swapped when its call ends. Waiting for each swap in turn made one long call (a task's
// own timeout may be minutes) keep every other worker on the old code until it ended.
// At most two spares wait for busy workers at a time, though: one beside each busy worker
// doubled the workers' memory for as long as their calls ran (a reload under load in a
// container sized for one spare), and an OOM kill of all of them failed the reload. Two,
// not one: under steady load the other workers are never idle when looked at (a freed
// worker takes the next queued call at once), so with one the reload went at the pace of
// the long call; the second spare goes to a worker busy with a short call, and swaps soon.
// A worker idle when picked may take a call while its spare starts, and its spare then waits
// too: an idle one is picked only while at most two wait, so never more than three do (idle
// picks had no bound: four spares waited beside four long calls).

import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { PythonWorker } from './python-worker.js'
import type { Recycler } from './recycler.js'
import type { Supervisor } from './supervisor.js'

export interface ReloadResult { oldPids: number[], newPids: number[], durationMs: number }

/** A reload that stopped part-way: how many of the workers it had replaced by then. */
export class ReloadFailedError extends Error {
  override name = 'ReloadFailedError'
  constructor (readonly reason: Error, readonly replaced: number, readonly total: number) {
    super(reason.message)
  }
}

export interface ReloaderOptions {
  recycler: Recycler
  supervisor: Supervisor
  log: FastifyBaseLogger
  isDraining: () => boolean
  /** Swaps idle workers whose spare is ready (the pool's sweep). */
  sweepIdle: () => void
  /** How long to wait, with no worker running, for one that stays up (default MAX_WAIT_FOR_ANY_MS; tests shorten it). */
  maxWaitForAnyMs?: number
}

const STARTING_POLL_MS = 50
/** Spares waiting for busy workers at most (see above). */
const MAX_WAITING_SPARES = 2
/** A reload gives up once this many spares have died before taking over (not a start failure: those fail it at once). */
const MAX_SPARE_DEATHS = 3
/** How long a reload waits, with no worker running, for one that stays up (workers that keep dying as they start). */
const MAX_WAIT_FOR_ANY_MS = 30_000

export class Reloader {
  readonly #options: ReloaderOptions
  /** Workers created before the last reload began run the code from before it; with the check that reload applied. */
  #reloaded: { before: number, accept: ((spare: PythonWorker) => void) | undefined } = { before: 0, accept: undefined }
  #reloading: Promise<ReloadResult> | undefined
  /** The reload asked for while one ran: it starts when that one ends. */
  #next: Promise<ReloadResult> | undefined

  constructor (options: ReloaderOptions) {
    this.#options = options
  }

  /** True while a reload runs: its new workers are meant to declare new tasks. */
  get isActive (): boolean { return this.#reloading !== undefined }

  /** A follow-up reload has been asked for and not begun: a reload asked for now shares it. */
  get followUpWaiting (): boolean { return this.#next !== undefined }

  /** `acceptTasks` sees each replacement's declared tasks before it takes any call, and may refuse it by throwing. */
  async reload (acceptTasks?: (tasks: PythonWorker['tasks']) => void): Promise<ReloadResult> {
    // A follow-up already asked for: this request shares it, even in the moment between the
    // reload before it settling and the follow-up starting (#reloading is clear then).
    if (this.#next !== undefined) return await this.#next
    const running = this.#reloading
    if (running === undefined) return await this.#start(acceptTasks)
    // One reload at a time. A request while one runs does not join it: the code may have
    // changed since it began (a save during a SIGHUP's reload), and the workers it started
    // meanwhile count as new. It gets a reload of its own after that one, shared with any
    // other request made meanwhile.
    this.#next ??= running.catch(() => undefined).then(async () => {
      this.#next = undefined
      return await this.#start(acceptTasks)
    })
    return await this.#next
  }

  #start (acceptTasks?: (tasks: PythonWorker['tasks']) => void): Promise<ReloadResult> {
    this.#reloading = this.#reloadAll(acceptTasks).finally(() => { this.#reloading = undefined })
    return this.#reloading
  }

  async #reloadAll (acceptTasks?: (tasks: PythonWorker['tasks']) => void): Promise<ReloadResult> {
    const { recycler, supervisor } = this.#options
    const started = performance.now()
    const accept = acceptTasks === undefined ? undefined : (spare: PythonWorker): void => { acceptTasks(spare.tasks) }
    // Every worker created before this point runs the code from before the reload,
    // whenever it joined: not a list taken now, since while one worker is replaced
    // another may be swapped for a recycling spare started earlier, and a crash
    // replacement still starting now joins later (the loop waits for it). A spare
    // in the hand-over queue at the wrong moment is caught as it joins (retireIfStale).
    this.#reloaded = { before: PythonWorker.created, accept }
    const oldPids: number[] = []
    /** Workers whose spare is ready, waiting to be free to be swapped; settled when each has left or its spare died. */
    const swapping = new Map<PythonWorker, Promise<void>>()
    let spareDeaths = 0
    let waitingForAnySince: number | undefined
    /** The start failures counted when this reload had backing-off slots try again (see below). */
    let failuresWhenRetried: number | undefined
    const fail = (error: Error): ReloadFailedError => {
      // Spares still waiting for their workers are dropped: the reload stops where it
      // says it stopped, with the workers not yet swapped on the old code.
      for (const worker of swapping.keys()) recycler.cancelRetirement(worker, 'reload')
      const failed = new ReloadFailedError(error, oldPids.length, oldPids.length + this.#staleCount())
      this.#reloaded = { before: 0, accept: undefined } // what is left of the old code stays, as reported
      return failed
    }
    for (;;) {
      if (this.#options.isDraining()) throw fail(new Error('the server began shutting down'))
      if (spareDeaths >= MAX_SPARE_DEATHS) {
        throw fail(new Error(`replacements died before they could take over ${spareDeaths} times (killed, or out of memory?); see the log`))
      }
      // An idle worker first: its swap is at once, where a busy one's waits for its call. A
      // busy one only while fewer than MAX_WAITING_SPARES wait; an idle one while no more do
      // (it may be busy by the time its spare is ready: see above).
      const stale = supervisor.members().filter((w) => this.#isStale(w) && !swapping.has(w))
      const idle = swapping.size <= MAX_WAITING_SPARES ? stale.find((w) => w.state === 'idle') : undefined
      const worker = idle ?? (swapping.size < MAX_WAITING_SPARES ? stale[0] : undefined)
      if (worker === undefined && swapping.size > 0) {
        // Spares wait for their busy workers: until one is swapped, look again now and then
        // for a worker of the old code that is free, or has joined (a crash replacement
        // that began before the reload), or for the shutdown.
        await Promise.race([...swapping.values(), new Promise((resolve) => setTimeout(resolve, STARTING_POLL_MS))])
        continue
      }
      if (worker === undefined) {
        // Done, unless a replacement that began before the reload is still starting (it runs
        // the old code: the next turn replaces it), or no worker runs at all while one is
        // starting (a crash replacement begun after the reload, loading the new code: the
        // reload waits to report it, as no failed start happened).
        const waitsForOld = supervisor.isStartingBefore(this.#reloaded.before)
        if (supervisor.liveWorkers === 0 && !supervisor.isStarting && supervisor.startFailures > 0 && failuresWhenRetried === undefined) {
          // Every slot backs off after failed starts: nothing to replace, but a start loads the
          // code on disk, which is what this reload is for (a fix saved under RELOAD_ON_CHANGE).
          // They try at once, and the reload waits for that try: the code it asked for, served,
          // or a start that failed with it.
          failuresWhenRetried = supervisor.startFailures
          supervisor.retryNow()
        }
        const waitsForAny = supervisor.liveWorkers === 0 && (supervisor.isStarting || supervisor.startFailures === 0 || supervisor.startFailures === failuresWhenRetried)
        if (!waitsForOld && !waitsForAny) break
        // The try asked for above, still starting: its own start timeout (WORKER_START_TIMEOUT_MS)
        // bounds it, and an import slower than MAX_WAIT_FOR_ANY_MS is no crash loop. (After it, a
        // failure or a worker that dies again is timed as any other.)
        const retryStarting = failuresWhenRetried !== undefined && supervisor.isStarting && supervisor.startFailures === failuresWhenRetried
        if (!waitsForOld && !retryStarting) {
          waitingForAnySince ??= performance.now()
          const maxWaitMs = this.#options.maxWaitForAnyMs ?? MAX_WAIT_FOR_ANY_MS
          if (performance.now() - waitingForAnySince > maxWaitMs) {
            throw fail(new Error(`no worker stayed up for ${maxWaitMs / 1000} s to be replaced: they die as they start or soon after (see the log)`))
          }
        } else waitingForAnySince = undefined
        await new Promise((resolve) => setTimeout(resolve, STARTING_POLL_MS))
        continue
      }
      try {
        await recycler.retire(worker, 'reload', accept)
      } catch (error) {
        throw fail(error as Error)
      }
      this.#options.sweepIdle()
      // Swapped at once if idle, else when its call ends. If its spare dies before taking
      // over (killed, out of memory), the worker still runs the old code and is found again
      // by a later turn, a few times before giving up. (Or the shutdown killed the spare: the
      // next turn says so.)
      // Counted in the turn it happens, so that a failure in the next turn reports it; and
      // perhaps at once (swapped already, by the pool's sweep when its spare became ready).
      let settled!: () => void
      swapping.set(worker, new Promise<void>((resolve) => { settled = resolve }))
      recycler.onceGone(worker, (left) => {
        swapping.delete(worker)
        if (left) oldPids.push(worker.pid)
        else if (!this.#options.isDraining()) spareDeaths++
        settled()
      })
    }
    // Every slot backing off after failed starts: nothing was replaced and nothing checked
    // the code on disk, so a 200 (and a task table read from the last worker, now dead)
    // would claim a reload that did not happen.
    if (oldPids.length === 0 && supervisor.liveWorkers === 0) {
      throw fail(new Error('no worker is running to be replaced: every slot is restarting after failed starts, and the retry this reload asked for failed too (each retry loads the code on disk); fix what stops them starting (see the log)'))
    }
    // A member killed meanwhile keeps its slot until its replacement starts: not among the new ones.
    const newPids = supervisor.members().filter((w) => w.isAlive).map((w) => w.pid)
    return { oldPids, newPids, durationMs: Math.round(performance.now() - started) }
  }

  #isStale (worker: PythonWorker): boolean {
    return worker.sequence < this.#reloaded.before && worker.isAlive
  }

  #staleCount (): number {
    return this.#options.supervisor.members().filter((w) => this.#isStale(w)).length
  }

  /** A worker that began starting before the last reload and joined after it ended is replaced too. */
  retireIfStale (worker: PythonWorker): void {
    if (this.#reloading !== undefined || this.#options.isDraining() || !this.#isStale(worker)) return
    this.#options.recycler.retire(worker, 'reload', this.#reloaded.accept).catch((error: Error) => {
      this.#options.log.error({ worker: worker.id, workerPid: worker.pid }, `a worker started before the last reload could not be replaced: ${error.message}`)
    })
  }
}
