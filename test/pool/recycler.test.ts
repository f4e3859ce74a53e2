// The recycler's decisions on their own: when a worker retires, that its spare is
// ready before it is swapped in, and that spares which fail are not retried in a
// tight loop. Its workers stand in for PythonWorker with the few fields it reads;
// the e2e resilience tests recycle real workers.

import t from 'tap'
import pino from 'pino'
import { Recycler, type RecyclerOptions } from '../../src/pool/recycler.js'
import type { PythonWorker } from '../../src/pool/python-worker.js'

interface StandIn { id: number, pid: number, calls: number, rssBytes: number, isAlive: boolean, killed: boolean }

let nextPid = 1000
function standIn (id: number): StandIn & PythonWorker {
  const worker = {
    id,
    pid: nextPid++,
    calls: 0,
    rssBytes: 0,
    isAlive: true,
    killed: false,
    async kill () { worker.killed = true; worker.isAlive = false },
    async sampleRss () { return worker.rssBytes }
  }
  return worker as unknown as StandIn & PythonWorker
}

function recycler (overrides: Partial<RecyclerOptions> & { spawns?: number[] } = {}): { recycler: Recycler, spawns: number[], failures: () => number } {
  const spawns = overrides.spawns ?? []
  let failed = 0
  const instance = new Recycler({
    maxCalls: 0,
    maxRssBytes: 0,
    spawn: async (id) => { spawns.push(id); return standIn(id) },
    log: pino({ level: 'silent' }),
    onSpareReady: () => {},
    onSpareFailed: () => { failed++ },
    onOverMemory: () => {},
    ...overrides
  })
  return { recycler: instance, spawns, failures: () => failed }
}

t.test('a retiring worker keeps serving until its spare is ready; the next call\'s end hands the spare over', async (t) => {
  const { recycler: r, spawns } = recycler()
  const worker = standIn(1)
  t.equal(r.afterCall(worker), undefined, 'nothing to do for a healthy worker')
  await r.retire(worker, 'reload')
  t.same(spawns, [1], 'a spare was started for the same slot')
  const swap = r.afterCall(worker)
  t.match(swap, { reason: 'reload' })
  t.not((swap as { spare: PythonWorker }).spare, worker)
  t.equal(r.afterCall(worker), undefined, 'handed over once')
})

t.test('MAX_CALLS_PER_WORKER: a worker retires within 10 % of the limit, once', async (t) => {
  const spawns: number[] = []
  const { recycler: r } = recycler({ maxCalls: 100, spawns })
  const worker = standIn(2)
  let retiredAt: number | undefined
  for (let calls = 1; calls <= 120 && retiredAt === undefined; calls++) {
    worker.calls = calls
    r.afterCall(worker)
    if (spawns.length > 0) retiredAt = calls
  }
  t.ok(retiredAt !== undefined && retiredAt >= 90 && retiredAt <= 110, `retired after ${String(retiredAt)} calls`)
  worker.calls++
  r.afterCall(worker)
  t.equal(spawns.length, 1, 'one spare, however many calls end while it starts')
})

t.test('while the pool drains for shutdown, a worker past MAX_CALLS_PER_WORKER gets no spare: it serves the drain out', async (t) => {
  const spawns: number[] = []
  let draining = true
  const { recycler: r } = recycler({ maxCalls: 10, spawns, isDraining: () => draining })
  const worker = standIn(1)
  for (let calls = 1; calls <= 20; calls++) {
    worker.calls = calls
    t.equal(r.afterCall(worker), undefined, `call ${calls}: released as it is`)
  }
  t.same(spawns, [], 'no spare started')
  draining = false
  worker.calls++
  r.afterCall(worker)
  t.same(spawns, [1], 'outside a drain, the next call\'s end starts one')
})

