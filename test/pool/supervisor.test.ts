// The supervisor's backoff bookkeeping, with starts that fail (no process is needed
// for a start that fails: the e2e backoff tests do it with real workers).

import t from 'tap'
import pino from 'pino'
import { Supervisor } from '../../src/pool/supervisor.js'
import type { PythonWorker } from '../../src/pool/python-worker.js'
import { waitFor } from '../helpers/server.js'

t.test('nextRetryInMs is the wait of the slot due first, not of the last one to fail', async (t) => {
  const dueAt = new Map<number, number>() // slot -> when its next attempt is due, as reported
  const reported: number[] = []
  const supervisor = new Supervisor({
    spawn: async (id) => { throw new Error(`slot ${id} cannot start`) },
    stopGraceMs: 100,
    log: pino({ level: 'silent' }),
    onReady: () => t.fail('no worker can start'),
    onStartFailed: (retryInMs, id) => { reported.push(retryInMs); dueAt.set(id, performance.now() + retryInMs) },
    onGone: () => {}
  })
  t.equal(supervisor.nextRetryInMs, 0, 'nothing backs off yet')
  // Four slots, as generic-pool asks for them: each failure doubles the backoff, so
  // their waits are 100, 200, 400 and 800 ms, and stay far apart as they retry.
  const creates = Array.from({ length: 4 }, async () => await supervisor.create().catch((error: Error) => error.message))
  await waitFor(() => dueAt.size === 4, 5000, 'all four slots to fail once')
  t.same(reported.slice(0, 4), [100, 200, 400, 800], 'consecutive failures back off exponentially')
  const now = performance.now()
  const next = supervisor.nextRetryInMs
  const expected = Math.max(0, Math.min(...dueAt.values()) - now)
  t.ok(Math.abs(next - expected) < 5, `next attempt in ${next.toFixed(1)} ms: the earliest slot's (${expected.toFixed(1)} ms), not the latest's`)
  await supervisor.close()
  t.same(await Promise.all(creates), Array(4).fill('the pool is closed'), 'close ends the backoff waits at once')
  t.equal(supervisor.nextRetryInMs, 0, 'nothing backs off after close')
})

t.test('the backoff stops growing at 5 s, and starts again from 100 ms once a worker has started', async (t) => {
  const reported: number[] = []
  let failing = true
  const started: PythonWorker[] = []
  const supervisor = new Supervisor({
    spawn: async (id) => {
      if (failing) throw new Error(`slot ${id} cannot start`)
      // Only what a slot and close() use of a worker.
      const worker = { id, sequence: id, isAlive: true, stop: async () => {} } as unknown as PythonWorker
      started.push(worker)
      return worker
    },
    stopGraceMs: 100,
    log: pino({ level: 'silent' }),
    onReady: () => {},
    onStartFailed: (retryInMs) => { reported.push(retryInMs) },
    onGone: () => {}
  })
  t.teardown(async () => { await supervisor.close() })
  // Eight slots failing one after another: 100 ms doubled each time, up to the 5 s cap.
  const creates = Array.from({ length: 8 }, async () => await supervisor.create())
  await waitFor(() => reported.length === 8, 5000, 'all eight slots to fail once')
  t.same(reported, [100, 200, 400, 800, 1600, 3200, 5000, 5000])
  // The first slot retries after its 100 ms and starts; the failures are forgotten.
  failing = false
  await creates[0]
  t.equal(supervisor.startFailures, 0, 'a start clears the count of failures')
  failing = true
  const another = supervisor.create().catch(() => {})
  await waitFor(() => reported.length === 9, 5000, 'the next failure')
  t.equal(reported[8], 100, 'a new run of failures backs off from 100 ms again')
  await supervisor.close()
  await Promise.all([...creates.slice(1).map(async (create) => await create.catch(() => {})), another])
})
