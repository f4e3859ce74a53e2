// The queue's Retry-After estimate on its own: fed how long calls held their worker, it
// says how many seconds the callers already waiting need the pool for.

import t from 'tap'
import { MAX_RETRY_AFTER_SECONDS, RetryAfter } from '../../src/pool/retry-after.js'

t.test('1 s until a call has run: nothing is known of the pace yet', async (t) => {
  const estimate = new RetryAfter(4)
  t.equal(estimate.seconds(0), 1)
  t.equal(estimate.seconds(1000), 1)
})

t.test('the callers waiting and one more, spread over the workers, at the recent pace', async (t) => {
  const estimate = new RetryAfter(4)
  estimate.callHeldWorker(2000)
  // (7 waiting + 1) × 2 s / 4 workers = 4 s.
  t.equal(estimate.seconds(7), 4)
  // 0.5 s is rounded up: a client told 0 would come back at once.
  t.equal(estimate.seconds(0), 1)
  t.equal(estimate.seconds(8), 5, '4.5 s rounds up')
})

t.test('fast calls keep it at 1 s however many wait', async (t) => {
  const estimate = new RetryAfter(4)
  for (let i = 0; i < 100; i++) estimate.callHeldWorker(0.2)
  t.equal(estimate.seconds(1000), 1)
})

t.test('a running mean: the recent calls count most, one outlier does not swing it', async (t) => {
  const estimate = new RetryAfter(1)
  for (let i = 0; i < 200; i++) estimate.callHeldWorker(100)
  estimate.callHeldWorker(60_000)
  // 100 + (60,000 − 100) × 0.05 ≈ 3.1 s per call, not 60 s.
  t.equal(estimate.seconds(0), 4)
  for (let i = 0; i < 200; i++) estimate.callHeldWorker(2500)
  t.equal(estimate.seconds(0), 3, 'and it follows a pace that has changed')
})

t.test('at most a minute, and a pool size of 0 is taken as 1', async (t) => {
  const estimate = new RetryAfter(0)
  estimate.callHeldWorker(30_000)
  t.equal(estimate.seconds(1000), MAX_RETRY_AFTER_SECONDS)
  t.equal(MAX_RETRY_AFTER_SECONDS, 60)
  t.equal(estimate.seconds(0), 30)
})
