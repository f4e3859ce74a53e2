// The supervisor's backoff bookkeeping, with starts that fail (no process is needed
// for a start that fails: the e2e backoff tests do it with real workers).

import t from 'tap'
import pino from 'pino'
import { Supervisor } from '../../src/pool/supervisor.js'
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
