// Decides when a healthy worker should be retired (too many calls, too much
// memory, a reload) and gets its spare ready first, so capacity never dips.
// The pool does the swap when the retiring worker is next free.

import { performance } from 'node:perf_hooks'
import type { FastifyBaseLogger } from 'fastify'
import type { PythonWorker } from './python-worker.js'

export type RetireReason = 'max_calls' | 'max_rss' | 'reload'

export interface RecyclerOptions {
  /** Calls before a worker is recycled, ±10 % per worker; 0 = never. */
  maxCalls: number
  /** RSS above which a worker is recycled; 0 = never. */
  maxRssBytes: number
  spawn: (id: number) => Promise<PythonWorker>
  log: FastifyBaseLogger
  onSpareReady: () => void
  /** A spare, started for `reason`, failed to start (the old worker is kept). */
  onSpareFailed: (reason: RetireReason) => void
  /** A worker's RSS was found past maxRssBytes (it may be idle in the pool now). */
  onOverMemory: (worker: PythonWorker) => void
  /** The pool is draining for shutdown: no spare is worth starting for recycling (a reload has refused by then). */
  isDraining?: () => boolean
}

/** afterCall's answer for a worker past maxRssBytes: it must take no further call. */
export const OVER_MEMORY = 'over_memory'

interface Retiring {
  reason: RetireReason
  spare: PythonWorker | undefined
  ready: Promise<void>
}

interface WorkerRecord {
  callLimit: number
  lastRssSampleAt: number
  /** A sample put off until RSS_SAMPLE_INTERVAL_MS is up (see #sampleSoon). */
  deferredSample: NodeJS.Timeout | undefined
  overMemory: boolean
  retiring: Retiring | undefined
  /** onceGone's callbacks: true once the worker has left the pool, false if its spare died first or the pool closed. */
  gone: Array<(left: boolean) => void>
}

// Reading /proc costs a round trip on the thread pool: at most this often per worker, in
// the background (growth between calls, the gauge). After each call the worker itself says
// when it is past the limit (reportedRss), or, for a reply decoded off the event loop, is
// measured before it is given back (checkRss).
const RSS_SAMPLE_INTERVAL_MS = 250
// After a spare fails to start, wait this long before trying again for the same reason.
const RETRY_AFTER_FAILED_SPARE_MS = 5_000

export class Recycler {
  readonly #options: RecyclerOptions
  readonly #records = new Map<PythonWorker, WorkerRecord>()
  #closed = false
  #spareFailedAt = -Infinity

  constructor (options: RecyclerOptions) {
    this.#options = options
  }

