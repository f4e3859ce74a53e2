// Admission's rules on their own: who starts, who waits, who is turned away, and
// that every call is settled and counted once. Admission never touches a worker,
// so a counter of free workers and a list of started calls stand in for the pool;
// the e2e tests run the same rules through real workers.

import t from 'tap'
import { Admission, type Waiter } from '../../src/pool/admission.js'
import type { Call, CallOutcome, PoolTask } from '../../src/pool/call.js'

interface Harness {
  admission: Admission
  /** Calls handed to the pool to run, in the order they were started. */
  started: Waiter[]
  /** Outcomes reported to the observer, as "task:outcome" (refused ones as "refused:task:outcome"). */
  counted: string[]
  free: { workers: number }
}

function harness ({ queueLimit = 10, queueLimitBytes = 0, queueTimeoutMs = 60_000, freeWorkers = 0, poolSize = 4, liveWorkers = undefined as number | undefined, shedLateCalls = false } = {}): Harness {
  const started: Waiter[] = []
  const counted: string[] = []
  const free = { workers: freeWorkers }
  const admission = new Admission({
    queueLimit,
    queueLimitBytes,
    queueTimeoutMs,
    poolSize,
    shedLateCalls,
    observer: {
      callEnded: (call, outcome) => { counted.push(`${call.task.name}:${outcome}`) },
      callRefused: (call, outcome) => { counted.push(`refused:${call.task.name}:${outcome}`) },
      workerRestarted: () => {},
      workerStartFailed: () => {}
    },
    freeWorkers: () => free.workers,
    liveWorkers: () => liveWorkers ?? poolSize,
    // As the pool does: a started call takes a worker at once.
    start: (waiter) => { free.workers--; started.push(waiter) }
  })
  return { admission, started, counted, free }
}

function task (name: string, maxConcurrency = Infinity): PoolTask {
  return { name, timeoutMs: 30_000, maxConcurrency }
}

function call (on: PoolTask, extra: Partial<Call> = {}): Call {
  return { task: on, input: null, requestId: `req-${Math.random()}`, queueMs: 0, runMs: 0, ...extra }
}

/** What the pool does when a call's worker replies: free it, settle the call, start the next. */
function complete (h: Harness, waiter: Waiter, value: unknown = 'done'): void {
  h.admission.finished(waiter)
  h.free.workers++
  h.admission.settle(waiter, 'ok', undefined, value)
  h.admission.dispatch()
}

/** The error a call's promise rejected with, or a failure if it resolved. */
async function rejection (promise: Promise<unknown>): Promise<Error & { code?: string, statusCode?: number, retryAfterSeconds?: number }> {
  return await promise.then(() => { throw new Error('expected a rejection') }, (error: Error) => error)
}

t.test('a call starts at once when a worker is free and nobody waits', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const echo = task('echo')
  const result = h.admission.admit(call(echo))
  t.equal(h.started.length, 1, 'started synchronously, without queueing')
  t.equal(h.admission.waiting, 0)
  complete(h, h.started[0], 42)
  t.equal(await result, 42)
  t.same(h.counted, ['echo:ok'])
})

t.test('calls wait in arrival order and start as workers come free', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const echo = task('echo')
  const results = [1, 2, 3].map((n) => h.admission.admit(call(echo, { input: n })))
  t.equal(h.started.length, 1)
  t.equal(h.admission.waiting, 2)
  complete(h, h.started[0], 1)
  t.equal(h.started.length, 2, 'the next one starts when the worker is back')
  complete(h, h.started[1], 2)
  complete(h, h.started[2], 3)
  t.same(h.started.map((w) => w.call.input), [1, 2, 3], 'first come, first served')
  t.same(await Promise.all(results), [1, 2, 3])
  t.equal(h.admission.waiting, 0)
})

