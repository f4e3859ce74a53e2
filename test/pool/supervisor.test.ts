// The supervisor's backoff bookkeeping, with starts that fail (no process is needed
// for a start that fails: the e2e backoff tests do it with real workers).

import t from 'tap'
import pino from 'pino'
import { Supervisor } from '../../src/pool/supervisor.js'
import { waitFor } from '../helpers/server.js'

t.test('nextRetryInMs is the wait of the slot due first, not of the last one to fail', async (t) => {
  const reported: number[] = []
  const supervisor = new Supervisor({
    spawn: async (id) => { throw new Error(`slot ${id} cannot start`) },
    stopGraceMs: 100,
    log: pino({ level: 'silent' }),
    onReady: () => t.fail('no worker can start'),
    onStartFailed: (retryInMs) => { reported.push(retryInMs) },
    onGone: () => {}
  })
  t.equal(supervisor.nextRetryInMs, 0, 'nothing backs off yet')
  // Two slots, as generic-pool asks for them: the second failure doubles the backoff.
  const creates = [supervisor.create(), supervisor.create()].map(async (p) => await p.catch((error: Error) => error.message))
  await waitFor(() => reported.length >= 2, 5000, 'both slots to fail once')
  t.same(reported.slice(0, 2), [100, 200], 'consecutive failures back off exponentially')
  // Slot 1 retries in 100 ms, slot 2 in 200 ms: a client told to come back should be
  // told the earlier. (If slot 1 has retried since, failing again, slot 2 is due first,
  // and sooner still: the bound holds either way.)
  const next = supervisor.nextRetryInMs
  t.ok(next >= 0 && next <= 100, `next attempt in ${next.toFixed(1)} ms: slot 1's wait, not slot 2's 200 ms`)
  t.equal(supervisor.startFailures >= 2, true)
  await supervisor.close()
  t.same(await Promise.all(creates), ['the pool is closed', 'the pool is closed'], 'close ends the backoff waits at once')
  t.equal(supervisor.nextRetryInMs, 0, 'nothing backs off after close')
})
