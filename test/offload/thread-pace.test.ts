// The offload thread's pace, for the Retry-After of a body whose wait ran out.

import t from 'tap'
import { ThreadPace } from '../../src/offload/thread-pace.js'

t.test('before any job has run, 1 s, as before', async (t) => {
  t.equal(new ThreadPace().retryAfterSeconds(64 * 2 ** 20), 1)
})

t.test('the bytes ahead at the recent pace, rounded up, at least 1 s and at most 60 s', async (t) => {
  const pace = new ThreadPace()
  pace.jobRan(2 ** 20, 500) // 0.5 s per MiB
  t.equal(pace.retryAfterSeconds(0), 1, 'nothing ahead: 1, never 0')
  t.equal(pace.retryAfterSeconds(2 ** 20), 1)
  t.equal(pace.retryAfterSeconds(5 * 2 ** 20), 3, '2.5 s rounded up')
  t.equal(pace.retryAfterSeconds(16 * 2 ** 20), 8)
  t.equal(pace.retryAfterSeconds(1024 * 2 ** 20), 60, 'a backlog past a minute is a matter for the operator')
})

t.test('the pace follows recent jobs: one fast job does not undo a slow history at once', async (t) => {
  const pace = new ThreadPace()
  pace.jobRan(2 ** 20, 1000)
  pace.jobRan(2 ** 20, 0)
  t.equal(pace.retryAfterSeconds(16 * 2 ** 20), 16, '0.95 s per MiB: 15.2 s rounded up, not the fast job\'s 0')
  for (let i = 0; i < 200; i++) pace.jobRan(2 ** 20, 100)
  t.equal(pace.retryAfterSeconds(16 * 2 ** 20), 2, 'and settles on the new pace: 1.6 s rounded up')
  pace.jobRan(0, 5) // an empty job counts as one byte, not a division by zero
  t.ok(Number.isFinite(pace.retryAfterSeconds(1)))
})