t.test('a full queue turns the call away with 503 QUEUE_FULL and Retry-After, counted as queue_full', async (t) => {
  const h = harness({ queueLimit: 2 })
  const echo = task('echo')
  const queued = [h.admission.admit(call(echo)), h.admission.admit(call(echo))]
  const error = await rejection(h.admission.admit(call(echo)))
  t.equal(error.code, 'QUEUE_FULL')
  t.equal(error.statusCode, 503)
  t.equal(error.retryAfterSeconds, 1)
  t.equal(error.message, '2 callers are already waiting for a worker; retry later')
  const one = harness({ queueLimit: 1 })
  const first = one.admission.admit(call(echo))
  t.equal((await rejection(one.admission.admit(call(echo)))).message, '1 caller is already waiting for a worker; retry later')
  one.admission.failQueued(() => new Error('end of test'), 'cancelled')
  await first.catch(() => {})
  const none = harness({ queueLimit: 0 })
  t.equal((await rejection(none.admission.admit(call(echo)))).message, 'every worker is busy and QUEUE_LIMIT=0 lets no caller wait; retry later')
  const starting = harness({ queueLimit: 0, poolSize: 4, liveWorkers: 3 })
  t.equal((await rejection(starting.admission.admit(call(echo)))).message, 'no worker is free (3 of 4 running, the rest starting) and QUEUE_LIMIT=0 lets no caller wait; retry later', 'not "busy" while one is starting')
  // Three workers free, but the task's own limit reached: not "every worker is busy".
  const limited = harness({ queueLimit: 0, freeWorkers: 4 })
  const csv = task('csv.profile', 1)
  const running = limited.admission.admit(call(csv))
  t.equal(limited.started.length, 1)
  t.equal((await rejection(limited.admission.admit(call(csv)))).message, 'csv.profile already runs 1 call at once, its TASK_CONCURRENCY limit, and QUEUE_LIMIT=0 lets no caller wait; retry later')
  complete(limited, limited.started[0])
  await running
  t.same(h.counted, ['refused:echo:queue_full'])
  t.equal(h.admission.waiting, 2, 'the refused call took no place in the queue')
  h.admission.failQueued(() => new Error('end of test'), 'cancelled')
  await Promise.allSettled(queued)
})

t.test('QUEUE_LIMIT_BYTES: a call whose input would take the queued bytes past it is turned away; one alone always waits', async (t) => {
  const h = harness({ queueLimitBytes: 1000, queueTimeoutMs: 50 })
  const echo = task('echo')
  const big = h.admission.admit(call(echo, { input: 'big', inputBytes: 5000 }))
  t.equal(h.admission.queuedBytes, 5000, 'alone in the queue, a call waits whatever its size')
  const refused = await rejection(h.admission.admit(call(echo, { inputBytes: 1 })))
  t.equal(refused.code, 'QUEUE_FULL')
  t.equal(refused.retryAfterSeconds, 1)
  t.equal(refused.message, 'the caller already waiting holds 5000 bytes of input, at or past QUEUE_LIMIT_BYTES=1000 already; retry later')
  t.same(h.counted, ['refused:echo:queue_full'])
  // Every way out of the queue gives its bytes back: a start, a timeout, a client gone, failQueued.
  h.free.workers = 1
  h.admission.dispatch()
  t.equal(h.admission.queuedBytes, 0, 'started: no longer queued')
  const small = [300, 300, 300].map((inputBytes) => h.admission.admit(call(echo, { inputBytes })))
  t.equal(h.admission.queuedBytes, 900)
  t.equal((await rejection(h.admission.admit(call(echo, { inputBytes: 101 })))).message,
    'the 3 callers already waiting hold 900 bytes of input, and this call\'s 101 would take the queue past QUEUE_LIMIT_BYTES=1000; retry later')
  const exactly = h.admission.admit(call(echo, { inputBytes: 100 }))
  t.equal(h.admission.queuedBytes, 1000, '900 + 100 = 1000 is within the limit')
  await Promise.allSettled([...small, exactly]) // their queue timeout (50 ms)
  t.equal(h.admission.queuedBytes, 0, 'timed out: given back')
  let leave: () => void = () => {}
  const gone = h.admission.admit(call(echo, { inputBytes: 400, onClientGone: (cancel) => { leave = cancel; return () => {} } }))
  const rest = h.admission.admit(call(echo, { inputBytes: 400 }))
  leave()
  await gone.catch(() => {})
  t.equal(h.admission.queuedBytes, 400, 'a client gone: given back')
  h.admission.failQueued(() => new Error('end of test'), 'cancelled')
  await rest.catch(() => {})
  t.equal(h.admission.queuedBytes, 0, 'failQueued: given back')
  complete(h, h.started[0])
  await big
  // A call started on a worker that turned out dead goes back to the front of the queue, bytes and all.
  const again = h.admission.admit(call(echo, { inputBytes: 700 }))
  t.equal(h.admission.queuedBytes, 0, 'a free worker: started at once, never queued')
  h.admission.requeue(h.started[h.started.length - 1])
  t.equal(h.admission.queuedBytes, 700, 'requeued: its bytes count again')
  h.free.workers = 1
  h.admission.dispatch()
  t.equal(h.admission.queuedBytes, 0, 'started again: given back')
  complete(h, h.started[h.started.length - 1])
  await again
})

