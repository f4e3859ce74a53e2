// Reloader's waiting, with a supervisor standing in for the pool's: the cases that
// take long or need workers dying at exact moments in the real thing
// (test/e2e/resilience.test.ts has the reloads of real workers).

import t from 'tap'
import pino from 'pino'
import { Reloader, ReloadFailedError } from '../../src/pool/reloader.js'
import type { Recycler } from '../../src/pool/recycler.js'
import type { Supervisor } from '../../src/pool/supervisor.js'

/** A pool whose workers all die as they start: never one running, a replacement always starting. */
function crashLooping (startFailures = 0): Supervisor {
  return {
    members: () => [],
    liveWorkers: 0,
    isStarting: true,
    startFailures,
    isStartingBefore: () => false
  } as unknown as Supervisor
}

function reloader (supervisor: Supervisor, maxWaitForAnyMs: number): Reloader {
  return new Reloader({
    recycler: {} as Recycler,
    supervisor,
    log: pino({ level: 'silent' }),
    isDraining: () => false,
    sweepIdle: () => {},
    maxWaitForAnyMs
  })
}

t.test('a reload with no worker running waits for one that stays up, and gives up after its bound, saying why', async (t) => {
  const error = await reloader(crashLooping(), 300).reload().catch((e: unknown) => e)
  t.ok(error instanceof ReloadFailedError)
  t.match(error, { message: 'no worker stayed up for 0.3 s to be replaced: they die as they start or soon after (see the log)', replaced: 0 })
})

t.test('with every slot backing off after failed starts, they try again at once: a try that fails too fails the reload, naming them', async (t) => {
  let retries = 0
  const state = { ...crashLooping(3), isStarting: false, startFailures: 3, retryNow: () => { retries++; state.startFailures++ } }
  const supervisor = state as unknown as Supervisor
  const error = await reloader(supervisor, 60_000).reload().catch((e: unknown) => e)
  t.equal(retries, 1, 'one try, not one per turn of its loop')
  t.match(error, { message: /every slot is restarting after failed starts, and the retry this reload asked for failed too/ })
})

/** Every slot backing off after failed starts; retryNow() starts one, whose worker (pid) joins after startMs. */
function backingOffThenStarting (pid: number, startMs: number): Supervisor {
  const fresh = { pid, sequence: Number.MAX_SAFE_INTEGER, isAlive: true }
  const state = {
    ...crashLooping(2),
    startFailures: 2,
    isStarting: false,
    retryNow: () => {
      state.isStarting = true
      setTimeout(() => { Object.assign(state, { isStarting: false, startFailures: 0, liveWorkers: 1, members: () => [fresh] }) }, startMs)
    }
  }
  return state as unknown as Supervisor
}

t.test('the try it asked for is waited for past maxWaitForAnyMs while it is still starting (a slow import, bounded by its own start timeout)', async (t) => {
  const result = await reloader(backingOffThenStarting(302, 400), 100).reload()
  t.same(result.newPids, [302], 'a start of 0.4 s, four times the 0.1 s bound for workers that keep dying')
})

t.test('with every slot backing off, a try that starts a worker is the reload done: it loaded the code on disk', async (t) => {
  const result = await reloader(backingOffThenStarting(301, 120), 60_000).reload()
  t.same(result.newPids, [301])
  t.same(result.oldPids, [])
})

t.test('a reload asked for while one runs is not joined to it: it runs after it, once for every request made meanwhile', async (t) => {
  const reloads = reloader(crashLooping(), 200)
  const first = reloads.reload().catch((e: unknown) => e)
  const second = reloads.reload().catch((e: unknown) => e)
  const third = reloads.reload().catch((e: unknown) => e)
  const [firstError, secondError, thirdError] = await Promise.all([first, second, third])
  t.ok(firstError instanceof ReloadFailedError && secondError instanceof ReloadFailedError)
  t.not(secondError, firstError, 'a reload of its own')
  t.equal(thirdError, secondError, 'shared by the requests made while the first ran')
  t.notOk(reloads.isActive, 'and none is left running')
})

