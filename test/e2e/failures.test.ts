// What happens when workers die, hang or are all busy: every call still ends in
// exactly one typed response and the pool comes back to full strength.

import t from 'tap'
import { connect } from 'node:net'
import { callTask, childPythonPids, FIXTURES, getJson, isRunning, observed, startServer, startServerProcess, waitFor, workerPids } from '../helpers/server.js'
import { rawExchange } from '../helpers/raw-http.js'
import { makeMemoryCgroup, makePidsCgroup } from '../helpers/cgroups.js'
import { serverEndOf } from '../helpers/kernel-sockets.js'
import { readFile, writeFile } from 'node:fs/promises'
import { readOomKillCount } from '../../src/pool/oom-kills.js'

/**
 * What a worker killed with kill -9 during the test must be said to be: not the OOM killer's
 * doing, unless the machine's count of OOM kills moved meanwhile (another process, on a busy
 * CI host), when pyfleet rightly says "most likely" the OOM killer. The count is read before
 * the server starts and after the kill.
 */
async function killedByPattern (countBefore: number | undefined): Promise<{ how: RegExp, by: string }> {
  const countAfter = await readOomKillCount()
  return countBefore !== undefined && countAfter === countBefore
    ? { how: /^was killed by a SIGKILL pyfleet did not send, and not by the kernel's out-of-memory killer/, by: 'someone' }
    : { how: /^was killed by a SIGKILL pyfleet did not send, most likely by the kernel's out-of-memory killer/, by: 'oom_killer' }
}

t.test('a worker that exits mid-call gives 502 and is replaced', async (t) => {
  const server = await startServer(t)
  const before = workerPids(server)
  const reply = await callTask(server.url, 'diag.work', { exit: 3 })
  t.equal(reply.status, 502)
  t.equal(reply.json.code, 'WORKER_DIED')
  await waitFor(() => server.app.pool.liveWorkers === 4, 10_000, 'four live workers')
  const after = workerPids(server)
  t.equal(after.length, 4)
  t.equal(after.filter((pid) => !before.includes(pid)).length, 1, 'exactly one new worker')
  t.equal((await callTask(server.url, 'echo', { ok: 1 })).status, 200)
  const stats = await (await fetch(`${server.url}/api/queue-stats`)).json()
  t.match(stats.restarts, { crash: 1, protocol: 0 }, 'counted as a crash')
})

t.test('a worker SIGKILLed by someone else (a kill -9) mid-call: 502, and the log says pyfleet did not send it, nor the OOM killer', async (t) => {
  const oomKills = await readOomKillCount()
  const server = await startServer(t, { POOL_SIZE: '1', TASK_TIMEOUTS: 'diag.work=1000' })
  const [pid] = workerPids(server)
  const reply = callTask(server.url, 'diag.work', { sleep_ms: 5000 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the call to run')
  process.kill(pid, 'SIGKILL')
  t.equal((await reply).status, 502)
  await waitFor(() => server.logs.some((l) => l.msg === 'worker exited' && l.workerPid === pid), 10_000, 'its exit')
  const { how } = await killedByPattern(oomKills)
  t.match(server.logs.find((l) => l.msg === 'worker exited' && l.workerPid === pid), { signal: 'SIGKILL', how }, 'the log says who most likely killed it')
  // One pyfleet sends itself (a timeout) is not blamed on anyone else.
  await waitFor(() => server.app.pool.liveWorkers === 1, 10_000, 'the replacement')
  t.equal((await callTask(server.url, 'diag.work', { sleep_ms: 3000 })).status, 504)
  await waitFor(() => server.logs.some((l) => l.msg === 'worker exited' && l.signal === 'SIGKILL' && l.workerPid !== pid), 10_000, 'the timed-out worker to exit')
  t.equal(server.logs.filter((l) => /did not send/.test(l.msg ?? '')).length, 1)
})

t.test('an idle worker SIGKILLed by someone else (a kill -9): its exit line says pyfleet did not send it', async (t) => {
  const oomKills = await readOomKillCount()
  const server = await startServer(t, { POOL_SIZE: '1' })
  const [pid] = workerPids(server)
  process.kill(pid, 'SIGKILL')
  await waitFor(() => server.logs.some((l) => l.msg === 'worker exited' && l.workerPid === pid), 10_000, 'its exit')
  const { how, by } = await killedByPattern(oomKills)
  t.match(server.logs.find((l) => l.msg === 'worker exited' && l.workerPid === pid), { signal: 'SIGKILL', how })
  await waitFor(() => server.app.pool.liveWorkers === 1, 10_000, 'the replacement')
  // The warning says it too: at LOG_LEVEL=warn the info line above is not written.
  t.match(server.logs.find((l) => l.msg === 'replacing worker' && l.workerPid === pid), { level: 50, reason: 'crash', how: /^was killed by a SIGKILL pyfleet did not send/ })
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, new RegExp(`^pyfleet_worker_killed_total\\{by="${by}"\\} 1$`, 'm'), `counted as ${by}'s kill`)
  await server.app.close()
  t.match(server.logs.filter((l) => l.msg === 'worker exited').at(-1), { how: 'exited with code 0' }, 'a worker stopped by pyfleet: its own words')
})

t.test('a worker the kernel\'s OOM killer ends mid-call (a memory cgroup\'s limit, as a container\'s): 502, and the log says it ran out of memory', async (t) => {
  const cgroup = await makeMemoryCgroup('pyfleet-oom-test', 96 << 20)
  if (cgroup === undefined) {
    t.pass('a real OOM kill', { skip: 'no memory cgroup to make (needs root and a writable cgroup file system)' })
    return
  }
  t.teardown(() => cgroup.remove())
  const server = await startServer(t, { POOL_SIZE: '1' })
  const [pid] = workerPids(server)
  await cgroup.add(pid) // only the worker: Node, and the worker that replaces it, stay outside
  const reply = await callTask(server.url, 'diag.work', { alloc_mb: 400 })
  t.equal(reply.status, 502)
  t.equal(reply.json.code, 'WORKER_DIED')
  t.equal(reply.json.message, 'the worker running diag.work died; a replacement is being started', 'the client gets the usual words: how is for the log')
  await waitFor(() => server.logs.some((l) => l.msg === 'worker exited' && l.workerPid === pid), 10_000, 'its exit')
  t.match(server.logs.find((l) => l.msg === 'worker exited' && l.workerPid === pid), { signal: 'SIGKILL', how: /^was killed by a SIGKILL pyfleet did not send, most likely by the kernel's out-of-memory killer \(\/proc\/vmstat counts \d+ OOM kills? while it lived that no other worker's exit accounts for\)/ })
  t.match(server.logs.find((l) => l.msg === 'replacing worker' && l.workerPid === pid), { level: 50, reason: 'crash', how: /most likely by the kernel's out-of-memory killer .*ran out of memory/ })
  await waitFor(() => server.app.pool.liveWorkers === 1, 10_000, 'the replacement')
  t.equal((await callTask(server.url, 'diag.work', { alloc_mb: 200 })).status, 200, 'outside the cgroup, the replacement has the memory')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^pyfleet_worker_killed_total\{by="oom_killer"\} 1$/m, 'counted, as the OOM killer\'s')
  t.match(metrics, /^pyfleet_worker_killed_total\{by="someone"\} 0$/m)
  t.match(metrics, /^pyworker_worker_restarts_total\{reason="crash"\} 1$/m, 'and as a crash')
})

t.test('a worker that closes its protocol stream but lives on is replaced at once: 502, not a 504 at the deadline', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  const [pid] = workerPids(server)
  const reply = await callTask(server.url, 'extra.close_protocol', { sleep_s: 10 }, { 'x-request-timeout-ms': '8000' })
  t.equal(reply.status, 502)
  t.equal(reply.json.code, 'WORKER_DIED')
  await waitFor(() => server.app.pool.liveWorkers === 1 && !workerPids(server).includes(pid), 10_000, 'a new worker')
  t.equal((await callTask(server.url, 'echo', 1)).status, 200)
  t.match((await (await fetch(`${server.url}/api/queue-stats`)).json()).restarts, { protocol: 1 })
})

t.test('a task that closes the protocol stream and returns: the runtime says why it exits, and the log has it', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  const reply = await callTask(server.url, 'extra.close_protocol', { sleep_s: 0 })
  t.equal(reply.status, 502)
  t.equal(reply.json.code, 'WORKER_DIED')
  await waitFor(() => server.app.pool.liveWorkers === 1, 10_000, 'a new worker')
  const died = server.logs.find((l) => /exited with code 6: the runtime failed: OSError/.test(l.msg ?? ''))
  t.ok(died, 'the call\'s failure names what the runtime said, not only an exit code')
  const record = server.logs.filter((l) => /the worker's runtime failed/.test(l.msg ?? ''))
  t.equal(record.length, 1, 'its traceback is one log entry, not one per line')
})

t.test('a worker that sends a frame while idle is replaced as a protocol failure, not a crash', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  const [pid] = workerPids(server)
  t.equal((await callTask(server.url, 'extra.late_garbage', {})).status, 200)
  await waitFor(() => server.app.pool.liveWorkers === 1 && workerPids(server)[0] !== pid, 10_000, 'the replacement')
  t.match((await (await fetch(`${server.url}/api/queue-stats`)).json()).restarts, { protocol: 1, crash: 0 })
  t.ok(server.logs.some((l) => /unexpected frame while idle/.test(l.msg ?? '')))
  t.match(server.logs.find((l) => l.msg === 'replacing worker' && l.workerPid === pid), { level: 50, reason: 'protocol' }, 'an error, as a crash is: a worker that broke the protocol is a bug to mend')
  t.equal((await callTask(server.url, 'echo', 1)).status, 200)
})

t.test('a body under BODY_LIMIT_BYTES that encodes past MAX_FRAME_BYTES is a 413, and no worker dies', async (t) => {
  // A JSON float is 4 bytes as "0.1," and 9 as msgpack: 90 kB of them is ~200 kB for the worker.
  const server = await startServer(t, { POOL_SIZE: '1', BODY_LIMIT_BYTES: '100000', MAX_FRAME_BYTES: '150000' })
  const before = workerPids(server)
  const body = JSON.stringify(Array.from({ length: 22_000 }, () => 0.1))
  t.ok(body.length < 100_000, `the body (${body.length} bytes) is under the body limit`)
  const reply = await callTask(server.url, 'echo', body)
  t.equal(reply.status, 413)
  t.equal(reply.json.code, 'FST_ERR_CTP_BODY_TOO_LARGE')
  t.match(reply.json.message, /bytes once encoded for the worker, over MAX_FRAME_BYTES \(150000\)/)
  t.same(workerPids(server), before, 'the worker was not touched')
  t.equal((await callTask(server.url, 'echo', [0.1, 0.2])).status, 200)
  const { calls } = await server.app.metrics.counts()
  t.equal(calls.ok, 1, 'the 413 is not a call (SPEC: a 400 or a 404 is not one)')
  t.equal(calls.rejected, 0)
})

t.test('a client that stops sending mid-body gets 408 after REQUEST_BODY_TIMEOUT_MS; a call that runs longer does not', async (t) => {
  const server = await startServer(t, { REQUEST_BODY_TIMEOUT_MS: '1000' })
  const { port } = new URL(server.url)
  const socket = connect(Number(port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  const started = Date.now()
  socket.write('POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[1,2,')
  let answer = ''
  socket.setEncoding('utf8').on('data', (text: string) => { answer += text })
  await new Promise((resolve) => socket.once('close', resolve))
  const elapsed = Date.now() - started
  t.match(answer, /^HTTP\/1\.1 408 /, 'a 408 before the connection closes')
  t.match(answer, /"code":"ERR_HTTP_REQUEST_TIMEOUT".*REQUEST_BODY_TIMEOUT_MS/, 'in the error shape, saying which limit')
  t.ok(elapsed >= 900 && elapsed < 5000, `closed after ${elapsed} ms, close to the 1,000 ms limit`)
  // The limit covers receiving the request, not running it.
  const slow = await callTask(server.url, 'diag.work', { sleep_ms: 1500 })
  t.equal(slow.status, 200)
})

t.test('calls pipelined behind a running one are cancelled when the client leaves, and logged', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', QUEUE_LIMIT: '2' })
  const { port } = new URL(server.url)
  const socket = connect(Number(port), '127.0.0.1')
  socket.on('error', () => {})
  const body = '{"sleep_ms":1000}'
  const request = `POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  socket.write(request.repeat(4))
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 2 && server.app.pool.waiting === 2, 5000, 'two running, two queued behind them')
  socket.destroy()
  await waitFor(() => server.app.pool.waiting === 0, 5000, 'the queued calls to leave the queue')
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 0, 5000, 'the running calls to end')
  const { calls } = await server.app.metrics.counts()
  t.equal(calls.cancelled, 2, 'the two queued calls never ran')
  t.equal(calls.ok, 2, 'the two running calls finished (their results dropped)')
  await waitFor(() => server.logs.filter((l) => l.msg === 'request abandoned: the client left before its answer').length === 4, 5000, 'a log line for each')
  const cancelled = server.logs.find((l) => l.msg === 'request abandoned: the client left before its answer' && l.outcome === 'cancelled')
  // The peer's address is read before the client leaves; the pool's WORKERS_UNAVAILABLE for
  // ending the wait is not logged (it would read as the crash loop's).
  t.match(cancelled, { task: 'diag.work', requestId: String, level: 30, durationMs: Number, remoteAddress: '127.0.0.1' })
  t.equal(cancelled?.err, undefined, 'no error for a call its client cancelled')
  t.equal(cancelled?.code, undefined)
  t.match(server.logs.find((l) => l.msg === 'request abandoned: the client left before its answer' && l.outcome === 'ok'), { level: 30, err: undefined, remoteAddress: '127.0.0.1' }, 'a result dropped: info, as its answer\'s line would be')
  // Node writes no answer to a closed connection, so Fastify measures none: each is a 499 sample instead.
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="499"\} 4$/m, 'four samples with status_code 499')
  t.notMatch(observed(metrics), /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="(?!499)/m, 'none under the status the answers would have had')
})

t.test('answers waiting behind another on a pipelining connection are recorded as abandoned when the client leaves: a result, a 400 and a 404', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2' })
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  socket.on('error', () => {})
  const post = (task: string, id: string, body: string): string =>
    `POST ${task.startsWith('/') ? task : `/api/tasks/${task}`} HTTP/1.1\r\nhost: x\r\nx-request-id: ${id}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  // A runs for a second; B's call runs at once on the other worker, C is a bad body and D has no route: their answers wait behind A's.
  socket.write(post('diag.work', 'piped-a', '{"sleep_ms":1000}') + post('echo', 'piped-b', '{"b":1}') + post('echo', 'piped-c', '{"c":') + post('/nope', 'piped-d', '{}'))
  await waitFor(async () => (await server.app.metrics.counts()).calls.ok === 1, 5000, 'B\'s call to finish while A runs')
  await new Promise((resolve) => setTimeout(resolve, 100))
  socket.destroy()
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 0, 5000, 'A\'s call to end')
  const abandoned = (id: string): Array<Record<string, any>> => server.logs.filter((l) => l.requestId === id && l.msg === 'request abandoned: the client left before its answer')
  await waitFor(() => abandoned('piped-a').length === 1, 5000, 'A\'s line')
  t.same(['piped-a', 'piped-b', 'piped-c', 'piped-d'].map((id) => abandoned(id).length), [1, 1, 1, 1], 'one line for each')
  t.match(abandoned('piped-b')[0], { level: 30, task: 'echo', outcome: 'ok', err: undefined }, 'B: a result nobody received')
  t.match(abandoned('piped-c')[0], { level: 30, code: 'INVALID_INPUT', url: '/api/tasks/echo' }, 'C: the 400 nobody received')
  t.match(abandoned('piped-d')[0], { level: 30, code: 'FST_ERR_NOT_FOUND', url: '/nope' }, 'D: the 404 nobody received')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="499"\} 3$/m, 'three samples with status_code 499')
  t.notMatch(observed(metrics), /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="(?!499)/m, 'none under the status the answers would have had')
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="unmatched",status_code="499"\} 1$/m, 'D: a 499 too, as unmatched')
  t.notMatch(metrics, /route="unmatched",status_code="404"/, 'not the 404 nobody received')
})