t.test('a task at its concurrency limit waits; calls of other tasks behind it go ahead', async (t) => {
  const h = harness({ freeWorkers: 3 })
  const slow = task('slow', 1)
  const echo = task('echo')
  const first = h.admission.admit(call(slow, { input: 'slow-1' }))
  const second = h.admission.admit(call(slow, { input: 'slow-2' }))
  const other = h.admission.admit(call(echo, { input: 'echo' }))
  t.same(h.started.map((w) => w.call.input), ['slow-1', 'echo'], 'slow-2 waits for slow-1 although workers are free; echo does not wait for slow-2')
  t.equal(h.admission.waiting, 1)
  complete(h, h.started[0], 'a')
  t.same(h.started.map((w) => w.call.input), ['slow-1', 'echo', 'slow-2'], 'slow-2 starts once slow-1 has finished')
  complete(h, h.started[1], 'b')
  complete(h, h.started[2], 'c')
  t.same(await Promise.all([first, second, other]), ['a', 'c', 'b'])
})

t.test('a call that waits past QUEUE_TIMEOUT_MS gets 503 QUEUE_TIMEOUT and is never started', async (t) => {
  const h = harness({ queueTimeoutMs: 20 })
  const waited = call(task('echo'))
  const error = await rejection(h.admission.admit(waited))
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.equal(waited.limit, 'queue_timeout_ms', 'ended by the server\'s limit (pyfleet_calls_limited_total)')
  t.equal(error.retryAfterSeconds, 1)
  t.match(error.message, /within 20 ms; retry later/)
  t.same(h.counted, ['echo:queue_timeout'])
  h.free.workers = 1
  h.admission.dispatch()
  t.equal(h.started.length, 0, 'a worker coming free later does not start it')
  t.equal(h.admission.waiting, 0)
})

t.test('a call held by its task\'s TASK_CONCURRENCY limit past QUEUE_TIMEOUT_MS is told so, not that no worker became free', async (t) => {
  const h = harness({ freeWorkers: 3, queueTimeoutMs: 20 })
  const slow = task('slow', 1)
  void h.admission.admit(call(slow, { input: 'slow-1' }))
  const error = await rejection(h.admission.admit(call(slow, { input: 'slow-2' })))
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.equal(error.message, 'no call of slow could start within 20 ms: it runs 1 at once, its TASK_CONCURRENCY limit; retry later', 'two workers sat idle all along')
  t.same(h.counted, ['slow:queue_timeout'])
  complete(h, h.started[0])
})

