import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { OomLedger, oomKillReadings, readOomKillCount } from '../../src/pool/oom-kills.js'

t.test('readOomKillCount reads oom_kill out of a vmstat file, and gives undefined where there is none', async (t) => {
  // Not t.testdir(): tap removes that directory first, and names it after what it takes for
  // the main script; a temporary directory cannot be anything else.
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-vmstat-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const vmstat = join(dir, 'vmstat')
  await writeFile(vmstat, 'nr_free_pages 123\noom_kill_other 9\noom_kill 42\nnr_unstable 0\n')
  t.equal(await readOomKillCount(vmstat), 42)
  await writeFile(vmstat, 'nr_free_pages 123\n') // a kernel before 4.13
  t.equal(await readOomKillCount(vmstat), undefined)
  t.equal(await readOomKillCount(join(dir, 'missing')), undefined)
})

t.test('oomKillReadings: both counts when they come; none when the reading at start never ends (a worker\'s exit is not held)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-vmstat-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const vmstat = join(dir, 'vmstat')
  await writeFile(vmstat, 'oom_kill 7\n')
  t.same(await oomKillReadings(Promise.resolve(5), vmstat), [5, 7])
  t.same(await oomKillReadings(Promise.resolve(undefined), vmstat), [undefined, 7])
  t.same(await oomKillReadings(new Promise(() => {}), vmstat), [undefined, undefined], 'given up after OOM_READ_TIMEOUT_MS')
})

t.test('the real /proc/vmstat has the count on Linux', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  t.type(await readOomKillCount(), 'number')
})

t.test('OomLedger: the kills while a worker lived that no other exit accounts for; undefined when a reading is missing', async (t) => {
  const ledger = new OomLedger()
  t.equal(ledger.unaccounted(5, 5), 0, 'the count did not move: not the OOM killer')
  t.equal(ledger.unaccounted(undefined, 5), undefined)
  t.equal(ledger.unaccounted(5, undefined), undefined)
  t.equal(ledger.unaccounted(5, 4), 0, 'never negative')
  // Workers A and B both started at 10; A is OOM-killed (11), then B is killed with kill -9.
  t.equal(ledger.unaccounted(10, 11), 1, 'A: the OOM killer')
  t.equal(ledger.unaccounted(10, 11), 0, 'B, later, same count: that kill was A\'s')
  // C and D, both alive at 20, both OOM-killed at once (22): one kill each, not two each.
  t.equal(ledger.unaccounted(20, 22), 2, 'C: two kills it may be one of')
  t.equal(ledger.unaccounted(20, 22), 1, 'D: one left')
  t.equal(ledger.unaccounted(20, 22), 0, 'a third, kill -9: none left')
  t.equal(ledger.unaccounted(23, 24), 1, 'a worker started later sees only its own life\'s')
})
