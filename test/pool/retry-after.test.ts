// The queue's Retry-After estimate on its own: fed how long calls held their worker, it
// says how many seconds the callers already waiting need the pool for, and a task with a
// concurrency of its own the workers it may use.

import t from 'tap'
import { MAX_RETRY_AFTER_SECONDS, RetryAfter } from '../../src/pool/retry-after.js'

t.test('1 s until a call has run, with none running: nothing is known of the pace yet', async (t) => {
  const estimate = new RetryAfter(4)
  t.equal(estimate.seconds(0), 1)
  t.equal(estimate.seconds(1000), 1)
})

t.test('the time the running calls have held their workers so far is a floor of the pace, before any call has finished and after', async (t) => {
  const estimate = new RetryAfter(4)
  // (7 + 1) × 2 s so far / 4 workers: 4 s, where it said 1 s.
  t.equal(estimate.seconds(7, undefined, 2000), 4)
  estimate.callHeldWorker('t', 100)
  t.equal(estimate.seconds(7, undefined, 2000), 4, 'nor after fast calls have finished: slow ones still hold the workers')
  t.equal(estimate.seconds(7, undefined, 50), 1, 'running calls younger than the recent pace: the recent pace')
})

t.test('the callers waiting and one more, spread over the workers, at the recent pace', async (t) => {
  const estimate = new RetryAfter(4)
  estimate.callHeldWorker('t', 2000)
  // (7 waiting + 1) × 2 s / 4 workers = 4 s.
  t.equal(estimate.seconds(7), 4)
  // 0.5 s is rounded up: a client told 0 would come back at once.
  t.equal(estimate.seconds(0), 1)
  t.equal(estimate.seconds(8), 5, '4.5 s rounds up')
})

t.test('fast calls keep it at 1 s however many wait', async (t) => {
  const estimate = new RetryAfter(4)
  for (let i = 0; i < 100; i++) estimate.callHeldWorker('t', 0.2)
  t.equal(estimate.seconds(1000), 1)
})

t.test('a running mean: the recent calls count most, one outlier does not swing it', async (t) => {
  const estimate = new RetryAfter(1)
  for (let i = 0; i < 200; i++) estimate.callHeldWorker('t', 100)
  estimate.callHeldWorker('t', 60_000)
  // 100 + (60,000 − 100) × 0.05 ≈ 3.1 s per call, not 60 s.
  t.equal(estimate.seconds(0), 4)
  for (let i = 0; i < 200; i++) estimate.callHeldWorker('t', 2500)
  t.equal(estimate.seconds(0), 3, 'and it follows a pace that has changed')
})

t.test('at most a minute, and a pool size of 0 is taken as 1', async (t) => {
  const estimate = new RetryAfter(0)
  estimate.callHeldWorker('t', 30_000)
  t.equal(estimate.seconds(1000), MAX_RETRY_AFTER_SECONDS)
  t.equal(MAX_RETRY_AFTER_SECONDS, 60)
  t.equal(estimate.seconds(0), 30)
})

t.test("a task limited to fewer workers than the pool: its own callers over its own lanes, at its own pace", async (t) => {
  const estimate = new RetryAfter(4)
  for (let i = 0; i < 50; i++) estimate.callHeldWorker('echo', 1)
  for (let i = 0; i < 50; i++) estimate.callHeldWorker('report', 4000)
  const report = { name: 'report', waiting: 3, concurrency: 1 }
  // Pool: (3 + 1) waiting × a mean between 1 ms and 4 s / 4 workers is about 4 s at most;
  // the task: (3 + 1) × 4 s / 1 lane = 16 s, and that is how long its queue needs.
  t.equal(estimate.seconds(3, report), 16)
  t.equal(estimate.seconds(3, { ...report, concurrency: 2 }), 8, 'two lanes: half that')
})

t.test('a task\'s concurrency above POOL_SIZE counts as POOL_SIZE: no more lanes than workers', async (t) => {
  const estimate = new RetryAfter(4)
  for (let i = 0; i < 50; i++) estimate.callHeldWorker('report', 4000)
  // The pool's recent pace is fast again (~0.3 s), so the task's own estimate decides.
  for (let i = 0; i < 50; i++) estimate.callHeldWorker('echo', 1)
  // (11 + 1) × 4 s / 4 workers = 12 s; over 99 lanes it would be under the pool's 1 s.
  t.equal(estimate.seconds(11, { name: 'report', waiting: 11, concurrency: 99 }), 12)
})

t.test('the pool estimate still wins when the whole queue is longer than the task\'s own', async (t) => {
  const estimate = new RetryAfter(2)
  for (let i = 0; i < 50; i++) estimate.callHeldWorker('slow', 2000)
  estimate.callHeldWorker('fast', 10)
  // A fast call behind 9 slow ones waits for them: (9 + 1) × ~2 s / 2 = ~10 s, not its own 1 s.
  t.equal(estimate.seconds(9, { name: 'fast', waiting: 0, concurrency: 2 }), 10)
})

t.test('a task with no finished call yet: the pool estimate alone', async (t) => {
  const estimate = new RetryAfter(4)
  estimate.callHeldWorker('other', 2000)
  t.equal(estimate.seconds(7, { name: 'new', waiting: 7, concurrency: 1 }), 4)
})