t.test('a reload asked for as the one before the follow-up ends shares the follow-up: never two at once', async (t) => {
  const reloads = reloader(crashLooping(), 100)
  let later: Promise<unknown> | undefined
  let activeWhenAsked: boolean | undefined
  // Asked for from the first reload's own rejection handler: the moment its promise has settled
  // and the follow-up has not started yet.
  const first = reloads.reload().catch(() => { activeWhenAsked = reloads.isActive; later = reloads.reload().catch((e: unknown) => e) })
  const second = reloads.reload().catch((e: unknown) => e)
  await first
  t.equal(activeWhenAsked, false, 'no reload was running at that moment')
  t.equal(await later, await second, 'it shares the follow-up asked for before it, which had not started')
  t.notOk(reloads.isActive)
})

t.test('newPids lists the workers running the new code: not a member killed meanwhile, whose slot waits for its replacement', async (t) => {
  // Workers created after the reload began (sequence past PythonWorker.created then) are new: none to replace.
  const running = { pid: 101, sequence: Number.MAX_SAFE_INTEGER, isAlive: true }
  const killed = { pid: 102, sequence: Number.MAX_SAFE_INTEGER, isAlive: false }
  const supervisor = { ...crashLooping(), members: () => [running, killed], liveWorkers: 1, isStarting: false } as unknown as Supervisor
  const result = await reloader(supervisor, 60_000).reload()
  t.same(result.newPids, [101])
  t.same(result.oldPids, [])
})

/** A worker of the old code (created before any reload), busy with a call until `callEnds` (then idle), or idle. */
interface FakeWorker { pid: number, sequence: number, isAlive: boolean, state: 'idle' | 'busy', callEnds: Promise<void> }

function oldWorker (pid: number, callEnds?: Promise<void>): FakeWorker {
  const worker: FakeWorker = { pid, sequence: -1, isAlive: true, state: callEnds === undefined ? 'idle' : 'busy', callEnds: callEnds ?? Promise.resolve() }
  void worker.callEnds.then(() => { worker.state = 'idle' })
  return worker
}

/** A promise and the function that resolves it. */
function deferred (): { promise: Promise<void>, resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((r) => { resolve = r })
  return { promise, resolve }
}

/** Resolves once `events` holds `event` (looked at every 5 ms). */
async function whenSeen (events: string[], event: string): Promise<void> {
  while (!events.includes(event)) await new Promise((resolve) => setTimeout(resolve, 5))
}

/**
 * A pool of `workers` whose spares are ready at once and swapped in when their worker's call
 * ends (as the pool's swap after a call); `refuse` fails the spare of that pid as a task
 * table check would, and `swappedBySweep` is swapped before retire's caller resumes. Records
 * what the reload did, in order.
 */
function poolOf (workers: FakeWorker[], refuse?: number, swappedBySweep?: number): { supervisor: Supervisor, recycler: Recycler, events: string[], members: FakeWorker[] } {
  const members = [...workers]
  const events: string[] = []
  const swap = (worker: FakeWorker): void => {
    members.splice(members.indexOf(worker), 1, { ...worker, pid: worker.pid + 1000, sequence: Number.MAX_SAFE_INTEGER })
    events.push(`swapped ${worker.pid}`)
  }
  const cancelled = new Map<FakeWorker, () => void>()
  const supervisor = {
    members: () => members,
    get liveWorkers () { return members.length },
    isStarting: false,
    startFailures: 0,
    isStartingBefore: () => false
  } as unknown as Supervisor
  const recycler = {
    retire: async (worker: FakeWorker) => {
      events.push(`retire ${worker.pid}`)
      if (worker.pid === refuse) throw new Error('the new code declares no tasks')
      // An idle worker is swapped by the pool's sweep as its spare becomes ready, before retire's caller resumes.
      if (worker.state === 'idle' && worker.pid === swappedBySweep) swap(worker)
    },
    onceGone: (worker: FakeWorker, then: (left: boolean) => void) => {
      if (!members.includes(worker)) { then(true); return } // swapped already
      cancelled.set(worker, () => { then(false) })
      void worker.callEnds.then(() => {
        swap(worker)
        then(true)
      })
    },
    cancelRetirement: (worker: FakeWorker) => { events.push(`cancel ${worker.pid}`); cancelled.get(worker)?.() }
  } as unknown as Recycler
  return { supervisor, recycler, events, members }
}