t.test('a call that fails with a 5xx after its client left is logged as a warning, with the error its answer would have had', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  socket.on('error', () => {})
  const body = '{"sleep_ms":300,"exit":3}'
  socket.write(`POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the call to run')
  socket.destroy()
  const abandoned = (): Record<string, any> | undefined => server.logs.find((l) => l.msg === 'request abandoned: the client left before its answer')
  await waitFor(() => abandoned() !== undefined, 5000, 'the abandoned line')
  t.match(abandoned(), { level: 40, outcome: 'worker_died', task: 'diag.work', code: 'WORKER_DIED', err: { code: 'WORKER_DIED' }, remoteAddress: '127.0.0.1' })
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="499"\} 1$/m, 'a 499 sample, not the 502 nobody received')
  t.notMatch(observed(metrics), /status_code="502"/)
})

t.test('a client that stops reading its answer loses the connection after RESPONSE_STALL_TIMEOUT_MS; a slow reader does not', async (t) => {
  // 2 s: the slow reader below pauses 20 ms at a time, far from it, even on a busy machine.
  const server = await startServer(t, { POOL_SIZE: '1', RESPONSE_STALL_TIMEOUT_MS: '2000' })
  const body = JSON.stringify('x'.repeat(12_000_000)) // more than loopback's socket buffers hold
  const request = `POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  const { port } = new URL(server.url)
  const stalled = connect(Number(port), '127.0.0.1')
  t.teardown(() => stalled.destroy())
  stalled.on('error', () => {})
  stalled.pause() // never reads
  stalled.write(request)
  const connections = async (): Promise<number> => await new Promise((resolve) => { server.app.server.getConnections((_error, count) => { resolve(count) }) })
  await waitFor(async () => (await connections()) === 1 && (await server.app.metrics.counts()).calls.ok === 1, 60_000, 'the answer to be under way') // a 12 MB echo: a guard, not a timing
  await waitFor(async () => (await connections()) === 0, 10_000, 'the server to close the stalled connection')
  t.ok(server.logs.some((l) => /stopped reading its answer/.test(l.msg ?? '') && l.unsentBytes > 0 && typeof l.requestId === 'string' && l.remoteAddress === '127.0.0.1'), 'and says so, with the request\'s id')
  // Reset, not closed: a close left the server's end of it orphaned in FIN_WAIT1, the answer's
  // last ~4 MB in its send queue, for as long as the kernel went on offering them to a reader
  // that does not read (a review saw such a client get them, then a clean end, 99 s later).
  const serverSide = await serverEndOf(Number(port), stalled.localPort as number)
  t.same(serverSide, [], 'nothing left of the server\'s end in the kernel')
  let received = 0
  stalled.on('data', (chunk: Buffer) => { received += chunk.length })
  stalled.resume()
  await new Promise((resolve) => stalled.once('close', resolve))
  t.ok(received < body.length, `the stalled client got part of its answer (${received} bytes), then the connection closed`)
  // One that reads slowly, 64 KiB every 100 ms, makes progress and gets it all.
  const slow = connect(Number(port), '127.0.0.1')
  t.teardown(() => slow.destroy())
  let slowReceived = 0
  slow.on('data', (chunk: Buffer) => {
    slowReceived += chunk.length
    slow.pause()
    setTimeout(() => slow.resume(), 20)
  })
  slow.setNoDelay(true)
  slow.write(request.replace('HTTP/1.1\r\n', 'HTTP/1.1\r\nconnection: close\r\n'))
  await new Promise((resolve) => slow.once('close', resolve))
  t.ok(slowReceived > body.length, `the slow reader got the whole answer (${slowReceived} bytes)`)
  t.equal((await callTask(server.url, 'echo', 1)).status, 200)
})

