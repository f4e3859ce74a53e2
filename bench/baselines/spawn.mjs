// Baseline "spawn": the design pyfleet replaces. Fastify starts one python3
// process per request (at most SPAWN_LIMIT at once, the rest wait in line),
// writes the input as JSON to its stdin and answers with what it prints. The
// task code is the same as pyfleet's; only the process model differs.
//
//   PORT=3000 PYTHON=/usr/bin/python3 node bench/baselines/spawn.mjs

import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = join(HERE, '..', '..')
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3'
const LIMIT = Number(process.env.SPAWN_LIMIT ?? 4)
const SCRIPT = join(HERE, 'spawn_task.py')
const env = { ...process.env, PYTHONPATH: join(ROOT, 'workers'), PYTHONDONTWRITEBYTECODE: '1' }

// A counting semaphore: at most LIMIT Pythons at once, callers served in arrival order.
let running = 0
const waiting = []
async function acquire () {
  if (running < LIMIT) { running++; return }
  await new Promise((resolve) => waiting.push(resolve))
}
function release () {
  const next = waiting.shift()
  if (next !== undefined) next()
  else running--
}

function runTask (name, input) {
  return new Promise((resolve) => {
    const child = spawn(PYTHON, [SCRIPT, name], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] })
    const out = []
    const err = []
    child.stdout.on('data', (chunk) => out.push(chunk))
    child.stderr.on('data', (chunk) => err.push(chunk))
    child.stdin.on('error', () => {})
    child.on('error', (error) => resolve({ code: -1, stdout: '', stderr: error.message }))
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }))
    child.stdin.end(JSON.stringify(input))
  })
}

const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 })
app.addContentTypeParser(['application/xml', 'text/xml', 'text/csv', 'text/plain'], { parseAs: 'string' }, (_req, body, done) => { done(null, body) })

const RAW_FIELD = { 'xml.import': 'xml', 'csv.profile': 'csv', 'text.stats': 'text' }

app.post('/api/tasks/:name', async (request, reply) => {
  const { name } = request.params
  let input = request.body
  if (typeof input === 'string') {
    input = { [RAW_FIELD[name] ?? 'data']: input }
    for (const [key, value] of Object.entries(request.query)) input[key] = /^\d+$/.test(value) ? Number(value) : value
  }
  await acquire()
  let result
  try {
    result = await runTask(name, input)
  } finally {
    release()
  }
  reply.type('application/json')
  if (result.code === 0) return result.stdout
  reply.status(result.code === 3 ? 422 : 500)
  return JSON.stringify({ error: result.stderr.slice(-500) })
})
app.get('/health', async () => ({ status: 'ok' }))

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