function reloaderOf (supervisor: Supervisor, recycler: Recycler): Reloader {
  return new Reloader({ recycler, supervisor, log: pino({ level: 'silent' }), isDraining: () => false, sweepIdle: () => {} })
}

t.test('a worker busy with a long call does not hold up the rest: one that becomes free meanwhile is replaced, and the busy one is swapped when its call ends', async (t) => {
  const short = deferred()
  const swappedOther = deferred()
  // The long call ends only once the other worker has been swapped (a reload that waited
  // for each swap in turn never got there: the fallback then ends it, and the order is wrong).
  const fallback = setTimeout(swappedOther.resolve, 3000)
  t.teardown(() => { clearTimeout(fallback) })
  const { supervisor, recycler, events } = poolOf([oldWorker(1, swappedOther.promise), oldWorker(2, short.promise)])
  const reload = reloaderOf(supervisor, recycler).reload()
  setTimeout(short.resolve, 50)
  void whenSeen(events, 'swapped 2').then(swappedOther.resolve)
  const result = await reload
  t.same(events, ['retire 1', 'retire 2', 'swapped 2', 'swapped 1'], 'the second worker replaced once free, while the first one\'s spare waited')
  t.same(result.oldPids, [2, 1])
  t.same(result.newPids, [1001, 1002])
})

t.test('at most two spares wait for busy workers at a time: the other busy workers get theirs as one is swapped or as they become free', async (t) => {
  const calls = [deferred(), deferred(), deferred(), deferred()]
  const { supervisor, recycler, events } = poolOf(calls.map((call, i) => oldWorker(i + 1, call.promise)))
  const reload = reloaderOf(supervisor, recycler).reload()
  await whenSeen(events, 'retire 2')
  await new Promise((resolve) => setTimeout(resolve, 200)) // four looks of the reload's
  t.same(events, ['retire 1', 'retire 2'], 'no third spare while two wait and every other worker is busy')
  calls[3].resolve()
  await whenSeen(events, 'swapped 4')
  t.same(events, ['retire 1', 'retire 2', 'retire 4', 'swapped 4'], 'a worker that became free is replaced at once')
  calls[1].resolve()
  await whenSeen(events, 'swapped 2')
  await whenSeen(events, 'retire 3')
  t.same(events.slice(4), ['swapped 2', 'retire 3'], 'a swap makes room for the next spare')
  calls[0].resolve()
  calls[2].resolve()
  t.same((await reload).oldPids, [4, 2, 1, 3])
})

t.test('a worker idle when picked that takes a long call while its spare starts makes its spare wait too: never more than three wait', async (t) => {
  // Each worker is idle when the reload looks, and busy with a long call by the time its spare is ready (a queued call took it).
  const calls = [deferred(), deferred(), deferred(), deferred(), deferred()]
  const workers = calls.map((call, i) => ({ ...oldWorker(i + 1), callEnds: call.promise }))
  for (const worker of workers) void worker.callEnds.then(() => { worker.state = 'idle' })
  const { supervisor, recycler: pool, events } = poolOf(workers)
  const recycler = {
    ...pool,
    retire: async (worker: FakeWorker, ...rest: unknown[]) => {
      await new Promise((resolve) => setTimeout(resolve, 20)) // the spare's start
      worker.state = 'busy'
      await (pool.retire as (...args: unknown[]) => Promise<void>)(worker, ...rest)
    }
  } as unknown as Recycler
  const reload = reloaderOf(supervisor, recycler).reload()
  await whenSeen(events, 'retire 3')
  await new Promise((resolve) => setTimeout(resolve, 200)) // four looks of the reload's
  t.same(events, ['retire 1', 'retire 2', 'retire 3'], 'an idle pick while two wait makes three, and then none (the old code gave all five a spare, waiting beside five long calls)')
  calls[0].resolve()
  await whenSeen(events, 'retire 4')
  t.same(events.slice(3), ['swapped 1', 'retire 4'], 'a swap makes room for the next')
  for (const call of calls) call.resolve()
  t.same((await reload).oldPids.sort(), [1, 2, 3, 4, 5])
})