t.test('a connection whose client has not read an answer the kernel holds whole is reset when its keep-alive timeout runs out, not left orphaned with it', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', KEEP_ALIVE_TIMEOUT_MS: '1000' })
  // 1 MB: the kernel's buffers take the whole answer, so to Node it is sent and the connection idle.
  const body = JSON.stringify('x'.repeat(1_000_000))
  const { port } = new URL(server.url)
  const unread = connect(Number(port), '127.0.0.1')
  t.teardown(() => unread.destroy())
  unread.on('error', () => {})
  unread.pause() // never reads
  unread.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  const connections = async (): Promise<number> => await new Promise((resolve) => { server.app.server.getConnections((_error, count) => { resolve(count) }) })
  await waitFor(async () => (await server.app.metrics.counts()).calls.ok === 1, 30_000, 'the answer to be written')
  await waitFor(async () => (await connections()) === 0, 10_000, 'the keep-alive timeout to end the connection')
  const line = server.logs.find((l) => /^resetting a connection whose client had not read the end of its last answer when its keep-alive timeout/.test(l.msg ?? ''))
  t.match(line, { level: 40, remoteAddress: '127.0.0.1', unsentBytes: Number }, 'a warning with the bytes the kernel held')
  t.ok(line?.unsentBytes > 0)
  // Closed plainly, the server's end stayed in FIN_WAIT1 with ~1 MB for minutes (a review saw 5.5).
  t.same(await serverEndOf(Number(port), unread.localPort as number), [], 'nothing left of the server\'s end in the kernel')
  // A client that read its answer is closed as before, without a line.
  const reader = await callTask(server.url, 'echo', { pad: 'x'.repeat(300_000) })
  t.equal(reader.status, 200)
  await waitFor(async () => (await connections()) === 0, 10_000, 'the reader\'s connection to time out too')
  t.equal(server.logs.filter((l) => /^resetting a connection/.test(l.msg ?? '')).length, 1, 'only the one that did not read')
})