  #record (worker: PythonWorker): WorkerRecord {
    let record = this.#records.get(worker)
    if (record === undefined) {
      // Jitter so that workers started together do not all recycle together.
      const max = this.#options.maxCalls
      const callLimit = max > 0 ? Math.max(1, Math.round(max * (0.9 + Math.random() * 0.2))) : Infinity
      record = { callLimit, lastRssSampleAt: -Infinity, deferredSample: undefined, overMemory: false, retiring: undefined, gone: [] }
      this.#records.set(worker, record)
    }
    return record
  }

  /**
   * Called after each successful call. Returns the worker's spare when the worker
   * is retiring and the spare is ready: the caller swaps them instead of releasing.
   * Returns OVER_MEMORY for a worker past maxRssBytes: unlike a routine retirement,
   * it must not take calls while a spare starts (each could grow it further), so
   * the caller replaces it at once.
   */
  afterCall (worker: PythonWorker): { spare: PythonWorker, reason: RetireReason } | typeof OVER_MEMORY | undefined {
    if (this.#closed) return undefined // shutting down: no record, no sample, nothing to swap
    const record = this.#record(worker)
    // A spare that died while it waited (killed, out of memory) must not be swapped in: the
    // pool would hold a dead worker until a call found it (never, on an idle replica).
    const waiting = record.retiring?.spare
    if (waiting !== undefined && !waiting.isAlive) this.#dropSpare(record)
    if (record.overMemory) {
      const spare = record.retiring?.spare
      if (spare === undefined) return OVER_MEMORY
      record.retiring = undefined
      return { spare, reason: 'max_rss' }
    }
    if (record.retiring === undefined && worker.calls >= record.callLimit) void this.retire(worker, 'max_calls').catch(() => {})
    if (this.#options.maxRssBytes > 0) this.#sampleSoon(worker, record)
    const retiring = record.retiring
    if (retiring?.spare === undefined) return undefined
    record.retiring = undefined
    return { spare: retiring.spare, reason: retiring.reason }
  }

  /**
   * A worker well under the limit is sampled in the background, at most every
   * RSS_SAMPLE_INTERVAL_MS. A call that ends sooner after the last sample is
   * measured when the interval is up: it may have grown the worker past the limit,
   * and an idle worker may take no call (and get no other sample) for a long time.
   */
  #sampleSoon (worker: PythonWorker, record: WorkerRecord): void {
    if (record.deferredSample !== undefined) return
    const waitMs = record.lastRssSampleAt + RSS_SAMPLE_INTERVAL_MS - performance.now()
    if (waitMs <= 0) { this.#sampleNow(worker, record); return }
    record.deferredSample = setTimeout(() => {
      record.deferredSample = undefined
      if (this.#records.get(worker) === record) this.#sampleNow(worker, record)
    }, waitMs).unref()
  }

  #sampleNow (worker: PythonWorker, record: WorkerRecord): void {
    record.lastRssSampleAt = performance.now()
    void worker.sampleRss().then(() => { this.noteRss(worker) })
  }

  /**
   * Acts on the worker's latest RSS reading, whoever took it (a sample after a call,
   * a scrape): past maxRssBytes, the worker takes no further call.
   */
  noteRss (worker: PythonWorker): void {
    if (!this.#pastRssLimit(worker.rssBytes) || !worker.isAlive) return
    const record = this.#records.get(worker)
    if (record === undefined || record.overMemory) return
    record.overMemory = true
    this.#options.onOverMemory(worker)
  }

  /**
   * The RSS a worker put in its reply, which it does only past the limit: afterCall then
   * answers OVER_MEMORY, before the worker can take another call.
   */
  reportedRss (worker: PythonWorker, rssBytes: number): void {
    worker.noteRss(rssBytes)
    // Its first call may be the one: the record is made here then, as afterCall would.
    if (!this.#closed) this.#overMemoryAfterCall(this.#record(worker), rssBytes)
  }

  /** Measures the worker's RSS now; afterCall then answers OVER_MEMORY if it is past the limit. */
  async checkRss (worker: PythonWorker): Promise<void> {
    const rss = await worker.sampleRss()
    if (this.#closed) return
    // None yet on its first call (afterCall makes it); none any more once it left the pool (forget).
    const record = this.#records.get(worker) ?? (worker.isAlive ? this.#record(worker) : undefined)
    if (record === undefined) return
    record.lastRssSampleAt = performance.now()
    this.#overMemoryAfterCall(record, rss)
  }

  #overMemoryAfterCall (record: WorkerRecord, rssBytes: number): void {
    // Not noteRss: its onOverMemory sweeps the idle workers, and this one is not idle yet.
    if (this.#pastRssLimit(rssBytes)) record.overMemory = true
  }

  #pastRssLimit (rssBytes: number): boolean {
    const maxRss = this.#options.maxRssBytes
    return maxRss > 0 && rssBytes > maxRss
  }

  /**
   * Marks a worker for retirement and starts its spare; resolves when the spare is
   * ready. `accept` may refuse the spare by throwing (a reload checking new task
   * code): the spare is killed, the worker stays, and retire rejects with that error.
   */
  async retire (worker: PythonWorker, reason: RetireReason, accept?: (spare: PythonWorker) => void): Promise<void> {
    if (this.#closed) return
    const record = this.#record(worker)
    const current = record.retiring
    if (current !== undefined && (reason !== 'reload' || current.reason === 'reload')) { await current.ready; return }
    if (current !== undefined) {
      // A reload does not take a spare started for another reason: it may run the code
      // from before the reload, and it was not checked. Dropped (killed once ready), and said:
      // its 'retiring worker' line is then counted under the reload's reason, not its own.
      record.retiring = undefined
      this.#options.log.info({ worker: worker.id, workerPid: worker.pid, sparePid: current.spare?.pid, reason: current.reason }, 'replacement not used: a reload replaces the worker instead (a spare started before it may run the code from before it)')
      if (current.spare !== undefined) void current.spare.kill()
    }
    if (reason !== 'reload' && performance.now() - this.#spareFailedAt < RETRY_AFTER_FAILED_SPARE_MS) return
    if (reason !== 'reload' && this.#options.isDraining?.() === true) return
    const retiring: Retiring = { reason, spare: undefined, ready: Promise.resolve() }
    record.retiring = retiring
    // rssBytes only once measured (0 until the first sample): a 0 would read as a fact.
    this.#options.log.info({ worker: worker.id, workerPid: worker.pid, reason, calls: worker.calls, rssBytes: worker.rssBytes > 0 ? worker.rssBytes : undefined }, 'retiring worker; starting its replacement')
    retiring.ready = this.#options.spawn(worker.id).then((spare) => {
      if (this.#closed || record.retiring !== retiring) { void spare.kill(); return }
      try {
        accept?.(spare)
      } catch (error) {
        void spare.kill()
        record.retiring = undefined
        throw error
      }
      retiring.spare = spare
      this.#options.onSpareReady()
    }, (error: Error) => {
      const current = record.retiring === retiring
      if (current) record.retiring = undefined
      if (this.#closed || !current) throw error // aborted by the shutdown, or dropped by a reload: nothing to report
      this.#spareFailedAt = performance.now()
      this.#options.onSpareFailed(reason)
      this.#options.log.error({ worker: worker.id, reason }, `replacement could not start, keeping the old worker: ${error.message}`)
      throw error
    })
    await retiring.ready
  }

  /**
   * Calls `then(true)` once the worker has left the pool (in that turn, or at once if it
   * has), or `then(false)` if it has not and will not for this retirement: its spare died
   * before taking over (the worker stays; retire it again to replace it), the retirement
   * was cancelled, or the pool is closing.
   */
  onceGone (worker: PythonWorker, then: (left: boolean) => void): void {
    const record = this.#records.get(worker)
    if (record === undefined || !worker.isAlive) then(true)
    else record.gone.push(then)
  }

  /**
   * A worker that is no pool member exited: if it was a spare waiting to take over,
   * that retirement is dropped (max_calls and max_rss retire the worker again after its
   * next call or sweep; a reload starts another spare). True if it was such a spare.
   */
  spareExited (spare: PythonWorker): boolean {
    for (const [worker, record] of this.#records) {
      const reason = record.retiring?.reason
      if (record.retiring?.spare !== spare || reason === undefined) continue
      this.#options.log.warn({ worker: worker.id, workerPid: worker.pid, sparePid: spare.pid, reason }, 'a spare exited before it could take over; the worker it was to replace stays for now')
      // Spares that die once ready (the OOM killer choosing the newest process, say) must
      // not be replaced in a tight loop: the same pause as after a spare that failed to start.
      if (reason !== 'reload') this.#spareFailedAt = performance.now()
      this.#dropSpare(record)
      return true
    }
    return false
  }

  /**
   * Drops the worker's retirement for `reason` (a reload that failed part-way): its spare
   * is killed, ready or not, and the worker stays; onceGone's callbacks get false.
   */
  cancelRetirement (worker: PythonWorker, reason: RetireReason): void {
    const record = this.#records.get(worker)
    if (record?.retiring?.reason !== reason) return
    const spare = record.retiring.spare
    this.#dropSpare(record) // a spare still starting is killed once ready: its retirement is no longer current
    this.#options.log.info({ worker: worker.id, workerPid: worker.pid, sparePid: spare?.pid, reason }, 'replacement not used: the worker it was to replace stays')
    if (spare !== undefined) void spare.kill()
  }

  #dropSpare (record: WorkerRecord): void {
    record.retiring = undefined
    for (const resolve of record.gone.splice(0)) resolve(false)
  }

  /**
   * The worker's spare, if one is ready and alive, taken from its retirement: the worker is
   * leaving the pool (it died, or timed out), and the spare can take its slot at once instead
   * of a replacement started cold. forget() then resolves the worker's onceGone with true.
   */
  takeReadySpare (worker: PythonWorker): PythonWorker | undefined {
    const record = this.#records.get(worker)
    const spare = record?.retiring?.spare
    if (record === undefined || spare === undefined || !spare.isAlive) return undefined
    record.retiring = undefined
    return spare
  }

  /** The worker has left the pool: drop its record and any spare it did not use. */
  forget (worker: PythonWorker): void {
    const record = this.#records.get(worker)
    if (record === undefined) return
    this.#records.delete(worker)
    clearTimeout(record.deferredSample)
    const spare = record.retiring?.spare
    const reason = record.retiring?.reason
    record.retiring = undefined
    if (spare !== undefined) {
      // Its worker died or timed out while the spare waited for it: the slot's replacement starts afresh.
      this.#options.log.info({ worker: worker.id, workerPid: worker.pid, sparePid: spare.pid, reason }, 'replacement not used: the worker it was to replace left the pool first')
      void spare.kill()
    }
    for (const resolve of record.gone.splice(0)) resolve(true)
  }

  /** Shutdown: kill spares that are ready and those still starting once they are. */
  async close (): Promise<void> {
    this.#closed = true
    const kills: Array<Promise<void>> = []
    for (const [worker, record] of this.#records) {
      clearTimeout(record.deferredSample)
      if (record.retiring?.spare !== undefined) kills.push(record.retiring.spare.kill())
      record.retiring = undefined
      // Not swapped: the shutdown stops it with the others.
      for (const resolve of record.gone.splice(0)) resolve(false)
      this.#records.delete(worker)
    }
    await Promise.all(kills)
  }
}
