// The offload thread's queue in a running server, with bodies large enough to keep it
// busy for seconds: clients that leave while their body waits or is parsed, and a worker
// held while its answer waits for the thread. (Split from offload.test.ts, whose other
// tests are quick: together they came near tap's per-file limit on a loaded machine.)

import t from 'tap'
import { connect } from 'node:net'
import { callTask, FIXTURES, getJson, observed, startServer, waitFor } from '../helpers/server.js'

const OFFLOAD_TASKS = { TASK_MODULES: 'offload_tasks', PYTHONPATH: FIXTURES }

t.test('a client that leaves while its body waits for the thread: dropped at once, unparsed, never run, not a call', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024' })
  // A body that keeps the thread busy for a while: ~8 MB of distinct keys, which stats.describe
  // (an array of numbers) then refuses. Echoed, its 8 MB went through a worker and back for
  // nothing this test looks at: ~10 s of CPU of a CI run.
  const keys: Record<string, number> = {}
  for (let i = 0; i < 400_000; i++) keys[`key-${i}`] = i
  const busy = callTask(server.url, 'stats.describe', { values: keys })
  await waitFor(() => server.app.offloader.pendingJobs >= 1, 10_000, 'the large body to reach the thread')
  const { port } = new URL(server.url)
  const socket = connect(Number(port), '127.0.0.1')
  socket.on('error', () => {})
  const body = JSON.stringify({ text: 'y'.repeat(2000) })
  socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-request-id: gone-while-waiting\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor(() => server.app.offloader.pendingJobs >= 2, 10_000, 'the second body to wait behind the first')
  socket.destroy()
  await waitFor(() => server.logs.some((line) => line.requestId === 'gone-while-waiting' && /request abandoned/.test(String(line.msg))), 10_000, 'the abandoned request\'s log line')
  t.ok(server.app.offloader.pendingJobs <= 1, 'dropped from the queue, not left for the thread')
  t.equal((await busy).status, 400, 'the first body parsed, and refused by its schema')
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.equal(stats.workers[0].calls, 0, 'the worker ran neither: the one whose client left never started')
  t.same(stats.offload, { minBytes: 1024, pendingJobs: 0, pendingBodyBytes: 0 })
  t.equal(stats.receiving.bytes, 0, 'every body\'s bytes given back')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^pyworker_calls_total\{task="echo",outcome="cancelled"\} 0$/m, 'not a call: its body was never parsed (SPEC §6)')
  t.match(metrics, /^pyfleet_offload_jobs_total\{conversion="input"\} 1$/m, 'the thread parsed the first body only')
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="499"\} 1$/m, 'a request, though not a call: one 499 sample')
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="400"\} 1$/m, 'and the first body\'s 400')
})

t.test('a client that leaves while its large body is parsed, a body then refused: logged as abandoned with the 400 it would have had, and a 499 sample', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024' })
  // stats.describe wants an array of numbers: ~8 MB of distinct keys keeps the thread busy, then fails the schema.
  const values: Record<string, number> = {}
  for (let i = 0; i < 400_000; i++) values[`key-${i}`] = i
  const body = JSON.stringify({ values })
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  socket.on('error', () => {})
  socket.write(`POST /api/tasks/stats.describe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-request-id: gone-while-parsed\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  await waitFor(() => server.app.offloader.pendingJobs >= 1, 10_000, 'the body to reach the thread')
  socket.destroy()
  const abandoned = (): Record<string, any> | undefined => server.logs.find((line) => line.requestId === 'gone-while-parsed' && /request abandoned/.test(String(line.msg)))
  // Once the thread has parsed the 8 MB: seconds on a loaded machine (a guard, not a timing).
  await waitFor(() => abandoned() !== undefined, 60_000, 'the abandoned request\'s log line')
  t.match(abandoned(), { level: 30, code: 'FST_ERR_VALIDATION', task: 'stats.describe' }, 'info: a 400 nobody reads')
  t.match(abandoned(), { reason: /values/, err: undefined }, 'what the 400 would have said, without a stack')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="499"\} 1$/m)
  t.notMatch(observed(metrics), /status_code="400"/, 'not also under the status nobody received')
})

t.test('a worker whose large answer waits for the thread shows as busy with its task, not idle', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', OFFLOAD_MIN_BYTES: '1024', ...OFFLOAD_TASKS })
  // A body that keeps the thread busy for a while (16 MiB of distinct keys, which stats.describe
  // then refuses: echoed, it cost a worker and the thread another 16 MiB each way), then a
  // small call whose large answer must wait for the thread behind it.
  const keys: Record<string, number> = {}
  for (let i = 0; i < 800_000; i++) keys[`key-${i}`] = i
  const busy = callTask(server.url, 'stats.describe', { values: keys })
  await waitFor(() => server.app.offloader.pendingJobs >= 1, 20_000, 'the large body to reach the thread')
  const big = callTask(server.url, 'offload.big', { n: 5000 })
  await waitFor(() => server.app.offloader.pendingJobs >= 2, 10_000, 'the answer to wait behind the body')
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.equal(server.app.offloader.pendingJobs, 2, 'still waiting when the stats were read')
  const states = (stats.workers as Array<{ state: string, task: string | null }>).map((w) => `${w.state} ${String(w.task)}`).sort()
  t.same(states, ['busy offload.big', 'idle null'], 'held for its call, and said so')
  t.equal((await big).status, 200)
  t.equal((await busy).status, 400)
  const after = await getJson(`${server.url}/api/queue-stats`)
  t.match(after.workers, [{ state: 'idle', task: null }, { state: 'idle', task: null }], 'idle again once its answer was written')
})