t.test('a task at a limit of POOL_SIZE (the default, no TASK_CONCURRENCY set) is held by a full pool: the errors do not name TASK_CONCURRENCY', async (t) => {
  const h = harness({ freeWorkers: 2, poolSize: 2, queueTimeoutMs: 20 })
  const work = task('diag.work', 2)
  void h.admission.admit(call(work, { input: 'a' }))
  void h.admission.admit(call(work, { input: 'b' }))
  h.free.workers = 0
  const error = await rejection(h.admission.admit(call(work, { input: 'c' })))
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.notMatch(error.message, /TASK_CONCURRENCY/, error.message)
  t.match(error.message, /within 20 ms; retry later$/)
  const none = harness({ queueLimit: 0, freeWorkers: 1, poolSize: 1 })
  const one = task('echo', 1)
  void none.admission.admit(call(one))
  none.free.workers = 0
  t.equal((await rejection(none.admission.admit(call(one)))).message, 'every worker is busy and QUEUE_LIMIT=0 lets no caller wait; retry later')
  complete(h, h.started[0])
  complete(h, h.started[1])
  complete(none, none.started[0])
})

t.test('a budget shorter than QUEUE_TIMEOUT_MS bounds the wait, and the error says it was the budget', async (t) => {
  const h = harness({ queueTimeoutMs: 60_000 })
  const budgeted = call(task('echo'), { budgetMs: 20 })
  const error = await rejection(h.admission.admit(budgeted))
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.equal(budgeted.limit, 'client_budget_queued', 'ended by its client\'s budget (pyfleet_calls_limited_total)')
  t.match(error.message, /20 ms \(the x-request-timeout-ms budget\)/)
  t.same(h.counted, ['echo:queue_timeout'])
})

// The timeouts of these two only guard against the wait the change removed (50 and 60 s, not 20 ms).
t.test('the time a large body waited for the offload thread counts against the budget', { timeout: 10_000 }, async (t) => {
  // All but 20 ms of a 50 s budget spent before the call reached the pool: it waits 20 ms, not 50 s.
  const h = harness({ queueTimeoutMs: 60_000 })
  const error = await rejection(h.admission.admit(call(task('echo'), { budgetMs: 50_000, waitedMs: 49_980 })))
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.match(error.message, /50000 ms \(the x-request-timeout-ms budget\)/, 'the message names the client\'s budget')
  t.same(h.counted, ['echo:queue_timeout'])
})

t.test('and against QUEUE_TIMEOUT_MS, which bounds the wait for the thread and for a worker together', { timeout: 10_000 }, async (t) => {
  const h = harness({ queueTimeoutMs: 60_000 })
  const error = await rejection(h.admission.admit(call(task('echo'), { waitedMs: 59_980 })))
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.match(error.message, /within 60000 ms; retry later$/)
  t.same(h.counted, ['echo:queue_timeout'])
})

t.test('a client that goes away while queued is settled as cancelled and leaves the queue', async (t) => {
  const h = harness()
  let goAway: (() => void) | undefined
  let unsubscribed = 0
  const onClientGone = (cancel: () => void): () => void => { goAway = cancel; return () => { unsubscribed++ } }
  const result = h.admission.admit(call(task('echo'), { onClientGone }))
  t.equal(h.admission.waiting, 1)
  goAway?.()
  const error = await rejection(result)
  t.equal(error.code, 'WORKERS_UNAVAILABLE')
  t.match(error.message, /client went away/)
  t.same(h.counted, ['echo:cancelled'])
  t.equal(h.admission.waiting, 0)
  t.equal(unsubscribed, 1, 'stops listening once it has left')
  goAway?.()
  t.same(h.counted, ['echo:cancelled'], 'a second notice is ignored: settled once')
})

t.test('a queued call that starts stops listening for its client and for its timeout', async (t) => {
  const h = harness({ queueTimeoutMs: 20 })
  let unsubscribed = 0
  const result = h.admission.admit(call(task('echo'), { onClientGone: () => () => { unsubscribed++ } }))
  h.free.workers = 1
  h.admission.dispatch()
  t.equal(h.started.length, 1)
  t.equal(unsubscribed, 1)
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.same(h.counted, [], 'its queue timer did not fire while it ran')
  complete(h, h.started[0])
  t.equal(await result, 'done')
  t.same(h.counted, ['echo:ok'])
})

