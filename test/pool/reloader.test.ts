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

t.test('with start failures and nothing starting (backing off), it fails at once, naming them', async (t) => {
  const supervisor = { ...crashLooping(3), isStarting: false } as unknown as Supervisor
  const error = await reloader(supervisor, 60_000).reload().catch((e: unknown) => e)
  t.match(error, { message: /every slot is restarting after failed starts/ })
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