t.test('a reload gives up once MAX_SPARE_DEATHS (3) spares have died before taking over, not after a fourth', async (t) => {
  const { supervisor, recycler: pool, events } = poolOf([oldWorker(1)])
  // Every spare dies before it takes over: the worker stays, and the reload tries again.
  const recycler = { ...pool, onceGone: (_worker: FakeWorker, then: (left: boolean) => void) => { setTimeout(() => { then(false) }, 1) } } as unknown as Recycler
  await t.rejects(reloaderOf(supervisor, recycler).reload(), { message: /^replacements died before they could take over 3 times/ })
  t.same(events, ['retire 1', 'retire 1', 'retire 1'], 'three spares started, not four')
})

t.test('a worker of the old code that joins while a spare waits (a crash replacement begun before the reload) is replaced without waiting for the busy one', async (t) => {
  const swappedJoined = deferred()
  const fallback = setTimeout(swappedJoined.resolve, 3000)
  t.teardown(() => { clearTimeout(fallback) })
  const { supervisor, recycler, events, members } = poolOf([oldWorker(1, swappedJoined.promise)])
  const reload = reloaderOf(supervisor, recycler).reload()
  await whenSeen(events, 'retire 1')
  members.push(oldWorker(9))
  void whenSeen(events, 'swapped 9').then(swappedJoined.resolve)
  t.same((await reload).oldPids, [9, 1])
  t.same(events, ['retire 1', 'retire 9', 'swapped 9', 'swapped 1'])
})

t.test('an idle worker of the old code is replaced before a busy one', async (t) => {
  const call = deferred()
  const { supervisor, recycler, events } = poolOf([oldWorker(1, call.promise), oldWorker(2)])
  const reload = reloaderOf(supervisor, recycler).reload()
  setTimeout(call.resolve, 20)
  t.same((await reload).oldPids, [2, 1])
  t.equal(events[0], 'retire 2')
})

t.test('a reload that fails part-way drops the spare still waiting for a busy worker: it stays on the old code, as reported', async (t) => {
  const second = deferred()
  const { supervisor, recycler, events } = poolOf([oldWorker(1, new Promise<void>(() => {})), oldWorker(2, second.promise)], 2)
  const reload = reloaderOf(supervisor, recycler).reload().catch((e: unknown) => e)
  setTimeout(second.resolve, 20)
  const error = await reload
  t.ok(error instanceof ReloadFailedError)
  t.match(error, { message: 'the new code declares no tasks', replaced: 0, total: 2 })
  t.same(events, ['retire 1', 'retire 2', 'cancel 1'])
})

t.test('a reload that fails part-way counts a worker swapped while the next spare was starting', async (t) => {
  const { supervisor, recycler, events } = poolOf([oldWorker(1), oldWorker(2)], 2)
  const error = await reloaderOf(supervisor, recycler).reload().catch((e: unknown) => e)
  t.match(error, { message: 'the new code declares no tasks', replaced: 1, total: 2 })
  t.same(events, ['retire 1', 'retire 2', 'swapped 1'])
})

t.test('a worker already swapped when the reload looks (the pool\'s sweep took it as its spare became ready) is counted, and the reload goes on', async (t) => {
  const { supervisor, recycler, events } = poolOf([oldWorker(1), oldWorker(2)], undefined, 1)
  const result = await reloaderOf(supervisor, recycler).reload()
  t.same(result.oldPids, [1, 2])
  t.same(events, ['retire 1', 'swapped 1', 'retire 2', 'swapped 2'])
})
