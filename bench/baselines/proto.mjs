// Baseline "proto": pyfleet's design with none of its features. Fastify (logger
// off, its own JSON body parser and reply), a generic-pool of four workers and
// pyfleet's own worker class (dist/pool/python-worker.js, the same pipes and
// frames): borrow a worker, call, give it back, return the value. No schema
// check, request ids, metrics, logging, queue bounds, budgets, msgpack bodies,
// recycling or shutdown drain. It stands in for the "careful prototype" of the
// benchmark issue, measured in the same run: pyfleet ÷ proto is what the
// features cost, and proto ÷ bare is what the design itself costs here.
//
//   PORT=3000 PYTHON=/usr/bin/python3 node bench/baselines/proto.mjs

import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import genericPool from 'generic-pool'
import pino from 'pino'

const ROOT = process.env.PYFLEET_ROOT ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const { PythonWorker } = await import(join(ROOT, 'dist', 'pool', 'python-worker.js'))

const SIZE = Number(process.env.POOL_SIZE ?? 4)
const BODY_LIMIT_BYTES = 16 * 1024 * 1024
const MAX_FRAME_BYTES = 64 * 1024 * 1024
const TIMEOUT_MS = 30_000
const log = pino({ level: 'warn' }, pino.destination(2))
const args = ['-m', 'pyfleet', '--max-frame-bytes', String(MAX_FRAME_BYTES), '--parent-pid', String(process.pid), '--diag']
const env = { ...process.env, PYTHONPATH: join(ROOT, 'workers'), PYTHONUNBUFFERED: '1' }

let nextId = 0
const pool = genericPool.createPool({
  create: () => PythonWorker.spawn({ id: ++nextId, python: process.env.PYTHON ?? '/usr/bin/python3', args, env, cwd: ROOT, maxFrameBytes: MAX_FRAME_BYTES, startTimeoutMs: TIMEOUT_MS, log }),
  destroy: (worker) => worker.stop(2000)
}, { min: SIZE, max: SIZE })

const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT_BYTES })
// xml.import's raw body, as pyfleet takes it (the xml-1MB case): the text becomes input.xml.
app.addContentTypeParser('application/xml', { parseAs: 'string', bodyLimit: BODY_LIMIT_BYTES }, (request, body, done) => { done(null, body) })

app.post('/api/tasks/:name', async (request, reply) => {
  const input = typeof request.body === 'string' ? { xml: request.body, ...coerce(request.query) } : request.body
  const worker = await pool.acquire()
  let answer
  try {
    answer = await worker.call(request.params.name, input, String(request.id), TIMEOUT_MS)
  } catch (error) {
    // The worker died or timed out: the pool starts another.
    await pool.destroy(worker)
    reply.code(500)
    return { error: error.message }
  }
  await pool.release(worker)
  if (answer.t === 'result') return answer.value
  reply.code(answer.kind === 'rejected' ? 422 : 500)
  return { error: answer.message }
})
app.get('/health', async () => ({ status: 'ok' }))

/** Query strings are text; xml.import's `limit` is a number. */
function coerce (query) {
  return Object.fromEntries(Object.entries(query).map(([k, v]) => [k, /^\d+$/.test(v) ? Number(v) : v]))
}

await pool.ready()
await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) })
process.on('SIGTERM', () => {
  app.close().then(() => pool.drain()).then(() => pool.clear()).then(() => process.exit(0))
})
