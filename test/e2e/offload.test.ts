// The offload thread in a running server: which bodies and replies go to it, what a
// client gets when a large reply breaks the protocol, and what it gets when the thread
// cannot take work. (Clients leaving while their body waits, a worker held while its
// answer waits: offload-waiting.test.ts. Answers being the same whichever thread does the work:
// offload-parity.test.ts. The thread itself, failing for real: test/offload/.)

import t from 'tap'
import { pack, unpack } from 'msgpackr'
import { callTask, FIXTURES, getJson, startServer } from '../helpers/server.js'
import { TEXT_OFFLOAD_FACTOR } from '../../src/offload/offloader.js'
import { OBJECTS_OFFLOAD_DIVISOR } from '../../src/value-shape.js'

const OFFLOAD_TASKS = { TASK_MODULES: 'offload_tasks', PYTHONPATH: FIXTURES }

/** pyfleet_offload_jobs_total by job, from /metrics. */
async function offloadJobs (url: string): Promise<{ input: number, answer: number }> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const count = (job: string): number => Number(new RegExp(`^pyfleet_offload_jobs_total\\{conversion="${job}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { input: count('input'), answer: count('answer') }
}

t.test('by default, bodies and replies from 256 KiB go to the thread and smaller ones stay on the event loop', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', ...OFFLOAD_TASKS })
  t.equal(server.app.offloader.minBytes, 256 * 1024, 'OFFLOAD_MIN_BYTES defaults to 256 KiB')
  const small = { text: 'x'.repeat(200_000) }
  t.same((await callTask(server.url, 'echo', small)).json, small)
  t.same(await offloadJobs(server.url), { input: 0, answer: 0 }, 'a 200 KB body and its answer: no job')

  const large = { text: 'é'.repeat(150_000) } // 300 KB as UTF-8
  const reply = await callTask(server.url, 'echo', large)
  t.equal(reply.status, 200)
  t.same(reply.json, large)
  t.same(await offloadJobs(server.url), { input: 1, answer: 1 }, 'a 300 KB body and its answer: one job each')

  // A small body whose answer is large: only the answer goes.
  const big = await callTask(server.url, 'offload.big', { n: 300_000 })
  t.equal(big.json.text.length, 300_000)
  t.same(await offloadJobs(server.url), { input: 1, answer: 2 })
})

t.test('a small msgpack body or reply frame of many maps, arrays or bins goes to the thread: OFFLOAD_MIN_BYTES / OBJECTS_OFFLOAD_DIVISOR of them', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '65536', ...OFFLOAD_TASKS })
  const limit = 65536 / OBJECTS_OFFLOAD_DIVISOR
  const post = async (value: unknown): Promise<number> =>
    (await fetch(`${server.url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: new Uint8Array(pack(value)) })).status
  // One byte each: bodies far under OFFLOAD_MIN_BYTES.
  t.equal(await post(Array.from({ length: limit - 2 }, () => ({}))), 200, 'one object fewer than the limit (the array is one)')
  t.same(await offloadJobs(server.url), { input: 0, answer: 0 }, 'stays on the event loop')
  t.equal(await post(Array.from({ length: limit }, () => ({}))), 200, 'empty maps')
  t.equal(await post(Array.from({ length: limit }, () => Buffer.alloc(0))), 200, 'empty bins')
  t.same(await offloadJobs(server.url), { input: 2, answer: 2 }, 'each went to the thread, and so did its echo')
  t.equal(await post([1, [{ a: 'x' }]]), 200)
  t.same(await offloadJobs(server.url), { input: 2, answer: 2 }, 'a small body of few objects: on the event loop, as before')

  // A small input whose reply is many objects: the reply alone goes (the frame's own map is not counted).
  let answers = 2
  for (const accept of ['application/json', 'application/msgpack']) {
    const under = await callTask(server.url, 'offload.empty_maps', { n: limit - 2 }, { accept })
    t.equal(under.status, 200)
    t.same(await offloadJobs(server.url), { input: 2, answer: answers }, `${accept}: the list and its maps, one fewer than the limit: on the event loop`)
    const at = await callTask(server.url, 'offload.empty_maps', { n: limit - 1 }, { accept })
    t.equal(at.status, 200)
    t.same(await offloadJobs(server.url), { input: 2, answer: ++answers }, `${accept}: at the limit, the answer is made on the thread`)
    if (accept === 'application/json') t.same(at.json, Array.from({ length: limit - 1 }, () => ({})))
  }
  const response = await fetch(`${server.url}/api/tasks/offload.empty_maps`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/msgpack' }, body: JSON.stringify({ n: limit }) })
  t.same(unpack(Buffer.from(await response.arrayBuffer())), Array.from({ length: limit }, () => ({})), 'the msgpack answer made on the thread')
  t.same(await offloadJobs(server.url), { input: 2, answer: answers + 1 })
})

t.test('raw text goes to the thread from TEXT_OFFLOAD_FACTOR times OFFLOAD_MIN_BYTES: cheaper to decode than JSON to parse', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '100000' })
  const send = async (bytes: number): Promise<number> => {
    const response = await fetch(`${server.url}/api/tasks/text.stats?top=1`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'word '.repeat(bytes / 5) })
    t.equal(response.status, 200)
    return (await response.json()).words
  }
  t.equal(await send(TEXT_OFFLOAD_FACTOR * 100_000 - 5), TEXT_OFFLOAD_FACTOR * 20_000 - 1)
  t.same(await offloadJobs(server.url), { input: 0, answer: 0 }, 'just under: decoded on the event loop')
  t.equal(await send(TEXT_OFFLOAD_FACTOR * 100_000), TEXT_OFFLOAD_FACTOR * 20_000)
  t.same(await offloadJobs(server.url), { input: 1, answer: 0 }, 'at it: on the thread')
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

t.test('the offload thread closed (as at shutdown): a large body gets 503, a large reply a 500 TASK_FAILED, and no worker is blamed', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024', ...OFFLOAD_TASKS })
  await server.app.offloader.close()
  const body = await callTask(server.url, 'echo', { text: 'x'.repeat(2000) })
  t.equal(body.status, 503)
  t.match(body.json, { code: 'WORKERS_UNAVAILABLE', message: /shutting down/ })
  t.equal(body.headers.get('retry-after'), '1')
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
