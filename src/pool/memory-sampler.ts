// Reading the workers' RSS on demand (scrapes, /api/queue-stats): one reading at a time,
// shared by whoever asks meanwhile. What a reading past MAX_WORKER_RSS_MB means is
// recycler.ts's to decide.

import type { PythonWorker } from './python-worker.js'

export class MemorySampler {
  readonly #members: () => PythonWorker[]
  readonly #noteRss: (worker: PythonWorker) => void
  /** The reading under way, if any. */
  #sampling: Promise<void> | undefined

  constructor (members: () => PythonWorker[], noteRss: (worker: PythonWorker) => void) {
    this.#members = members
    this.#noteRss = noteRss
  }

  /** Reads every worker's RSS now, or waits for the reading already under way. */
  async sample (): Promise<void> {
    // Shared: each reading holds a file open per worker until it is read, and 40 scrapes at
    // once held 160 with four workers, files the connection cap's reserve
    // (open-file-limit.ts) counts once per worker.
    this.#sampling ??= this.#sampleNow().finally(() => { this.#sampling = undefined })
    await this.#sampling
  }

  async #sampleNow (): Promise<void> {
    await Promise.all(this.#members().map(async (worker) => {
      await worker.sampleRss()
      this.#noteRss(worker)
    }))
  }
}
