// Baseline "pipe": no HTTP. Node drives four Python workers over pyfleet's own
// worker protocol (dist/pool/python-worker.js, the class the pool uses), each
// with one call always in flight: the ceiling of the IPC layer. Forked by
// run.mjs, which sends {type: 'run', scenario, warmupMs, measureMs} and then
// {type: 'stop'}; it answers 'ready', 'measure-start', 'measure-end', 'result'.

import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { newHistogram, summarize } from '../lib/histogram.mjs'
import { requestsOf } from '../lib/scenarios.mjs'

const ROOT = process.env.PYFLEET_ROOT ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const { PythonWorker } = await import(join(ROOT, 'dist', 'pool', 'python-worker.js'))

const SIZE = Number(process.env.POOL_SIZE ?? 4)
const MAX_FRAME_BYTES = 64 * 1024 * 1024
const log = pino({ level: 'warn' }, pino.destination(2))
const args = ['-m', 'pyfleet', '--max-frame-bytes', String(MAX_FRAME_BYTES), '--parent-pid', String(process.pid), '--diag']
const env = { ...process.env, PYTHONPATH: join(ROOT, 'workers'), PYTHONUNBUFFERED: '1' }

const workers = await Promise.all(Array.from({ length: SIZE }, (_, i) => PythonWorker.spawn({
  id: i + 1, python: process.env.PYTHON ?? '/usr/bin/python3', args, env, cwd: ROOT, maxFrameBytes: MAX_FRAME_BYTES, startTimeoutMs: 30_000, log
})))

async function run ({ scenario, warmupMs, measureMs }) {
  const requests = requestsOf(scenario)
  const histogram = newHistogram()
  let measured = 0
  let failed = 0
  let calls = 0
  let measureStart = Infinity
  let measureEnd = Infinity
  let stopping = false
  const started = performance.now()
  const startTimer = setTimeout(() => { measureStart = performance.now(); process.send({ type: 'measure-start' }) }, warmupMs)
  const endTimer = setTimeout(() => { measureEnd = performance.now(); process.send({ type: 'measure-end' }); stopping = true }, warmupMs + measureMs)

  let nextId = 0
  async function drive (worker, offset) {
    for (let i = offset; !stopping; i++) {
      const request = requests[i % requests.length]
      const t0 = performance.now()
      const reply = await worker.call(request.task, request.input, `pipe-${++nextId}`, 30_000)
      const t1 = performance.now()
      calls++
      if (reply.t !== 'result') failed++
      if (t1 >= measureStart && t1 < measureEnd) {
        measured++
        histogram.recordValue(Math.max(1, Math.round((t1 - t0) * 1000)))
      }
    }
  }
  await Promise.all(workers.map((w, i) => drive(w, i)))
  clearTimeout(startTimer)
  clearTimeout(endTimer)
  const windowSeconds = (measureEnd - measureStart) / 1000
  return {
    requestsPerSecond: measured / windowSeconds,
    latency: summarize(histogram),
    measuredResponses: measured,
    windowSeconds,
    responses: calls,
    errors: 0,
    timeouts: 0,
    measuredErrors: 0,
    non2xx: failed,
    statusCodes: { ok: calls - failed, failed },
    totalSeconds: (performance.now() - started) / 1000
  }
}

async function stop () {
  await Promise.all(workers.map(async (w) => { await w.stop(2000) }))
  process.exit(0)
}

process.on('message', (message) => {
  if (message.type === 'run') {
    run(message).then(
      (result) => process.send({ type: 'result', result }),
      (error) => process.send({ type: 'error', message: error.stack ?? String(error) })
    )
  } else if (message.type === 'stop') {
    void stop()
  }
})
process.on('SIGTERM', () => { void stop() })
process.on('disconnect', () => { void stop() })
process.send({ type: 'ready' })