t.test('a task that fails with a 64 KiB message from deep in its stack: its log line stays under the 16 KiB container runtimes split lines at', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  // ASCII, then characters UTF-8 writes in 3 bytes, then ones JSON escapes in 6 (\u0001): bytes, not characters, are bounded.
  for (const [i, char] of ['E', '日', '\u0001'].entries()) {
    const id = `loud-${i}`
    const reply = await callTask(server.url, 'extra.fail_loudly', { n: 64 * 1024, depth: 200, char }, { 'x-request-id': id })
    t.equal(reply.status, 500)
    t.equal(reply.json.code, 'TASK_FAILED')
    await waitFor(() => server.logs.some((line) => line.requestId === id && line.msg === 'request completed'), 5000, 'the request\'s line')
    const failed = server.logs.find((line) => line.requestId === id && line.level === 50)
    if (failed === undefined) throw new Error('no error line for the call')
    t.match(failed, { task: 'extra.fail_loudly', errorType: 'RuntimeError', msg: /^task extra\.fail_loudly failed: RuntimeError: / })
    t.ok(failed.msg.length < 1100, `the message cut to about 1 KiB (${failed.msg.length} characters)`)
    t.match(failed.traceback, /^Traceback \(most recent call last\):\n/, 'the traceback\'s head: where it began')
    t.match(failed.traceback, /\nRuntimeError: [^\n]*\.\.\.\n?$/, 'the exception\'s line, cut')
    const bytes = Buffer.byteLength(JSON.stringify(failed))
    t.ok(bytes < 16 * 1024, `the whole line under the 16 KiB container runtimes split at (${bytes} bytes of JSON)`)
  }
  // An exception class whose name is 10,000 characters long (type() makes any name): named, cut.
  const reply = await callTask(server.url, 'extra.fail_loudly', { n: 10, type_name: 'E'.repeat(10_000) }, { 'x-request-id': 'long-type' })
  t.equal(reply.status, 500)
  await waitFor(() => server.logs.some((line) => line.requestId === 'long-type' && line.msg === 'request completed'), 5000, 'the request\'s line')
  const failed = server.logs.find((line) => line.requestId === 'long-type' && line.level === 50)
  t.match(failed, { errorType: /^E{197}\.\.\.$/, msg: /^task extra\.fail_loudly failed: E{197}\.\.\.: EEEEEEEEEE$/ })
  t.ok(Buffer.byteLength(JSON.stringify(failed)) < 16 * 1024, 'the line under 16 KiB')
  // Everything at its longest at once, in characters JSON writes in six bytes (a review: 17 KB).
  const worst = 'a'.repeat(128)
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  t.equal((await callTask(server.url, 'extra.fail_loudly', { n: 1100, depth: 400, alternate: true, char: '\u0001', type_name: '\u0001'.repeat(300) }, { 'x-request-id': worst, traceparent })).status, 500)
  await waitFor(() => server.logs.some((line) => line.requestId === worst && line.msg === 'request completed'), 5000, 'the request\'s line')
  const worstLine = server.logs.find((line) => line.requestId === worst && line.level === 50)
  const bytes = Buffer.byteLength(JSON.stringify(worstLine))
  t.ok(bytes < 16 * 1024, `the line under 16 KiB with every field at its longest (${bytes} bytes)`)
})

t.test('a call past its timeout gets 504 at the deadline and its worker is replaced', async (t) => {
  const server = await startServer(t, { TASK_TIMEOUTS: 'diag.work=300' })
  const started = Date.now()
  const reply = await callTask(server.url, 'diag.work', { sleep_ms: 5000 })
  const elapsed = Date.now() - started
  t.equal(reply.status, 504)
  t.match(reply.json, { code: 'TASK_TIMEOUT', message: 'task diag.work ran past its timeout of 300 ms; its worker was stopped, and a replacement is being started' })
  t.ok(elapsed >= 300 && elapsed < 5000, `answered after ${elapsed} ms: at the 300 ms timeout, before the 5 s call would have ended`)
  await waitFor(() => server.app.pool.liveWorkers === 4, 10_000, 'four live workers')
  const stats = await (await fetch(`${server.url}/api/queue-stats`)).json()
  t.equal(stats.restarts.timeout, 1)
  t.equal(stats.tasks.timedOut, 1)
})

t.test('a call past its client\'s budget gets 504 at the budget, and its worker finishes the call instead of being killed', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const [pid] = workerPids(server)
  const started = Date.now()
  const reply = await callTask(server.url, 'diag.work', { sleep_ms: 3000, print: 'finished-anyway' }, { 'x-request-timeout-ms': '200' })
  const elapsed = Date.now() - started
  t.equal(reply.status, 504)
  t.match(reply.json, { code: 'TASK_TIMEOUT', message: /within the x-request-timeout-ms budget of 200 ms; its worker finishes the call/ })
  // Bounds far apart, for a loaded machine: at the budget, not at the call's end 3 s in.
  t.ok(elapsed >= 200 && elapsed < 3000, `answered after ${elapsed} ms, at the budget, before the call ends`)
  // The next call waits for the same worker, which finishes the first one and stays.
  const next = await callTask(server.url, 'diag.work', {})
  t.equal(next.status, 200)
  t.equal(next.json.pid, pid, 'the same worker')
  t.ok(server.logs.some((l) => l.msg === 'finished-anyway'), 'the abandoned call ran to its end')
  t.match(server.logs.find((l) => l.statusCode === 504), { code: 'TASK_TIMEOUT', budgetMs: 200 }, 'its request line says the budget was the client\'s')
  t.notOk('budgetMs' in (server.logs.filter((l) => l.statusCode === 200).at(-1) ?? { budgetMs: 0 }), 'a call without one has no budgetMs')
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.equal(stats.restarts.timeout, 0, 'no worker killed')
  t.equal(stats.tasks.timedOut, 1, 'counted once, as a timeout')
  t.equal(stats.tasks.completed, 1, 'and not again when its worker finished it: the one completed call is the next one')
})

t.test('a reply that arrived while the event loop was held past the client\'s budget answers the call: no 504 for a finished call', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  // Long enough to be seen running (polled every 20 ms), well within the budget.
  const reply = callTask(server.url, 'diag.work', { sleep_ms: 100 }, { 'x-request-timeout-ms': '400' })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the call to run')
  // The server runs in this process: held here (as another request's huge body would hold
  // it) past both the reply and the budget, after this turn's I/O, so that the next turn
  // runs the budget's timer before it reads the reply.
  await new Promise<void>((resolve) => setImmediate(() => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 800); resolve() }))
  const answer = await reply
  t.equal(answer.status, 200, 'the reply already there answers')
  t.same(answer.json.slept_ms, 100)
})

t.test('a reply that arrived while the event loop was held past a queued call\'s QUEUE_TIMEOUT_MS frees its worker for that call: no 503 for a call a worker was free for', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_TIMEOUT_MS: '300' })
  const first = callTask(server.url, 'diag.work', { sleep_ms: 100 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the first call to run')
  const queued = callTask(server.url, 'echo', { queued: true })
  await waitFor(() => server.app.pool.snapshot().queue.waiting === 1, 5000, 'the second call to wait')
  // Held past the first call's reply and the second's QUEUE_TIMEOUT_MS, after this turn's I/O (as above).
  await new Promise<void>((resolve) => setImmediate(() => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 800); resolve() }))
  t.equal((await first).status, 200)
  const answer = await queued
  t.equal(answer.status, 200, 'the worker the reply freed takes it')
  t.same(answer.json, { queued: true })
})

t.test('a queued call whose client\'s budget ran out while the event loop was held is not run, though the reply freed a worker for it: 503, the task never sees it', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const first = callTask(server.url, 'diag.work', { sleep_ms: 100 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the first call to run')
  const queued = callTask(server.url, 'echo', { queued: true }, { 'x-request-timeout-ms': '300' })
  await waitFor(() => server.app.pool.snapshot().queue.waiting === 1, 5000, 'the second call to wait')
  // As above: the freed worker is handed to the queued call, which finds its budget spent
  // on the way. QUEUE_TIMEOUT_MS is the server's to waive; the budget is its client's, who has
  // given up: running the call would spend a worker on an answer nobody reads.
  await new Promise<void>((resolve) => setImmediate(() => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 800); resolve() }))
  t.equal((await first).status, 200)
  const answer = await queued
  t.equal(answer.status, 503)
  t.match(answer.json, { code: 'QUEUE_TIMEOUT', message: /^no worker became free within 300 ms \(the x-request-timeout-ms budget/ })
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.equal(stats.workers[0].calls, 1, 'the worker ran the first call only')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^pyfleet_calls_limited_total\{task="echo",limit="client_budget_queued"\} 1$/m, 'ended by its client\'s budget, in the queue')
})