t.test('a started call whose worker turned out dead goes back to the front of the queue', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const echo = task('echo')
  const first = h.admission.admit(call(echo, { input: 'first' }))
  const second = h.admission.admit(call(echo, { input: 'second' }))
  // The pool found its worker dead: the worker is destroyed (not freed) and the call requeued.
  h.admission.requeue(h.started[0])
  t.equal(h.admission.waiting, 2)
  h.free.workers = 1 // the replacement is ready
  h.admission.dispatch()
  t.same(h.started.map((w) => w.call.input), ['first', 'first'], 'it runs before the call that came after it')
  complete(h, h.started[1], 'a')
  complete(h, h.started[2], 'b')
  t.same(await Promise.all([first, second]), ['a', 'b'])
  t.same(h.counted, ['echo:ok', 'echo:ok'], 'the failed start is not a call of its own')
})

t.test('Retry-After of a full queue and of a queue timeout follows how long calls held their worker; calls that never reached one do not count', { timeout: 20_000 }, async (t) => {
  const h = harness({ queueLimit: 2, freeWorkers: 1, poolSize: 1 })
  const echo = task('echo')
  // A call that never reached its worker (its input could not be sent: runMs stays 0) held
  // it for a while, and is not counted: nothing is known of the pace yet.
  const unsent = h.admission.admit(call(echo))
  await new Promise((resolve) => setTimeout(resolve, 1100))
  complete(h, h.started[0])
  await unsent
  h.free.workers = 0
  const queued = [h.admission.admit(call(echo)), h.admission.admit(call(echo))]
  t.equal((await rejection(h.admission.admit(call(echo)))).retryAfterSeconds, 1, 'no call has run yet: 1 s')
  h.admission.failQueued(() => new Error('not these'), 'cancelled')
  await Promise.allSettled(queued)
  // The next call runs, holds its worker at least 1.1 s, and reports a run time.
  h.free.workers = 1
  const ran = h.admission.admit(call(echo))
  await new Promise((resolve) => setTimeout(resolve, 1100))
  h.started[1].call.runMs = 1100
  complete(h, h.started[1])
  await ran
  // Then, with two callers waiting on the one worker: (2 + 1) × at least 1.1 s, rounded up.
  h.free.workers = 0
  const behind = h.admission.admit(call(echo))
  const lateCall = h.admission.admit(call(echo, { budgetMs: 20 }))
  const full = await rejection(h.admission.admit(call(echo)))
  t.equal(full.code, 'QUEUE_FULL')
  t.ok(full.retryAfterSeconds !== undefined && full.retryAfterSeconds >= 4 && full.retryAfterSeconds <= 60, `QUEUE_FULL's Retry-After ${String(full.retryAfterSeconds)} s, for three calls of at least 1.1 s`)
  // One left waiting when the budget of the other runs out: (1 + 1) × at least 1.1 s.
  const late = await rejection(lateCall)
  t.equal(late.code, 'QUEUE_TIMEOUT')
  t.ok(late.retryAfterSeconds !== undefined && late.retryAfterSeconds >= 3, `QUEUE_TIMEOUT's too: ${String(late.retryAfterSeconds)} s`)
  h.admission.failQueued(() => new Error('end of test'), 'cancelled')
  await behind.catch(() => {})
})

t.test('callsOf and tasksWithCalls: each task\'s calls waiting and running, for the per-task gauges', async (t) => {
  const h = harness({ freeWorkers: 1, poolSize: 2 })
  const slow = task('slow', 1)
  const running = h.admission.admit(call(slow))
  const waiting = [h.admission.admit(call(slow)), h.admission.admit(call(task('other')))]
  t.same(h.admission.callsOf('slow'), { waiting: 1, running: 1 })
  t.same(h.admission.callsOf('other'), { waiting: 1, running: 0 })
  t.same(h.admission.tasksWithCalls().sort(), ['other', 'slow'])
  h.admission.failQueued(() => new Error('end of test'), 'cancelled')
  complete(h, h.started[0])
  await Promise.allSettled([running, ...waiting])
  t.same(h.admission.tasksWithCalls(), [], 'none once every call has ended')
  t.same(h.admission.callsOf('slow'), { waiting: 0, running: 0 })
})