t.test('after a spare fails to start, calls and memory do not start another for a while; a reload does', async (t) => {
  let fail = true
  const spawns: number[] = []
  const { recycler: r, failures } = recycler({
    spawns,
    spawn: async (id) => { spawns.push(id); if (fail) throw new Error('cannot start'); return standIn(id) }
  })
  const worker = standIn(3)
  await t.rejects(r.retire(worker, 'max_calls'), /cannot start/)
  t.equal(failures(), 1, 'the failure was reported')
  t.equal(r.afterCall(worker), undefined, 'the old worker stays')
  fail = false
  await r.retire(worker, 'max_calls')
  await r.retire(worker, 'max_rss')
  t.same(spawns, [3], 'no second attempt right after the failure')
  await r.retire(worker, 'reload')
  t.same(spawns, [3, 3], 'a reload is not held back: it was asked for')
})

t.test('a spare that dies while it waits is not swapped in, and no other is started at once', async (t) => {
  const spares: StandIn[] = []
  const spawns: number[] = []
  const { recycler: r } = recycler({ spawns, spawn: async (id) => { spawns.push(id); const spare = standIn(id); spares.push(spare); return spare } })
  const worker = standIn(4)
  // What the pool does when a process exits: a spare's exit is reported to the recycler.
  const dies = (spare: StandIn): boolean => { spare.isAlive = false; return r.spareExited(spare as unknown as PythonWorker) }
  await r.retire(worker, 'max_calls')
  t.ok(dies(spares[0]), 'its exit is recognised as a spare\'s (the OOM killer picks the newest process, say)')
  t.equal(r.afterCall(worker), undefined, 'the worker\'s call ended: the dead spare is not handed over')
  await r.retire(worker, 'max_calls')
  t.same(spawns, [4], 'calls start no new spare right after one died')
  await r.retire(worker, 'reload')
  t.same(spawns, [4, 4], 'a reload does')
  t.ok(dies(spares[1]))
  t.equal(r.afterCall(worker), undefined, 'nor is a dead reload spare handed over')
  t.notOk(r.spareExited(standIn(6) as unknown as PythonWorker), 'an exit of no spare is not taken for one')
})

t.test('a reload that finds a spare started for MAX_CALLS_PER_WORKER drops it, says so, and starts its own', async (t) => {
  const spares: StandIn[] = []
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write (line: string) { lines.push(JSON.parse(line)) } })
  const { recycler: r } = recycler({ maxCalls: 10, log, spawn: async (id) => { const spare = standIn(id); spares.push(spare); return spare } })
  const worker = standIn(6)
  await r.retire(worker, 'max_calls')
  await r.retire(worker, 'reload')
  t.equal(spares.length, 2, 'the reload started a spare of its own')
  t.ok(spares[0].killed, 'the one started before the reload was killed')
  t.match(r.afterCall(worker), { reason: 'reload', spare: spares[1] }, 'the reload\'s spare takes over')
  // Each retiring line is matched by a restart or by a line saying why it was not one (a review
  // counted more max_calls retirements in the log than in pyworker_worker_restarts_total).
  t.match(lines.map((line) => [line.msg, line.reason]), [
    ['retiring worker; starting its replacement', 'max_calls'],
    ['replacement not used: a reload replaces the worker instead (a spare started before it may run the code from before it)', 'max_calls'],
    ['retiring worker; starting its replacement', 'reload']
  ])
  t.match(lines[1], { worker: 6, workerPid: worker.pid, sparePid: spares[0].pid })
})

t.test('close() kills a ready spare and tells whoever waits that the worker did not leave', async (t) => {
  const spares: StandIn[] = []
  const { recycler: r } = recycler({ spawn: async (id) => { const spare = standIn(id); spares.push(spare); return spare } })
  const worker = standIn(5)
  await r.retire(worker, 'reload')
  const gone = new Promise<boolean>((resolve) => { r.onceGone(worker, resolve) })
  await r.close()
  t.equal(await gone, false)
  t.ok(spares[0].killed, 'the unused spare was killed')
  t.equal(r.afterCall(worker), undefined, 'nothing is handed over once closed')
})