t.test('a task that fails after its client had its 504 (budget) is still logged, with its traceback', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const reply = await callTask(server.url, 'diag.work', { sleep_ms: 400, raise: 'boom-after-budget' }, { 'x-request-timeout-ms': '100' })
  t.equal(reply.status, 504)
  await waitFor(() => server.logs.some((l) => /^task diag.work failed \(after its client's x-request-timeout-ms budget ran out\): RuntimeError: boom-after-budget/.test(l.msg ?? '')), 5000, 'the failure in the log')
  const line = server.logs.find((l) => /boom-after-budget/.test(l.msg ?? '') && l.traceback !== undefined)
  t.match(line, { level: 50, task: 'diag.work', errorType: 'RuntimeError', traceback: /boom-after-budget/ })
  t.equal((await getJson(`${server.url}/api/queue-stats`)).tasks.timedOut, 1, 'counted once, as the timeout its client saw')
})

t.test('a hostile client with tiny budgets makes no worker restart; the task\'s own timeout still ends a runaway call', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', TASK_TIMEOUTS: 'diag.work=600' })
  const pids = workerPids(server).sort()
  const replies = await Promise.all(Array.from({ length: 40 }, async () => await callTask(server.url, 'diag.work', { cpu_ms: 5 }, { 'x-request-timeout-ms': '1' })))
  t.ok(replies.every((r) => r.status === 504 || r.status === 503 || r.status === 200), replies.map((r) => r.status).join(' '))
  t.equal((await getJson(`${server.url}/api/queue-stats`)).restarts.timeout, 0, 'no kills')
  t.same(workerPids(server).sort(), pids, 'the same workers')
  // Past its own timeout, a call whose client has long had its 504 is ended: the worker is replaced.
  const runaway = await callTask(server.url, 'diag.work', { sleep_ms: 5000 }, { 'x-request-timeout-ms': '50' })
  t.equal(runaway.status, 504)
  await waitFor(async () => (await getJson(`${server.url}/api/queue-stats`)).restarts.timeout === 1, 10_000, 'the runaway call to be killed at 600 ms')
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.equal(stats.tasks.timedOut, replies.filter((r) => r.status === 504).length + 1, 'each call counted once')
})

t.test('TASK_TIMEOUTS overrides a task\'s own timeout_ms, and names it in the task\'s description', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_TIMEOUTS: 'diag.work=300, diag.wrok=5' })
  const warning = server.logs.find((line) => /TASK_TIMEOUTS names tasks no worker declares/.test(line.msg ?? ''))
  t.same(warning?.unused, ['diag.wrok'], 'a timeout for a task that does not exist is reported')
  t.equal((await getJson(`${server.url}/api/tasks/diag.work`)).timeoutMs, 300, 'diag.work declares 30000')
  t.equal((await getJson(`${server.url}/api/tasks/echo`)).timeoutMs, 5000, 'other tasks keep their own')
  const reply = await callTask(server.url, 'diag.work', { sleep_ms: 5000 })
  t.equal(reply.status, 504)
  t.match(reply.json, { code: 'TASK_TIMEOUT', message: /300 ms/ })
})

t.test('50 concurrent calls over 4 workers all succeed', async (t) => {
  const server = await startServer(t)
  const replies = await Promise.all(Array.from({ length: 50 }, async (_, i) => await callTask(server.url, 'diag.work', { sleep_ms: 20 + (i % 5) })))
  t.same(replies.map((r) => r.status), Array(50).fill(200))
  const pids = new Set(replies.map((r) => r.json.pid))
  t.equal(pids.size, 4, 'all four workers took calls')
})

t.test('callers beyond QUEUE_LIMIT get 503 QUEUE_FULL with Retry-After', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_LIMIT: '2' })
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 600 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const queued = [callTask(server.url, 'echo', 1), callTask(server.url, 'echo', 2)]
  await waitFor(() => server.app.pool.waiting === 2, 5000, 'two waiting callers')
  const rejected = await callTask(server.url, 'echo', 3)
  t.equal(rejected.status, 503)
  t.equal(rejected.json.code, 'QUEUE_FULL')
  t.equal(rejected.headers.get('retry-after'), '1')
  t.match(rejected.headers.get('server-timing'), /^queue;dur=\d+\.\d{3}$/, 'the time it was in the queue, and no run: it never ran')
  // Load shedding is one line per refused request under overload: info, with its code.
  const line = server.logs.find((l) => l.msg === 'request completed' && l.requestId === rejected.headers.get('x-request-id'))
  t.match(line, { level: 30, statusCode: 503, code: 'QUEUE_FULL', outcome: 'queue_full' })
  t.same((await Promise.all(queued)).map((r) => r.status), [200, 200], 'the queued calls still run')
  t.equal((await busy).status, 200)
})

t.test('the queue\'s Retry-After follows the pace of recent calls: slow calls ahead, a longer wait', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_LIMIT: '1' })
  // One call of 1.5 s has run: the pool knows its pace.
  t.equal((await callTask(server.url, 'diag.work', { sleep_ms: 1500 })).status, 200)
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 1500 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 20_000, 'the worker to be busy')
  const queued = callTask(server.url, 'diag.work', { sleep_ms: 1 })
  await waitFor(() => server.app.pool.waiting === 1, 20_000, 'a caller waiting')
  const refused = await callTask(server.url, 'echo', 1)
  t.equal(refused.json.code, 'QUEUE_FULL')
  // The caller waiting and this one, 1.5 s or more each on the one worker: 3 s at least, not 1.
  const seconds = Number(refused.headers.get('retry-after'))
  t.ok(seconds >= 3 && seconds <= 60, `Retry-After ${seconds} s`)
  t.same([(await busy).status, (await queued).status], [200, 200])
})

t.test('QUEUE_LIMIT_BYTES bounds the input queued calls hold: a large body past it gets 503 QUEUE_FULL, a small one still waits', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_LIMIT_BYTES: '1000000' })
  // Busy until the test has seen what it came for, on a loaded machine too (the large bodies
  // go through the offload thread, which starts for them: fixed sleeps of 3 s, then 8 s, were
  // once not enough), then killed: the queued calls run on its replacement.
  const [pid] = workerPids(server)
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 120_000 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 20_000, 'the worker to be busy')
  const large = (n: number): string => JSON.stringify({ n, text: 'x'.repeat(600_000) })
  // Sent chunked, without a content-length: its size is what the parser read.
  const first = fetch(`${server.url}/api/tasks/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: new ReadableStream({ start (controller) { controller.enqueue(new TextEncoder().encode(large(1))); controller.close() } }),
    duplex: 'half'
  } as RequestInit).then((response) => response)
  await waitFor(() => server.app.pool.waiting === 1, 30_000, 'the first large call to wait')
  const { queue } = await getJson(`${server.url}/api/queue-stats`)
  t.match(queue, { waiting: 1, limit: 1000, bytes: large(1).length, limitBytes: 1_000_000 })
  t.match(await (await fetch(`${server.url}/metrics`)).text(), new RegExp(`\\npyfleet_queue_bytes ${large(1).length}\\n`), 'the gauge says the same')
  const refused = await callTask(server.url, 'echo', large(2))
  t.equal(refused.status, 503)
  t.equal(refused.json.code, 'QUEUE_FULL')
  t.equal(refused.json.message, `the caller already waiting holds ${large(1).length} bytes of input, and this call's ${large(2).length} would take the queue past QUEUE_LIMIT_BYTES=1000000; retry later`)
  // No call has finished yet: the busy one's time on its worker so far sets the pace (retry-after.ts).
  t.match(refused.headers.get('retry-after'), /^([1-9]|[1-5]\d|60)$/)
  const small = callTask(server.url, 'echo', { small: true })
  await waitFor(() => server.app.pool.waiting === 2, 30_000, 'the small call to wait too')
  process.kill(pid, 'SIGKILL')
  t.same([(await first).status, (await small).json, (await busy).status], [200, { small: true }, 502])
  t.equal((await first).headers.get('content-type'), 'application/json; charset=utf-8')
  t.equal((await getJson(`${server.url}/api/queue-stats`)).queue.bytes, 0, 'every byte given back')
})

