import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { oomKillsMeanwhile, readOomKillCount } from '../../src/pool/oom-kills.js'

t.test('readOomKillCount reads oom_kill out of a vmstat file, and gives undefined where there is none', async (t) => {
  const dir = t.testdir()
  const vmstat = join(dir, 'vmstat')
  await writeFile(vmstat, 'nr_free_pages 123\noom_kill_other 9\noom_kill 42\nnr_unstable 0\n')
  t.equal(await readOomKillCount(vmstat), 42)
  await writeFile(vmstat, 'nr_free_pages 123\n') // a kernel before 4.13
  t.equal(await readOomKillCount(vmstat), undefined)
  t.equal(await readOomKillCount(join(dir, 'missing')), undefined)
})

t.test('the real /proc/vmstat has the count on Linux', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  t.type(await readOomKillCount(), 'number')
})

t.test('oomKillsMeanwhile: how far the count moved while the worker lived; undefined when either reading is missing', async (t) => {
  t.equal(oomKillsMeanwhile(5, 7), 2)
  t.equal(oomKillsMeanwhile(5, 5), 0)
  t.equal(oomKillsMeanwhile(5, 4), 0, 'never negative')
  t.equal(oomKillsMeanwhile(undefined, 5), undefined)
  t.equal(oomKillsMeanwhile(5, undefined), undefined)
})
