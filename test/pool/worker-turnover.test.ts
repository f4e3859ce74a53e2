// What worker-turnover.ts does when generic-pool refuses a worker it hands back: a
// release or destroy of a worker the pool has not lent out rejects, and only a bug in
// pyfleet can make one. Unhandled, that rejection ended the process (Node 20) with every
// call on it. The pool here is generic-pool itself; its workers stand in for PythonWorker
// with the few fields the turnover reads.

import t from 'tap'
import genericPool from 'generic-pool'
import { WorkerTurnover, type WorkerTurnoverOptions } from '../../src/pool/worker-turnover.js'
import type { PythonWorker } from '../../src/pool/python-worker.js'

interface LogLine { level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string }

function standIn (id: number): PythonWorker {
  return { id, pid: 1000 + id, state: 'idle', calls: 0, stopRequested: false } as unknown as PythonWorker
}

function turnover (workers: WorkerTurnoverOptions['workers']): { turnover: WorkerTurnover, lines: LogLine[] } {
  const lines: LogLine[] = []
  const at = (level: LogLine['level']) => (fields: Record<string, unknown>, msg: string) => { lines.push({ level, fields, msg }) }
  const options = {
    workers,
    admission: { dispatch () {} },
    recycler: { afterCall: () => undefined, forget () {}, takeReadySpare: () => undefined },
    supervisor: { handOver () {} },
    log: { info: at('info'), warn: at('warn'), error: at('error') },
    observer: { workerRestarted () {} },
    maxWorkerRssBytes: 0,
    isClosed: () => false
  }
  return { turnover: new WorkerTurnover(options as unknown as WorkerTurnoverOptions), lines }
}

/** A generic-pool of `size` stand-ins, all created, none lent. */
async function poolOf (size: number): Promise<genericPool.Pool<PythonWorker>> {
  let id = 0
  const pool = genericPool.createPool({ create: async () => standIn(id++), destroy: async () => {} }, { min: size, max: size })
  await pool.ready()
  return pool
}

t.test('a worker generic-pool did not lend, given back or discarded, is logged as a bug and ends nothing', async (t) => {
  const pool = await poolOf(1)
  t.teardown(async () => { await pool.drain(); await pool.clear() })
  const { turnover: workers, lines } = turnover(pool)
  const stray = standIn(7)
  t.equal(workers.giveBack(stray), undefined)
  workers.discard(stray, 'crash')
  // generic-pool rejects a microtask or two later.
  await new Promise((resolve) => setImmediate(resolve))
  const bugs = lines.filter((line) => line.level === 'error' && /please report it/.test(line.msg))
  t.same(bugs.map((line) => line.msg), [
    'the pool refused to release worker 7: a bug in pyfleet, please report it',
    'the pool refused to destroy worker 7: a bug in pyfleet, please report it'
  ])
  t.match(bugs[0].fields, { worker: 7, workerPid: 1007, err: { message: /not currently part of this pool/ } }, 'with generic-pool\'s reason')
  t.equal(pool.available, 1, 'the pool\'s own worker is untouched')
})

t.test('a worker lent out is released and destroyed without a word', async (t) => {
  const pool = await poolOf(2)
  t.teardown(async () => { await pool.drain(); await pool.clear() })
  const { turnover: workers, lines } = turnover(pool)
  const kept = await pool.acquire()
  const failed = await pool.acquire()
  workers.giveBack(kept)
  workers.discard(failed, 'crash')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(lines.filter((line) => line.level === 'error' && /please report it/.test(line.msg)), [])
  t.equal(pool.borrowed, 0)
  t.equal(pool.isBorrowedResource(kept), false)
})