t.test('Retry-After before any call has finished: the running calls\' time on their worker so far', async (t) => {
  const h = harness({ queueLimit: 1, freeWorkers: 1, poolSize: 1 })
  const echo = task('echo')
  const running = h.admission.admit(call(echo))
  const queued = h.admission.admit(call(echo))
  await new Promise((resolve) => setTimeout(resolve, 1100))
  const full = await rejection(h.admission.admit(call(echo)))
  // (1 waiting + 1) × at least 1.1 s so far over 1 worker: at least 3 s.
  t.ok(full.retryAfterSeconds !== undefined && full.retryAfterSeconds >= 3, `Retry-After ${String(full.retryAfterSeconds)} s`)
  h.admission.failQueued(() => new Error('end of test'), 'cancelled')
  complete(h, h.started[0])
  await Promise.allSettled([running, queued])
})

t.test('Retry-After for a task limited to one call at a time: its own queue over its one lane, not over POOL_SIZE', async (t) => {
  const h = harness({ queueLimit: 3, freeWorkers: 4, poolSize: 4 })
  const report = task('report', 1)
  const ran = h.admission.admit(call(report))
  await new Promise((resolve) => setTimeout(resolve, 1100))
  h.started[0].call.runMs = 1100
  complete(h, h.started[0])
  await ran
  // One runs, three wait on the task's limit with three workers free, the queue is full.
  const running = h.admission.admit(call(report))
  const queued = [h.admission.admit(call(report)), h.admission.admit(call(report)), h.admission.admit(call(report))]
  t.equal(h.admission.waiting, 3)
  const full = await rejection(h.admission.admit(call(report)))
  t.equal(full.code, 'QUEUE_FULL')
  // (3 + 1) × at least 1.1 s over 1 lane: at least 5 s (over the pool's 4 workers it would say 2).
  t.ok(full.retryAfterSeconds !== undefined && full.retryAfterSeconds >= 5, `Retry-After ${String(full.retryAfterSeconds)} s`)
  h.admission.failQueued(() => new Error('end of test'), 'cancelled')
  complete(h, h.started[1])
  await Promise.allSettled([...queued, running])
})

/** A call of `slow` that ran `runMs` and ended `outcome`, on a harness with one free worker. */
async function ranOnce (h: Harness, slow: PoolTask, runMs: number, outcome: CallOutcome = 'ok'): Promise<void> {
  const result = h.admission.admit(call(slow))
  const waiter = h.started[h.started.length - 1]
  waiter.call.runMs = runMs
  h.admission.finished(waiter)
  h.free.workers++
  h.admission.settle(waiter, outcome, outcome === 'ok' ? undefined : new Error(outcome))
  await result.catch(() => {})
}