t.test('a call whose budget runs out in the queue is never run: 503 QUEUE_TIMEOUT', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 800 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const reply = await callTask(server.url, 'diag.work', { print: 'must-not-run' }, { 'x-request-timeout-ms': '100' })
  t.equal(reply.status, 503)
  t.equal(reply.json.code, 'QUEUE_TIMEOUT')
  t.ok(reply.headers.get('retry-after'))
  await busy
  t.notOk(server.logs.some((l) => l.msg === 'must-not-run'), 'the queued call was not dispatched')
})

t.test('SHED_LATE_CALLS: a queued call whose budget has less left than the task\'s fastest recent calls took is not run: 503 QUEUE_TIMEOUT, the worker left to the next', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', SHED_LATE_CALLS: '1' })
  // The task's pace: calls of 2 s (the fastest recent call sets it: the busy one is as slow).
  t.equal((await callTask(server.url, 'diag.work', { sleep_ms: 2000 })).status, 200)
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 2000 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 20_000, 'the worker to be busy')
  // 3.2 s of budget, ~2 s spent waiting: ~1.2 s left for a task whose calls take 2 s.
  const late = callTask(server.url, 'diag.work', { sleep_ms: 2000, print: 'must-not-run' }, { 'x-request-timeout-ms': '3200' })
  await waitFor(() => server.app.pool.waiting === 1, 20_000, 'the call to wait')
  const behind = callTask(server.url, 'diag.work', { sleep_ms: 1 }, { 'x-request-timeout-ms': '60000' })
  const reply = await late
  t.equal(reply.status, 503)
  t.equal(reply.json.code, 'QUEUE_TIMEOUT')
  t.match(reply.json.message, /^the x-request-timeout-ms budget of 3200 ms had \d+ ms left when a worker became free, less than diag\.work's recent calls took \(\d+ ms at the fastest\): not started; retry later$/)
  t.same([(await busy).status, (await behind).status], [200, 200], 'the call behind it, with budget enough, ran')
  t.notOk(server.logs.some((l) => l.msg === 'must-not-run'), 'the late call never reached a worker')
})

t.test('QUEUE_TIMEOUT_MS bounds the wait without a client budget', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_TIMEOUT_MS: '150' })
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 700 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const reply = await callTask(server.url, 'echo', 1)
  t.equal(reply.status, 503)
  t.equal(reply.json.code, 'QUEUE_TIMEOUT')
  await busy
})

t.test('a bad x-request-timeout-ms is a 400', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  for (const value of ['soon', '0', '-5', '1.5', '1e3', '0x10']) {
    const reply = await callTask(server.url, 'echo', 1, { 'x-request-timeout-ms': value })
    t.equal(reply.status, 400, value)
    t.equal(reply.json.code, 'INVALID_INPUT')
    t.match(reply.json.message, /x-request-timeout-ms must be a whole number of milliseconds, at least 1/)
    t.notMatch(reply.json.message, /more than once/)
  }
  // Sent twice: Node joins the two with ", ", which is no number either; the message says why.
  const twice = await rawExchange(server.url, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-request-timeout-ms: 100\r\nx-request-timeout-ms: 200\r\ncontent-length: 1\r\nconnection: close\r\n\r\n1')
  t.match(twice, /^HTTP\/1\.1 400 [\s\S]*"message":"x-request-timeout-ms must be a whole number of milliseconds, at least 1 \(a larger one than the task's timeout is capped by it\) \(it was sent more than once: 100, 200; send one\)"/)
  // Past any timer's range: capped by the task's timeout like any long budget, not refused.
  for (const value of ['2147483648', '99999999999', '9'.repeat(400)]) {
    t.same(await callTask(server.url, 'echo', { value: value.length }, { 'x-request-timeout-ms': value }).then((r) => [r.status, r.json]), [200, { value: value.length }], value.slice(0, 20))
  }
})

t.test('a budget longer than the task\'s timeout: the call may wait past that timeout in the queue, and then runs', async (t) => {
  // extra.quick declares 300 ms. The budget (5 s) bounds the wait; the task's timeout bounds the run.
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  // Busy for 3 s: the quick call queues behind it for far longer than its 300 ms timeout.
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 3000 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const reply = await callTask(server.url, 'extra.quick', { waited: true }, { 'x-request-timeout-ms': '5000' })
  t.equal(reply.status, 200)
  t.same(reply.json, { waited: true })
  const queueMs = Number(/queue;dur=([\d.]+)/.exec(reply.headers.get('server-timing') ?? '')?.[1])
  t.ok(queueMs > 300, `it waited ${queueMs} ms, longer than the task's 300 ms timeout`)
  await busy
})

t.test('a result over MAX_FRAME_BYTES is a 500 RESULT_TOO_LARGE, and the worker stays', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES, BODY_LIMIT_BYTES: '1024', MAX_FRAME_BYTES: '4096' })
  const [pid] = workerPids(server)
  const reply = await callTask(server.url, 'extra.big', { n: 10_000 })
  t.equal(reply.status, 500)
  t.equal(reply.json.code, 'RESULT_TOO_LARGE')
  const logged = server.logs.find((l) => /^task extra\.big's answer is too large: /.test(l.msg ?? ''))
  t.match(logged, { level: 40, task: 'extra.big', requestId: reply.headers.get('x-request-id') }, 'the log says why, under the request id')
  t.equal((await callTask(server.url, 'extra.big', { n: 10 })).json, 'x'.repeat(10))
  t.same(workerPids(server), [pid], 'the same worker answered')
})

t.test('without DIAG_TASKS, diag.work does not exist, and its 404 says how to turn it on', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', DIAG_TASKS: '0' })
  const { tasks } = await (await fetch(`${server.url}/api/tasks`)).json() as { tasks: Array<{ name: string }> }
  t.notOk(tasks.some((task) => task.name === 'diag.work'))
  const reply = await callTask(server.url, 'diag.work', { exit: 1 })
  t.match([reply.status, reply.json], [404, { code: 'TASK_NOT_FOUND', message: 'there is no task named "diag.work" (the diag.* tasks are registered only with DIAG_TASKS=1); GET /api/tasks lists them' }])
  t.notMatch((await callTask(server.url, 'echo2', {})).json.message, /DIAG_TASKS/, 'other names get no such hint')
  t.equal((await callTask(server.url, 'stats.descibe', {})).json.message, 'there is no task named "stats.descibe" (did you mean "stats.describe"?); GET /api/tasks lists them', 'a typo of a served name is named')
  t.equal((await callTask(server.url, 'shop.quote', {})).json.message, 'there is no task named "shop.quote" (only the built-in tasks are served: name the modules of your own in TASK_MODULES); GET /api/tasks lists them', 'with no TASK_MODULES, it says where tasks of one\'s own come from')
})

t.test('a client that disconnects while queued frees its place and its call never runs', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 500 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const controller = new AbortController()
  const abandoned = callTask(server.url, 'diag.work', { print: 'abandoned-call-ran' }).catch(() => 'aborted')
  void abandoned
  const gone = fetch(`${server.url}/api/tasks/diag.work`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ print: 'cancelled-call-ran' }), signal: controller.signal
  }).catch(() => 'aborted')
  await waitFor(() => server.app.pool.waiting === 2, 5000, 'two waiting callers')
  controller.abort()
  t.equal(await gone, 'aborted')
  await waitFor(() => server.app.pool.waiting === 1, 5000, 'the aborted caller to leave the queue')
  await busy
  await abandoned
  await waitFor(() => server.logs.some((l) => l.msg === 'abandoned-call-ran'), 5000, 'the other queued call to run')
  t.notOk(server.logs.some((l) => l.msg === 'cancelled-call-ran'), 'the cancelled call never ran')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /pyworker_calls_total\{task="diag.work",outcome="cancelled"\} 1/)
})

