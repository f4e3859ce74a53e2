// The offload thread in a running server: which bodies and replies go to it, what a
// client gets when a large reply breaks the protocol, and what it gets when the thread
// cannot take work. (Answers being the same whichever thread does the work:
// offload-parity.test.ts. The thread itself, failing for real: test/offload/.)

import t from 'tap'
import { pack } from 'msgpackr'
import { callTask, FIXTURES, getJson, startServer } from '../helpers/server.js'

const OFFLOAD_TASKS = { TASK_MODULES: 'offload_tasks', PYTHONPATH: FIXTURES }

/** pyfleet_offload_jobs_total by job, from /metrics. */
async function offloadJobs (url: string): Promise<{ input: number, answer: number }> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const count = (job: string): number => Number(new RegExp(`^pyfleet_offload_jobs_total\\{job="${job}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { input: count('input'), answer: count('answer') }
}

t.test('by default, bodies and replies from 64 KiB go to the thread and smaller ones stay on the event loop', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  t.equal(server.app.offloader.minBytes, 64 * 1024, 'OFFLOAD_MIN_BYTES defaults to 64 KiB')
  const small = { text: 'x'.repeat(1000) }
  t.same((await callTask(server.url, 'echo', small)).json, small)
  t.same(await offloadJobs(server.url), { input: 0, answer: 0 }, 'a 1 KB body and its answer: no job')

  const large = { text: 'é'.repeat(40_000) } // 80 KB as UTF-8
  const reply = await callTask(server.url, 'echo', large)
  t.equal(reply.status, 200)
  t.same(reply.json, large)
  t.same(await offloadJobs(server.url), { input: 1, answer: 1 }, 'an 80 KB body and its answer: one job each')

  // A small body whose answer is large: only the answer goes.
  const digest = await callTask(server.url, 'echo', { data: 'y' }, { accept: 'application/msgpack' })
  t.equal(digest.status, 200)
  t.same(await offloadJobs(server.url), { input: 1, answer: 1 })
})

t.test('OFFLOAD_MIN_BYTES=0 turns the thread off', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '0' })
  const large = { text: 'x'.repeat(200_000) }
  t.same((await callTask(server.url, 'echo', large)).json, large)
  t.same(await offloadJobs(server.url), { input: 0, answer: 0 })
})

t.test('a large msgpack answer is the worker\'s own bytes, and a large body with big integers reaches the task exactly', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024', ...OFFLOAD_TASKS })
  const response = await fetch(`${server.url}/api/tasks/offload.big`, {
    method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/msgpack' }, body: JSON.stringify({ n: 5000, bytes: 3000 })
  })
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'application/msgpack')
  const { unpack } = await import('msgpackr')
  const value = unpack(Buffer.from(await response.arrayBuffer())) as { text: string, data: Uint8Array }
  t.equal(value.text.length, 5000)
  t.equal(value.data.length, 3000, 'bytes stay bytes')

  const body = `{"ids": [${Array(200).fill('1790000000000000001').join(',')}]}`
  const echoed = await fetch(`${server.url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/msgpack' }, body })
  t.equal(echoed.status, 200)
  const { Unpackr } = await import('msgpackr')
  const ids = new Unpackr({ int64AsType: 'bigint', mapsAsObjects: true, useRecords: false }).unpack(Buffer.from(await echoed.arrayBuffer())) as { ids: unknown[] }
  t.equal(ids.ids.length, 200)
  t.ok(ids.ids.every((id) => id === 1790000000000000001n), 'each integer exact, not rounded to 1790000000000000000')
  t.same(await offloadJobs(server.url), { input: 1, answer: 2 }, 'the large body and both large answers went to the thread (offload.big\'s body is small)')
})

t.test('a large reply frame that breaks the protocol: 502, the worker replaced as a protocol failure, the next call served', async (t) => {
  for (const [task, why] of [['offload.garbage_reply', /not valid msgpack/], ['offload.wrong_id', /reply for call 999999 while call \d+ is outstanding/]] as const) {
    const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024', ...OFFLOAD_TASKS })
    const reply = await callTask(server.url, task, { n: 5000 }, { 'x-request-id': `broken-${task}` })
    t.equal(reply.status, 502, task)
    t.equal(reply.json.code, 'WORKER_DIED')
    t.match(reply.json.message, /broke the protocol/)
    const stats = await getJson(`${server.url}/api/queue-stats`)
    t.match(stats.restarts, { protocol: 1, crash: 0 }, 'counted as a protocol failure')
    t.ok(server.logs.some((line) => line.level === 50 && line.requestId === `broken-${task}` && why.test(String(line.msg))), 'logged as the worker breaking the protocol, with the request id')
    t.same(await offloadJobs(server.url), { input: 0, answer: 1 }, 'found on the thread')
    t.same((await callTask(server.url, 'echo', { after: true })).json, { after: true }, 'the replacement serves the next call')
    await server.close()
  }
})

t.test('the thread unable to take work: a large body gets a 500, a large reply a 500 TASK_FAILED, and no worker is blamed', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024', ...OFFLOAD_TASKS })
  // As after a failure to start it: closed, every job is refused with OffloadThreadError.
  await server.app.offloader.close()
  const body = await callTask(server.url, 'echo', { text: 'x'.repeat(2000) })
  t.equal(body.status, 500)
  t.notMatch(body.text, /OffloadThreadError|shutting down/, 'the reason stays in the log')
  const answer = await callTask(server.url, 'offload.big', { n: 5000 }, { 'x-request-id': 'no-thread' })
  t.equal(answer.status, 500)
  t.equal(answer.json.code, 'TASK_FAILED')
  t.ok(server.logs.some((line) => line.requestId === 'no-thread' && /OffloadThreadError/.test(String(line.msg))), 'the log says why')
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.match(stats.restarts, { crash: 0, protocol: 0 }, 'the worker did nothing wrong and serves on')
  t.same((await callTask(server.url, 'echo', { small: 1 })).json, { small: 1 }, 'small calls are served as before')
})

t.test('a large msgpack body with an extension type is refused with the event loop\'s 400', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024' })
  const bytes = pack({ pad: 'x'.repeat(2000), when: new Date(0) }) // a timestamp: extension type -1
  const reply = await callTask(server.url, 'echo', bytes, { 'content-type': 'application/msgpack' })
  t.equal(reply.status, 400)
  t.equal(reply.json.code, 'INVALID_INPUT')
  t.match(reply.json.message, /extension/)
})