t.test('SHED_LATE_CALLS: a queued call whose budget has less left than its task\'s fastest recent calls took is not started: QUEUE_TIMEOUT', async (t) => {
  const h = harness({ freeWorkers: 1, poolSize: 1, shedLateCalls: true })
  const slow = task('slow')
  // The task's calls ran 300 ms; one killed at its timeout (30 s) says nothing of its pace.
  await ranOnce(h, slow, 300)
  await ranOnce(h, slow, 30_000, 'timeout')
  h.free.workers = 0
  const hopelessCall = call(slow, { budgetMs: 250 })
  const hopeless = h.admission.admit(hopelessCall)
  const unbounded = h.admission.admit(call(slow))
  const ample = h.admission.admit(call(slow, { budgetMs: 60_000 }))
  const other = h.admission.admit(call(task('fast'), { budgetMs: 250 }))
  h.free.workers = 3
  h.admission.dispatch()
  const error = await rejection(hopeless)
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.match(error.message, /^the x-request-timeout-ms budget of 250 ms had \d+ ms left when a worker became free, less than slow's recent calls took \(\d+ ms at the fastest\): not started; retry later$/)
  t.ok(error.retryAfterSeconds !== undefined && error.retryAfterSeconds >= 1)
  t.match(error.message, /\(300 ms at the fastest\)/, 'the call killed at its timeout did not lift the pace')
  t.equal(hopelessCall.limit, 'shed_late_calls', 'ended by SHED_LATE_CALLS (pyfleet_calls_limited_total)')
  t.same(h.started.slice(2).map((w) => [w.call.task.name, w.call.budgetMs]), [['slow', undefined], ['slow', 60_000], ['fast', 250]], 'the others started: no budget, budget enough, a task with no pace known yet')
  t.same(h.counted.slice(2), ['slow:queue_timeout'])
  for (const waiter of h.started.slice(2)) complete(h, waiter)
  await Promise.all([unbounded, ample, other])
})

t.test('without SHED_LATE_CALLS (the default) such a call is started: its task may have fast calls too', async (t) => {
  const h = harness({ freeWorkers: 1, poolSize: 1 })
  const slow = task('slow')
  await ranOnce(h, slow, 300)
  h.free.workers = 0
  const late = h.admission.admit(call(slow, { budgetMs: 250 }))
  h.free.workers = 1
  h.admission.dispatch()
  t.equal(h.started.length, 2, 'started')
  complete(h, h.started[1])
  t.equal(await late, 'done')
})

t.test('a call requeued at the front, whose follower then times out, still starts: the queue stays linked', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const echo = task('echo')
  const first = h.admission.admit(call(echo, { input: 'first' }))
  const second = h.admission.admit(call(echo, { input: 'second', budgetMs: 20 }))
  h.admission.requeue(h.started[0])
  t.equal((await rejection(second)).code, 'QUEUE_TIMEOUT', 'the one behind it leaves the queue')
  t.equal(h.admission.waiting, 1)
  h.free.workers = 1
  h.admission.dispatch()
  t.same(h.started.map((w) => w.call.input), ['first', 'first'], 'the requeued call is still found')
  t.equal(h.admission.waiting, 0)
  complete(h, h.started[1])
  t.equal(await first, 'done')
})

t.test('a drain waiting for the last queued call resolves when that call leaves the queue, not at its grace', async (t) => {
  for (const how of ['queue timeout', 'client gone'] as const) {
    const h = harness({ queueTimeoutMs: how === 'queue timeout' ? 20 : 60_000 })
    let goAway: (() => void) | undefined
    const result = h.admission.admit(call(task('echo'), { onClientGone: (listener: () => void) => { goAway = listener; return () => {} } }))
    let idle = false
    const drained = h.admission.idle(60_000).then(() => { idle = true })
    if (how === 'client gone') goAway?.()
    await rejection(result)
    await new Promise((resolve) => setImmediate(resolve))
    t.ok(idle, `${how}: the drain is over, with nothing left to wait for`)
    await drained
  }
})

t.test('a call whose budget ran out on its way to the worker is a queue timeout (SPEC §1)', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const result = h.admission.admit(call(task('echo'), { budgetMs: 5 }))
  h.admission.expired(h.started[0])
  const error = await rejection(result)
  t.equal(error.code, 'QUEUE_TIMEOUT')
  t.match(error.message, /5 ms \(the x-request-timeout-ms budget\)/)
  t.same(h.counted, ['echo:queue_timeout'])
})

t.test('idle() waits for queued and running calls, up to its grace', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const echo = task('echo')
  await h.admission.idle(60_000) // nothing to wait for: resolves at once
  const results = [h.admission.admit(call(echo)), h.admission.admit(call(echo))]
  let idle = false
  const drained = h.admission.idle(60_000).then(() => { idle = true })
  complete(h, h.started[0])
  // A turn of the event loop, not one microtask: idle() resolves through a few.
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(idle, 'one call still runs')
  complete(h, h.started[1])
  await drained
  t.ok(idle, 'resolved once the last call ended')
  await Promise.all(results)

  const stuck = harness({ freeWorkers: 1 })
  const never = stuck.admission.admit(call(echo))
  await stuck.admission.idle(20) // the grace ends the wait for a call that never ends
  t.equal(stuck.started.length, 1)
  complete(stuck, stuck.started[0])
  await never
})

