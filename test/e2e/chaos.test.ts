// Chaos: 10 s of mixed fast calls while a random worker is killed with SIGKILL
// every 200 ms (about 50 kills; CHAOS_DURATION_MS runs it longer). Every response is 200 or 502 WORKER_DIED, none hangs, no
// connection is reset, and afterwards the pool is whole and nothing is left over.

import t from 'tap'
import { callTask, isRunning, startServer, waitFor, workerPids } from '../helpers/server.js'

const DURATION_MS = Number(process.env.CHAOS_DURATION_MS ?? 10_000)
const KILL_EVERY_MS = 200
const CLIENTS = 16
const CALL_DEADLINE_MS = 15_000

t.test(`chaos: ${DURATION_MS / 1000} s of load while a worker is SIGKILLed every ${KILL_EVERY_MS} ms`, async (t) => {
  const server = await startServer(t, { LOG_LEVEL: 'warn' })
  const seenPids = new Set(workerPids(server))
  const counts = { requests: 0, ok: 0, workerDied: 0, other: 0, resets: 0, hangs: 0 }
  const others: string[] = []
  let kills = 0
  const endAt = Date.now() + DURATION_MS

  const killer = (async () => {
    while (Date.now() < endAt) {
      await new Promise((resolve) => setTimeout(resolve, KILL_EVERY_MS))
      const pids = workerPids(server)
      for (const pid of pids) seenPids.add(pid)
      const victim = pids[Math.floor(Math.random() * pids.length)]
      if (victim !== undefined) {
        try { process.kill(victim, 'SIGKILL'); kills++ } catch { /* already gone */ }
      }
    }
  })()

  const bodies: Array<[string, unknown]> = [
    ['echo', { hello: 'world', n: [1, 2, 3] }],
    ['stats.describe', { values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }],
    ['text.stats', { text: 'The quick brown fox jumps over the lazy dog. It was fast.' }],
    ['hash.digest', { data: Buffer.from('chaos').toString('base64') }],
    ['diag.work', { sleep_ms: 5 }]
  ]
  const clients = Array.from({ length: CLIENTS }, async (_, c) => {
    let i = c
    while (Date.now() < endAt) {
      const [task, body] = bodies[i++ % bodies.length]
      counts.requests++
      const controller = new AbortController()
      const timer = setTimeout(() => { controller.abort() }, CALL_DEADLINE_MS)
      try {
        const response = await fetch(`${server.url}/api/tasks/${task}`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: controller.signal
        })
        const json = await response.json() as { code?: string }
        if (response.status === 200) counts.ok++
        else if (response.status === 502 && json.code === 'WORKER_DIED') counts.workerDied++
        else { counts.other++; others.push(`${response.status} ${json.code ?? ''}`) }
      } catch (error) {
        if (controller.signal.aborted) counts.hangs++
        else { counts.resets++; others.push(String(error)) }
      } finally {
        clearTimeout(timer)
      }
    }
  })
  await Promise.all([killer, ...clients])
  t.comment(`requests=${counts.requests} 200=${counts.ok} 502=${counts.workerDied} other=${counts.other} resets=${counts.resets} hangs=${counts.hangs} kills=${kills}`)

  t.equal(counts.hangs, 0, 'no call hung')
  t.equal(counts.resets, 0, 'no connection was reset')
  t.same(others.slice(0, 5), [], 'every response was 200 or 502 WORKER_DIED')
  t.ok(counts.workerDied <= kills, `502s (${counts.workerDied}) only for calls on killed workers (${kills} kills)`)
  t.ok(counts.ok > counts.requests / 2, 'most calls succeeded')

  await waitFor(() => server.app.pool.liveWorkers === 4 && server.app.pool.snapshot().workers.every((w) => w.state === 'idle'), 15_000, 'a whole, idle pool')
  t.equal(server.app.pool.members().length, 4, 'exactly POOL_SIZE workers')
  const live = workerPids(server)
  for (const pid of seenPids) {
    if (!live.includes(pid)) t.notOk(await isRunning(pid), `killed worker ${pid} was reaped`)
  }
  t.equal((await callTask(server.url, 'echo', { after: 'chaos' })).status, 200)
  await server.close()
  for (const pid of live) t.notOk(await isRunning(pid), `worker ${pid} stopped with the server`)
})