t.test('after the server closes, none of its Python processes is left', async (t) => {
  const server = await startServer(t)
  const pids = workerPids(server)
  t.equal(pids.length, 4)
  for (const pid of pids) t.ok(await isRunning(pid), `worker ${pid} runs`)
  await server.close()
  for (const pid of pids) t.notOk(await isRunning(pid), `worker ${pid} is gone`)
})

t.test('a client whose connection resets mid-body is logged and measured as abandoned (499), whatever the body\'s size', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const port = Number(new URL(server.url).port)
  // 100 bytes: read straight from the request; 100,000: through RECEIVE_LIMIT_BYTES's count.
  for (const declared of [100, 100_000]) {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${declared}\r\n\r\n{"a": `)
    // The headers are parsed and the body begun before the reset.
    await waitFor(() => server.app.receiving.bytes > 0 || declared === 100, 5000, 'the body to start arriving')
    await new Promise((resolve) => setTimeout(resolve, 100))
    socket.resetAndDestroy()
  }
  const abandoned = (): Array<Record<string, any>> => server.logs.filter((l) => l.msg === 'request abandoned: the client left before its answer')
  await waitFor(() => abandoned().length === 2, 5000, 'a line for each')
  for (const line of abandoned()) t.match(line, { level: 30, url: '/api/tasks/echo', remoteAddress: '127.0.0.1', reason: String, err: undefined }, 'info: the client\'s doing, with what ended the body and no stack (a 4xx)')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="499"\} 2$/m, 'two 499 samples')
  t.notMatch(observed(metrics), /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="(?!499)/m, 'and none under the 400 nobody received')
  t.equal(server.app.receiving.bytes, 0, 'nothing left counted as being received')
  const { calls } = await server.app.metrics.counts()
  t.equal(Object.values(calls).reduce((a, b) => a + b, 0), 0, 'neither became a call')
})

t.test('a body the server cuts off itself (the client half-closed mid-body: 400; too slow: 408; broken chunks: 400) is answered and recorded as its request, not taken for one its client abandoned', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', REQUEST_BODY_TIMEOUT_MS: '1000' })
  const port = Number(new URL(server.url).port)
  const answers: string[] = []
  for (const [declared, end, id] of [[100_000, true, 'cut-1'], [100, true, 'cut-2'], [100_000, false, 'late-1']] as const) {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    let answer = ''
    socket.setEncoding('utf8').on('data', (text: string) => { answer += text })
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\nx-request-id: ${id}\r\ncontent-type: application/json\r\ncontent-length: ${declared}\r\n\r\n{"a": `)
    await new Promise((resolve) => setTimeout(resolve, 100))
    // end: the client sends FIN with its body half sent; otherwise it waits for REQUEST_BODY_TIMEOUT_MS.
    if (end) socket.end()
    await new Promise((resolve) => socket.once('close', resolve))
    const [status, ...headers] = answer.split('\r\n\r\n')[0].split('\r\n')
    answers.push(`${status} ${String(headers.find((h) => h.startsWith('x-request-id:')))}`)
  }
  t.same(answers, [
    'HTTP/1.1 400 Bad Request x-request-id: cut-1',
    'HTTP/1.1 400 Bad Request x-request-id: cut-2',
    'HTTP/1.1 408 Request Timeout x-request-id: late-1'
  ], 'each got an answer, with the request id its client gave (SPEC §1)')
  // A body whose chunked framing is broken: also answered as its request.
  const badChunk = await rawExchange(server.url, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\nx-request-id: bad-chunk\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{"a\r\nZZ\r\n')
  t.match(badChunk, /^HTTP\/1\.1 400 Bad Request\r\n[^]*x-request-id: bad-chunk\r\n[^]*"code":"HPE_INVALID_CHUNK_SIZE"[^]*its chunked framing/, 'a 400 saying the body\'s framing is broken')
  t.match(badChunk, /\r\ndate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n/, 'with a Date, as every answer has')
  // Give the cut-off bodies' errors time to reach the error handler.
  await new Promise((resolve) => setTimeout(resolve, 300))
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="400"\} 3$/m, 'the 400s, under the route the requests were for')
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="408"\} 1$/m, 'the 408')
  t.notMatch(metrics, /route="unmatched"/, 'not as bytes nobody parsed')
  t.notMatch(observed(metrics), /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="(?!400|408)/m, 'and no other sample for them')
  t.notMatch(observed(metrics), /status_code="499"/, 'no request counted as abandoned: each was answered')
  t.equal(server.logs.filter((l) => l.msg === 'request abandoned: the client left before its answer').length, 0, 'and none logged so')
  const lines = (id: string): Array<Record<string, any>> => server.logs.filter((l) => l.requestId === id)
  t.same([lines('cut-1').length, lines('cut-2').length, lines('late-1').length, lines('bad-chunk').length], [1, 1, 1, 1], 'one line each')
  t.match(lines('bad-chunk')[0], { msg: 'request body not parsed', method: 'POST', statusCode: 400, code: 'HPE_INVALID_CHUNK_SIZE' })
  t.match(lines('cut-1')[0], { msg: 'request cut short', level: 30, method: 'POST', url: '/api/tasks/echo', statusCode: 400, code: 'HPE_INVALID_EOF_STATE', remoteAddress: '127.0.0.1' }, 'with the request\'s method and URL')
  t.match(lines('late-1')[0], { msg: 'request not received in time', level: 30, method: 'POST', url: '/api/tasks/echo', statusCode: 408, code: 'ERR_HTTP_REQUEST_TIMEOUT' })
  // A client speaking HTTP/2 without asking (prior knowledge) is told so.
  const h2 = await rawExchange(server.url, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
  t.match(h2, /^HTTP\/1\.1 400 [^]*"code":"HPE_PAUSED_H2_UPGRADE"[^]*HTTP\/2 is not served here: send HTTP\/1\.1/)
})

t.test('a request answered before its body, whose body then breaks HTTP in the same packet, gets that one answer: no 400 after a connection: close', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const cases: Array<[string, RegExp]> = [
    // Refused from its headers (an unsupported transfer coding), with no body behind them that Node can frame.
    ['POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n', /^HTTP\/1\.1 501 /],
    // An unknown task, an unknown route, a compressed body: each answered at its headers; then a chunk size that is no number.
    ['POST /api/tasks/nope HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n', /^HTTP\/1\.1 404 /],
    ['POST /nothing HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n', /^HTTP\/1\.1 404 /],
    ['POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n', /^HTTP\/1\.1 415 /],
    // A GET with a body closes its connection after its answer, which these routes give later: the
    // broken body comes first, and its 400 is the one answer (it was none at all for a while).
    ['GET /metrics HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n', /^HTTP\/1\.1 (200|400) /],
    ['GET /api/tasks/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n', /^HTTP\/1\.1 (200|400) /],
    ['HEAD /api/queue-stats HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n', /^HTTP\/1\.1 (200|400) /]
  ]
  for (const [bytes, first] of cases) {
    const answer = await rawExchange(server.url, bytes)
    t.match(answer, first, bytes.split('\r\n')[0])
    t.match(answer, /\r\nconnection: close\r\n/i, 'saying the connection closes')
    t.equal(answer.split('HTTP/1.1 ').length - 1, 1, 'and nothing after it')
  }
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.notMatch(metrics, /route="unmatched",status_code="400"/, 'no second record of them as bytes nobody parsed')
  for (const route of ['/metrics', '/api/tasks/:name', '/api/queue-stats']) {
    const counts = [...metrics.matchAll(new RegExp(`^http_request_duration_seconds_count\\{method="(GET|HEAD)",route="${route}",status_code="\\d+"\\} (\\d+)$`, 'gm'))]
    t.equal(counts.reduce((sum, m) => sum + Number(m[2]), 0), 1, `the ${route} request is recorded once`)
  }
})