t.test('a call answered early (its client\'s budget ran out) holds its worker, but a drain does not wait for it', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const slow = task('slow', 1)
  const result = h.admission.admit(call(slow))
  const waiter = h.started[0]
  const timeout = Object.assign(new Error('budget spent'), { code: 'TASK_TIMEOUT' })
  h.admission.answerEarly(waiter, 'timeout', timeout)
  t.equal(await rejection(result), timeout, 'the client has its answer now')
  const drain = await Promise.race([
    h.admission.idle(60_000).then(() => 'idle'),
    new Promise((resolve) => { setImmediate(() => { resolve('still waiting') }) })
  ])
  t.equal(drain, 'idle', 'a drain has nothing to wait for')
  const next = h.admission.admit(call(slow))
  t.equal(h.started.length, 1, 'it still counts against its task\'s limit while it runs')
  h.admission.finished(waiter) // its worker finally replies; the result is dropped
  h.free.workers++
  h.admission.dispatch()
  t.equal(h.started.length, 2, 'the next call of the task starts once it has finished')
  complete(h, h.started[1])
  await next
  t.same(h.counted, ['slow:timeout', 'slow:ok'], 'counted once, when it was answered')
})

t.test('failQueued settles every queued call with the outcome given, and running ones are left alone', async (t) => {
  const h = harness({ freeWorkers: 1 })
  const echo = task('echo')
  const running = h.admission.admit(call(echo))
  const queued = [h.admission.admit(call(echo)), h.admission.admit(call(echo))]
  h.admission.failQueued(() => new Error('shutting down'), 'cancelled')
  for (const promise of queued) t.match(await rejection(promise), { message: 'shutting down' })
  t.equal(h.admission.waiting, 0)
  t.same(h.counted, ['echo:cancelled', 'echo:cancelled'])
  complete(h, h.started[0])
  t.equal(await running, 'done')
})

t.test('a refused call is counted as refused, with its outcome, and never waits', async (t) => {
  const h = harness()
  const refusal = new Error('the server is shutting down')
  const c = call(task('echo'))
  t.equal(await rejection(h.admission.refuse(c, 'cancelled' satisfies CallOutcome, refusal)), refusal)
  t.equal(c.outcome, 'cancelled', 'the call records how it ended, for the request log')
  t.same(h.counted, ['refused:echo:cancelled'])
  t.equal(h.admission.waiting, 0)
})

t.test('a full queue of callers waiting on their task\'s own limit does not turn away a call another task could start at once', async (t) => {
  const h = harness({ freeWorkers: 4, queueLimit: 2, queueLimitBytes: 12 })
  const slow = task('slow', 1)
  const echo = task('echo')
  const slowCalls = [1, 2, 3].map((n) => h.admission.admit(call(slow, { input: n, inputBytes: 6 })))
  t.equal(h.started.length, 1, 'one slow call runs, at its limit')
  t.equal(h.admission.waiting, 2, 'two wait for it: the queue is full')
  const fast = h.admission.admit(call(echo, { inputBytes: 6 }))
  t.equal(h.started.length, 2, 'echo starts on a free worker, past the full queue and its bytes')
  t.equal(h.started[1].call.task.name, 'echo')
  complete(h, h.started[1], 'echoed')
  t.equal(await fast, 'echoed')
  // Once no worker is free, the queue's limit holds for everyone.
  h.free.workers = 0
  const refused = await rejection(h.admission.admit(call(echo)))
  t.equal(refused.code, 'QUEUE_FULL')
  h.free.workers = 3
  for (let i = 0; i < 3; i++) complete(h, h.started.filter((w) => w.call.task.name === 'slow')[i], `slow ${i}`)
  t.same(await Promise.all(slowCalls), ['slow 0', 'slow 1', 'slow 2'], 'the slow calls still run, in their order')
})
