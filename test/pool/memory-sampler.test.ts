// MemorySampler: readings asked for while one is under way share it.

import t from 'tap'
import { MemorySampler } from '../../src/pool/memory-sampler.js'
import type { PythonWorker } from '../../src/pool/python-worker.js'

function fakeWorker (readings: { count: number }): PythonWorker {
  return { sampleRss: async () => { readings.count++; await new Promise((resolve) => setImmediate(resolve)); return 1 } } as unknown as PythonWorker
}

t.test('forty scrapes at once read each worker once; a later scrape reads again', async (t) => {
  const readings = { count: 0 }
  const noted: PythonWorker[] = []
  const workers = [fakeWorker(readings), fakeWorker(readings)]
  const sampler = new MemorySampler(() => workers, (worker) => { noted.push(worker) })
  await Promise.all(Array.from({ length: 40 }, async () => { await sampler.sample() }))
  t.equal(readings.count, 2, 'one reading per worker')
  t.same(noted, workers, 'each reading noted')
  await sampler.sample()
  t.equal(readings.count, 4, 'the next scrape reads anew')
})

t.test('a reading that fails is not kept: the next one tries again', async (t) => {
  let fail = true
  const worker = { sampleRss: async () => { if (fail) throw new Error('gone'); return 1 } } as unknown as PythonWorker
  const sampler = new MemorySampler(() => [worker], () => {})
  await t.rejects(sampler.sample(), { message: 'gone' })
  fail = false
  await sampler.sample()
})