t.test('a task reads the time its call has left: its own timeout, or the client\'s budget when that ends first', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'deadline_tasks', PYTHONPATH: FIXTURES })
  const own = await callTask(server.url, 'deadline.left', {})
  t.equal(own.status, 200)
  t.ok(own.json.left > 0.8 && own.json.left <= 5, `from the task's timeout_ms of 5 s: ${own.json.left}`)
  t.equal(own.json.in_thread, null, 'not in a thread the task started (as request_id())')
  const budgeted = await callTask(server.url, 'deadline.left', {}, { 'x-request-timeout-ms': '800' })
  t.equal(budgeted.status, 200)
  t.ok(budgeted.json.left >= 0 && budgeted.json.left <= 0.8, `from the client's budget of 800 ms: ${budgeted.json.left}`)
})

t.test('a bug that throws inside the pool after a call ran answers that call 500 and the server serves on', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const metrics = server.app.metrics as unknown as { callEnded: (...args: unknown[]) => void }
  const callEnded = metrics.callEnded
  // As a bug in an observer would: runCall promises never to throw, and this makes it.
  metrics.callEnded = () => { metrics.callEnded = callEnded; throw new Error('observer bug') }
  // A second call waits for the one worker: the first's run gave the worker back before the
  // throw, so it is the second's by then, and the recovery must leave it to it.
  const [reply, queued] = await Promise.all([callTask(server.url, 'echo', { n: 1 }), callTask(server.url, 'echo', { n: 2 })])
  t.equal(reply.status, 500)
  t.equal(reply.json.code, 'INTERNAL_ERROR', 'an answer, not a request left hanging')
  t.match(reply.json.message, /^internal server error; the server log has the details/, 'a bug\'s own words stay in the log')
  t.notMatch(JSON.stringify(reply.json), /observer bug/)
  t.ok(server.logs.some((line) => line.level === 50 && line.msg === 'unexpected error' && line.requestId === reply.headers.get('x-request-id') && line.err?.message === 'observer bug'),
    'and the answer\'s own line, under its x-request-id, as the message promises')
  t.ok(server.logs.some((line) => line.level === 50 && /a call failed inside the pool: a bug in pyfleet/.test(line.msg) && line.err?.message === 'observer bug'), 'logged with its stack')
  t.equal(queued.status, 200, 'the call waiting for the worker ran on it')
  t.same(queued.json, { n: 2 })
  t.equal((await callTask(server.url, 'echo', { n: 3 })).status, 200, 'the worker was given back, and the process lives')
  t.equal(server.logs.filter((line) => line.msg === 'replacing worker').length, 0, 'and it was not replaced: it had done nothing wrong')
  t.match(server.app.pool.snapshot().pool, { borrowed: 0, available: 1 })
})

t.test('a bug that throws before a call gave its worker back loses no worker: the dead one is replaced, the call\'s task limit freed', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_TIMEOUT_MS: '5000', TASK_CONCURRENCY: 'diag.work=1' })
  const metrics = server.app.metrics as unknown as { workerRestarted: (...args: unknown[]) => void }
  const workerRestarted = metrics.workerRestarted
  // Thrown while the call's run removes the worker that died under it, before it is destroyed.
  metrics.workerRestarted = () => { metrics.workerRestarted = workerRestarted; throw new Error('observer bug') }
  const before = workerPids(server)
  const died = await callTask(server.url, 'diag.work', { exit: 3 })
  t.equal(died.status, 500, 'answered, as the bug\'s 500: the throw came before its 502')
  t.equal(died.json.code, 'INTERNAL_ERROR')
  t.notMatch(JSON.stringify(died.json), /observer bug/, 'the bug\'s own words stay in the log')
  t.ok(server.logs.some((line) => line.level === 50 && /a call failed inside the pool: a bug in pyfleet/.test(line.msg) && line.err?.message === 'observer bug'), 'the bug is logged')
  // Kept borrowed, the dead worker was the pool's only slot: every later call waited out QUEUE_TIMEOUT_MS.
  const next = await callTask(server.url, 'diag.work', {})
  t.equal(next.status, 200, 'a new worker serves, and diag.work may run again (TASK_CONCURRENCY=1)')
  t.not(workerPids(server)[0], before[0], 'a new worker')
  t.match(server.app.pool.snapshot().pool, { borrowed: 0, available: 1 })
})

t.test('at a limit on processes and threads (a container\'s --pids-limit), a worker that cannot be replaced and an offload thread that cannot start say which limit, large bodies are converted on the event loop; raised, the pool is whole again', async (t) => {
  const cgroup = await makePidsCgroup('pyfleet-pids-test', 'max')
  if (cgroup === undefined) {
    t.pass('a real pids limit', { skip: 'no pids cgroup to make (needs root and a writable cgroup file system)' })
    return
  }
  const server = await startServerProcess(t)
  t.teardown(async () => {
    server.child.kill('SIGKILL')
    await server.exited
    await cgroup.remove()
  })
  const pid = server.child.pid as number
  const workers = await childPythonPids(pid)
  t.equal(workers.length, 4)
  // Node alone (every thread of it): its workers stay where they are, and what it starts from now on is counted here.
  await cgroup.add(pid)
  const nodeThreads = Number(await readFile(`${cgroup.path}/pids.current`, 'utf8'))
  await writeFile(`${cgroup.path}/pids.max`, String(nodeThreads)) // room for nothing more

  // A body past OFFLOAD_MIN_BYTES needs the offload thread, which has not started yet: it is
  // converted on the event loop instead (its answer too), rather than lost.
  const large = Array.from({ length: 60_000 }, (_, i) => i)
  const atLimit = await callTask(server.url, 'echo', large)
  t.equal(atLimit.status, 200, 'the large body is answered all the same')
  t.same(atLimit.json, large)
  const advice = 'the limit on processes and threads is reached (a container\'s --pids-limit, a cgroup\'s pids.max, ulimit -u) or memory is short: raise the limit (pyfleet needs up to 12 + 2 x POOL_SIZE'
  await waitFor(() => server.output().includes(`the offload thread could not be started: EAGAIN: ${advice}`), 5_000, 'the log to say which limit, not a bare EAGAIN')
  t.match(server.output(), /Large bodies and answers are converted on the event loop until it can be/)

  process.kill(workers[0], 'SIGKILL')
  await waitFor(() => /could not be started: spawn \S+ EAGAIN: the limit on processes and threads/.test(server.output()), 10_000, 'the replacement\'s failed start, saying which limit too')
  t.equal((await callTask(server.url, 'echo', { still: 'served' })).status, 200, 'the three workers left serve on')

  await writeFile(`${cgroup.path}/pids.max`, 'max')
  await waitFor(async () => (await getJson(`${server.url}/api/queue-stats`)).workers.filter((worker: { state: string }) => worker.state === 'idle').length === 4, 15_000, 'four idle workers again (the replacement retried)')
  const answered = await callTask(server.url, 'echo', large)
  t.equal(answered.status, 200)
  t.same(answered.json, large)
  t.match(server.output(), /the offload thread started again: large bodies and answers are converted on it again/, 'the offload thread starts once there is room')
})
