// StartWait and CallDeadline: the two timers of a worker's life, without a process.

import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { StartWait } from '../../src/pool/start-wait.js'
import { CallDeadline } from '../../src/pool/call-deadline.js'
import { WorkerStartError } from '../../src/pool/worker-failures.js'
import { waitFor } from '../helpers/server.js'

const holdEventLoop = (ms: number): void => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms) }

t.test('a start that fails rejects once, with the interpreter named, and kills once', async (t) => {
  let kills = 0
  const wait = new StartWait('/opt/py', 60_000, undefined, () => { kills++ })
  wait.fail('could not be started: ENOENT')
  wait.fail('exited with code 1 before it was ready')
  wait.ready()
  await t.rejects(wait.done, new WorkerStartError('Python worker /opt/py could not be started: ENOENT'))
  t.equal(kills, 1)
})

t.test('a ready worker is not failed later, by its timer, its abort or a late error', async (t) => {
  let kills = 0
  const shutdown = new AbortController()
  const wait = new StartWait('py', 20, shutdown.signal, () => { kills++ })
  wait.ready()
  await wait.done
  shutdown.abort()
  wait.fail('broke the protocol during start-up: x')
  await sleep(60)
  t.equal(kills, 0)
})

t.test('the start timeout says what to change', async (t) => {
  let kills = 0
  const wait = new StartWait('py', 10, undefined, () => { kills++ })
  await t.rejects(wait.done, { message: 'Python worker py did not say ready within 10 ms (slow imports in a task module? WORKER_START_TIMEOUT_MS sets the limit)' })
  t.equal(kills, 1)
})

t.test('a start past its timeout says where it was stuck when asked can tell, and fails with that, not with the exit the asking caused', async (t) => {
  let kills = 0
  let release: (where: string) => void = () => {}
  const wait = new StartWait('py', 10, undefined, () => { kills++ }, async () => await new Promise((resolve) => { release = resolve }))
  await waitFor(() => release.length === 1, 5000, 'the timeout to ask where the start is stuck')
  // Meanwhile the process ends (the stack dump's signal may end it): not the start's failure.
  wait.fail('was killed by SIGUSR1 before it was ready')
  release('still importing /srv/tasks/model.py, line 3')
  await t.rejects(wait.done, { message: 'Python worker py did not say ready within 10 ms: it was still importing /srv/tasks/model.py, line 3 (slow imports in a task module? WORKER_START_TIMEOUT_MS sets the limit; every thread\'s stack is in the log)' })
  t.equal(kills, 1)
  const unknown = new StartWait('py', 10, undefined, () => {}, async () => undefined)
  await t.rejects(unknown.done, { message: 'Python worker py did not say ready within 10 ms (slow imports in a task module? WORKER_START_TIMEOUT_MS sets the limit)' }, 'nothing said: the message of old')
})

t.test('a shutdown stops a start under way', async (t) => {
  const shutdown = new AbortController()
  let kills = 0
  const wait = new StartWait('py', 60_000, shutdown.signal, () => { kills++ })
  shutdown.abort()
  await t.rejects(wait.done, { message: 'Python worker py was stopped while starting: the server is shutting down' })
  t.equal(kills, 1)
})

t.test('an abort whose reason is a string fails the start with it (a sibling\'s failed start), through AbortSignal.any too', async (t) => {
  const siblings = new AbortController()
  const shutdown = new AbortController()
  let kills = 0
  const wait = new StartWait('py', 60_000, AbortSignal.any([siblings.signal, shutdown.signal]), () => { kills++ })
  siblings.abort('was stopped while starting: worker 3\'s start failed')
  await t.rejects(wait.done, { message: 'Python worker py was stopped while starting: worker 3\'s start failed' })
  t.equal(kills, 1)
})

t.test('a call deadline expires once, and not at all once cleared', async (t) => {
  let expired = 0
  const deadline = new CallDeadline(() => false, () => { expired++ })
  deadline.start(5)
  await waitFor(() => expired === 1, 5000, 'the deadline to expire')
  deadline.start(20)
  deadline.clear()
  await sleep(60)
  t.equal(expired, 1, 'a cleared deadline does not fire')
})

t.test('a deadline that fires late waits while a reply is arriving, but not past how late it was', async (t) => {
  let arriving = true
  let expired = 0
  const deadline = new CallDeadline(() => arriving, () => { expired++ })
  deadline.start(5)
  holdEventLoop(150)
  await sleep(40)
  t.equal(expired, 0, 'a reply still arriving is waited for')
  arriving = false
  await sleep(40)
  t.equal(expired, 1, 'and once none is, the call times out')

  const endless = new CallDeadline(() => true, () => { expired++ })
  endless.start(5)
  holdEventLoop(120)
  await sleep(400)
  t.equal(expired, 2, 'a reply that never completes does not hold the deadline past the grace')
})
