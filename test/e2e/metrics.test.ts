// /metrics and /api/queue-stats after a scripted mix of calls: the counters
// equal exactly what the test caused, the exposition passes promtool, labels
// stay bounded, and worker output lands in the logs with its request id.

import { connect } from 'node:net'
import { get, type IncomingHttpHeaders } from 'node:http'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { rawExchange } from '../helpers/raw-http.js'
import { hasPromtool, promtool } from '../helpers/promtool.js'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FIXTURES, ROOT, callTask, getJson, startServer, waitFor } from '../helpers/server.js'

function sample (text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`) || (labels === '' && l.startsWith(`${name} `)))
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1))
}

t.test('counters match a scripted mix of outcomes', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', QUEUE_LIMIT: '1', TASK_TIMEOUTS: 'diag.work=1000', MAX_CONNECTIONS: '500' })
  const { url } = server
  t.equal((await callTask(url, 'echo', { n: 1 })).status, 200)
  t.equal((await callTask(url, 'echo', { n: 2 })).status, 200)
  t.equal((await callTask(url, 'diag.work', { reject: 'no' })).status, 422)
  t.equal((await callTask(url, 'diag.work', { raise: 'boom' })).status, 500)
  t.equal((await callTask(url, 'diag.work', { sleep_ms: 3000 })).status, 504)
  t.equal((await callTask(url, 'diag.work', { exit: 1 })).status, 502)
  // Not calls: a 404 and a 400 never count.
  t.equal((await callTask(url, 'nope', {})).status, 404)
  t.equal((await callTask(url, 'diag.work', { sleep_ms: -1 })).status, 400)
  await waitFor(() => server.app.pool.liveWorkers === 2, 10_000, 'both workers back')
  // Queue full: two busy workers, one waiting caller, then one too many.
  const busy = [callTask(url, 'diag.work', { sleep_ms: 400 }), callTask(url, 'diag.work', { sleep_ms: 400 })]
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 2, 5000, 'both workers busy')
  const waiting = callTask(url, 'echo', { n: 3 })
  await waitFor(() => server.app.pool.waiting === 1, 5000, 'one waiting caller')
  t.equal((await callTask(url, 'echo', { n: 4 })).status, 503)
  await Promise.all([...busy, waiting])

  const text = await (await fetch(`${url}/metrics`)).text()
  // Exactly what the traffic above caused; the cancelled series exists at 0 (every outcome is declared).
  const expected: Array<[string, string, number]> = [
    ['pyworker_calls_total', 'task="echo",outcome="ok"', 3],
    ['pyworker_calls_total', 'task="echo",outcome="queue_full"', 1],
    ['pyworker_calls_total', 'task="diag.work",outcome="ok"', 2],
    ['pyworker_calls_total', 'task="diag.work",outcome="rejected"', 1],
    ['pyworker_calls_total', 'task="diag.work",outcome="failed"', 1],
    ['pyworker_calls_total', 'task="diag.work",outcome="timeout"', 1],
    ['pyworker_calls_total', 'task="diag.work",outcome="worker_died"', 1],
    ['pyworker_calls_total', 'task="diag.work",outcome="cancelled"', 0],
    // The limits that ended calls: the queue's, and the task's own timeout.
    ['pyfleet_calls_limited_total', 'task="echo",limit="queue_limit"', 1],
    ['pyfleet_calls_limited_total', 'task="diag.work",limit="task_timeout"', 1],
    ['pyfleet_calls_limited_total', 'task="diag.work",limit="client_budget_running"', 0],
    ['pyworker_worker_restarts_total', 'reason="timeout"', 1],
    ['pyworker_worker_restarts_total', 'reason="crash"', 1],
    ['pyworker_worker_restarts_total', 'reason="reload"', 0],
    ['pyworker_pool_workers', 'state="idle"', 2],
    ['pyworker_pool_workers', 'state="starting"', 0],
    ['pyworker_queue_waiting', '', 0],
    ['pyfleet_queue_bytes', '', 0],
    ['pyfleet_receiving_bytes', '', 0],
    ['pyfleet_receive_refused_total', '', 0],
    ['pyfleet_worker_stderr_dropped_lines_total', '', 0],
    ['pyfleet_http_connections_dropped_total', '', 0],
    ['pyfleet_log_dropped_lines_total', '', 0],
    // MAX_CONNECTIONS, which this process's open-file limit has room for.
    ['pyfleet_http_connections_max', '', 500]
  ]
  for (const [name, labels, value] of expected) t.equal(sample(text, name, labels), value, `${name}{${labels}}`)
  t.ok(sample(text, 'pyworker_worker_rss_bytes', 'worker="1"') > 1_000_000)
  t.equal(sample(text, 'pyworker_call_duration_seconds_count', 'task="echo",outcome="ok"'), 3)
  t.notOk(text.includes('task="nope"'), 'unknown task names never become labels')
  // Which code the replica runs.
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  t.match(text, new RegExp(`^pyfleet_build_info\\{version="${version.replaceAll('.', '\\.')}",python="3\\.\\d+\\.\\d+[^"]*"\\} 1$`, 'm'))
  t.match(text, /^pyfleet_workers_unlike_task_table 0$/m)

  const asked = Date.now() / 1000
  const stats = await getJson(`${url}/api/queue-stats`)
  const answered = Date.now() / 1000
  t.match(stats, {
    pool: { size: 2, min: 2, max: 2, available: 2, borrowed: 0, pending: 0 },
    queue: { waiting: 0, limit: 1, rejected: 1 },
    receiving: { bytes: 0, limitBytes: 64 * 1024 * 1024, refused: 0 },
    tasks: { completed: 5, failed: 2, timedOut: 1, workerDied: 1 },
    restarts: { crash: 1, timeout: 1, maxCalls: 0, maxRss: 0, protocol: 0, reload: 0 },
    uptimeSeconds: Number
  })
  t.equal(stats.workers.length, 2)
  // The process's uptime, as process_start_time_seconds says, not the stats route's.
  const started = sample(await (await fetch(`${url}/metrics`)).text(), 'process_start_time_seconds', '')
  // Between the request and its answer, give or take process_start_time_seconds' rounding.
  t.ok(stats.uptimeSeconds >= asked - started - 1 && stats.uptimeSeconds <= answered - started + 1, `uptimeSeconds ${stats.uptimeSeconds}, asked ${asked - started} s and answered ${answered - started} s after process_start_time_seconds`)
  t.match(stats.workers[0], { id: 1, pid: Number, state: 'idle', calls: Number, rssBytes: Number, startedAt: String, task: null })
})

t.test('scrapes pipelined on one connection share one rendering, and each gets the whole text', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const registry = server.app.metrics.registry
  const render = registry.metrics.bind(registry)
  let renders = 0
  registry.metrics = async () => { renders++; return await render() }
  const scrape = 'GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n'
  const answers = await rawExchange(server.url, scrape.repeat(199) + scrape.replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n'))
  t.equal(answers.split('HTTP/1.1 200 OK').length - 1, 200, 'every scrape answered')
  t.equal(answers.split('\n# TYPE pyworker_calls_total counter\n').length - 1, 200, 'each with the whole text')
  // A client that pipelines 1,000 scrapes and reads none no longer costs 1,000 renderings of ~4 ms and 1,000 copies.
  t.ok(renders < 20, `${renders} renderings for 200 scrapes`)
})

t.test('a scrape that comes while another renders is not given that rendering\'s counts, read before it came', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const registry = server.app.metrics.registry
  const render = registry.metrics.bind(registry)
  let release!: () => void
  const held = new Promise<void>((resolve) => { release = resolve })
  let renders = 0
  // As prom-client does when a collect callback awaits: the values are read, then the rendering waits.
  registry.metrics = async () => { const text = await render(); if (++renders === 1) await held; return text }
  const okCalls = (text: string): number => Number(/\npyworker_calls_total\{task="echo",outcome="ok"\} (\d+)/.exec(text)?.[1] ?? 0)
  const first = fetch(`${server.url}/metrics`).then(async (r) => await r.text())
  await waitFor(() => renders === 1, 5000, 'the first scrape\'s values to be read')
  t.equal((await callTask(server.url, 'echo', { n: 1 })).status, 200)
  const second = fetch(`${server.url}/metrics`).then(async (r) => await r.text())
  await new Promise((resolve) => setTimeout(resolve, 50))
  release()
  t.equal(okCalls(await second), okCalls(await first) + 1, 'the second scrape counts the call answered before it was made')
})

/** GET /metrics with raw bytes and headers, as fetch would decompress them out of sight. */
async function scrapeWith (url: string, acceptEncoding?: string): Promise<{ headers: IncomingHttpHeaders, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    const headers = acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding }
    get(`${url}/metrics`, { headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    }).on('error', reject)
  })
}

t.test('a scrape that accepts gzip, as Prometheus does, gets the same text gzipped; others get it as it is', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  t.equal((await callTask(server.url, 'echo', { n: 1 })).status, 200)
  const zipped = await scrapeWith(server.url, 'gzip')
  t.equal(zipped.headers['content-encoding'], 'gzip')
  t.equal(zipped.headers.vary, 'accept-encoding', 'a cache in front keeps the two apart')
  t.equal(Number(zipped.headers['content-length']), zipped.body.length)
  const text = gunzipSync(zipped.body).toString()
  t.match(text, /\npyworker_calls_total\{task="echo",outcome="ok"\} 1\n/)
  t.ok(zipped.body.length * 4 < text.length, `${zipped.body.length} bytes gzipped for ${text.length}`)
  for (const acceptEncoding of [undefined, 'identity', 'br', 'gzip;q=0, identity']) {
    const plain = await scrapeWith(server.url, acceptEncoding)
    t.equal(plain.headers['content-encoding'], undefined, String(acceptEncoding))
    t.equal(plain.headers.vary, 'accept-encoding')
    t.match(plain.body.toString(), /^# HELP /, 'the text itself')
  }
  if (await hasPromtool(t)) await promtool(t, ['check', 'metrics'], text)
})

t.test('the exposition passes promtool check metrics after real traffic', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2' })
  await callTask(server.url, 'echo', { x: 1 })
  await callTask(server.url, 'diag.work', { reject: 'r' })
  await fetch(`${server.url}/no/such/route`)
  const text = await (await fetch(`${server.url}/metrics`)).text()
  if (await hasPromtool(t)) await promtool(t, ['check', 'metrics'], text)
  t.notMatch(text, /^nodejs_active_handles_total/m, 'gauges named like counters are left out')
})

t.test("the task route's series for its statuses exist from the start, at 0: a replica's first burst of 499s or 5xx is seen by increase()", async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const text = await (await fetch(`${server.url}/metrics`)).text()
  for (const status of [200, 400, 404, 413, 415, 422, 499, 500, 502, 503, 504]) {
    const labels = `method="POST",route="/api/tasks/:name",status_code="${status}"`
    t.equal(sample(text, 'http_request_duration_seconds_count', labels), 0, `${status}: count`)
    t.equal(sample(text, 'http_request_duration_seconds_bucket', `le="+Inf",${labels}`), 0, `${status}: +Inf bucket`)
  }
  t.notMatch(text, /status_code="401"/, 'no other status, and no other route, before it is answered')
  await callTask(server.url, 'diag.work', { raise: 'boom' })
  const after = await (await fetch(`${server.url}/metrics`)).text()
  t.equal(sample(after, 'http_request_duration_seconds_count', 'method="POST",route="/api/tasks/:name",status_code="500"'), 1, 'the same series counts')
})

t.test('label cardinality stays bounded after 200 calls to random unknown tasks', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  await fetch(`${server.url}/metrics`)
  const before = (await (await fetch(`${server.url}/metrics`)).text()).split('\n').length
  const names: string[] = []
  // Each name a series of its own would add 200 and more lines: the bound below is 60.
  for (let batch = 0; batch < 2; batch++) {
    const statuses = await Promise.all(Array.from({ length: 100 }, async () => {
      const name = `rnd${Math.random().toString(36).slice(2)}`
      names.push(name)
      return (await callTask(server.url, name, {})).status
    }))
    t.same(new Set(statuses), new Set([404]))
  }
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const after = text.split('\n').length
  t.notOk(names.some((name) => text.includes(name)), 'no random name appears in the exposition')
  // One new label set of the http histogram (19 lines) plus a little of Node's own metrics.
  t.ok(after - before < 60, `series lines grew by ${after - before}`)
  t.match(text, /http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="404"\} 200/)
})

t.test('requests no route matches are recorded, framework errors included, with bounded methods', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const { url } = server
  const long = await fetch(`${url}/api/tasks/${'a'.repeat(2000)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(long.status, 414)
  const longBody = await long.json()
  t.match(longBody, { statusCode: 414, code: 'FST_ERR_MAX_PARAM_LENGTH', error: 'URI Too Long', message: /too long/ })
  t.ok(longBody.message.length < 400, 'the path is not echoed whole')
  t.ok(long.headers.get('x-request-id'), 'with a request id like any answer')
  t.equal((await fetch(`${url}/api/tasks/${'b'.repeat(65)}`)).status, 414, 'one character past the longest task name')
  t.equal((await fetch(`${url}/api/tasks/${'b'.repeat(64)}`)).status, 404, 'the longest a name can be: unknown, not too long')
  const badUrl = await fetch(`${url}/%E0%A4%A`)
  t.equal(badUrl.status, 400)
  t.match(await badUrl.json(), { statusCode: 400, code: 'FST_ERR_BAD_URL', error: 'Bad Request' })
  t.match(server.logs.find((l) => l.msg === 'request completed' && l.requestId === badUrl.headers.get('x-request-id')), { statusCode: 400, code: 'FST_ERR_BAD_URL', errorMessage: '/%E0%A4%A is not a valid URL: it does not percent-decode' }, 'its line has its code and message')
  t.equal((await fetch(`${url}/nope`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{bad' })).status, 404, 'no route: 404 before the body is parsed')
  t.equal((await fetch(`${url}/nope`, { method: 'PROPFIND' })).status, 404)
  t.equal((await fetch(`${url}/nope`)).status, 404)
  const text = await (await fetch(`${url}/metrics`)).text()
  for (const [method, status] of [['POST', 414], ['GET', 414], ['GET', 400], ['POST', 404], ['other', 404], ['GET', 404]]) {
    t.equal(sample(text, 'http_request_duration_seconds_count', `method="${method}",route="unmatched",status_code="${status}"`), 1, `${method} ${status}`)
  }
  t.notOk(text.includes('PROPFIND'), 'an unusual method is not a label value')
})

t.test('bytes Node cannot parse as HTTP get an answer in the error shape, and are recorded', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', LOG_LEVEL: 'info' })
  const badMethod = await rawExchange(server.url, 'FOO /x HTTP/1.1\r\nhost: x\r\n\r\n')
  t.match(badMethod, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(JSON.parse(badMethod.slice(badMethod.indexOf('\r\n\r\n') + 4)), { statusCode: 400, code: 'HPE_INVALID_METHOD', error: 'Bad Request', message: /not valid HTTP/ })
  // Garbage pipelined behind calls still running: every answer queued before it comes whole.
  const call = (ms: number): string => {
    const body = `{"sleep_ms":${ms}}`
    return `POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  }
  const inFlight = await rawExchange(server.url, `${call(100)}${call(300)}FOO / HTTP/1.1\r\n\r\n`, { enough: (answer) => answer.includes('"slept_ms":300') })
  t.equal(inFlight.match(/HTTP\/1\.1 200 OK\r\n/g)?.length, 2, 'both pipelined answers arrive')
  t.notMatch(inFlight, /HPE_/, 'no 400 written into them')
  // Bytes after "connection: close" do not replace the answer.
  const afterClose = await rawExchange(server.url, 'GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\nGET /ready HTTP/1.1\r\n\r\n')
  t.match(afterClose, /^HTTP\/1\.1 200 OK\r\n/)
  t.match(badMethod, /\r\nx-request-id: [0-9a-f-]{36}\r\n/, 'with a request id like any answer')
  const requestId = /\r\nx-request-id: ([0-9a-f-]{36})\r\n/.exec(badMethod)?.[1]
  t.match(server.logs.filter((line) => line.requestId === requestId), [{ level: 30, msg: 'request not parsed', statusCode: 400, code: 'HPE_INVALID_METHOD' }],
    'and a log line at info under that id, like any answered request')
  // A client that ends its side halfway through its body: cut short, not malformed.
  const cutShort = await rawExchange(server.url, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":', { endAfterWrite: true })
  t.match(JSON.parse(cutShort.slice(cutShort.indexOf('\r\n\r\n') + 4)), { statusCode: 400, code: 'HPE_INVALID_EOF_STATE', message: /ended before the whole request arrived/ })
  const cutId = /\r\nx-request-id: ([0-9a-f-]{36})\r\n/.exec(cutShort)?.[1]
  t.match(server.logs.filter((line) => line.requestId === cutId), [{ level: 30, msg: 'request cut short', statusCode: 400, code: 'HPE_INVALID_EOF_STATE', method: 'POST', url: '/api/tasks/echo', remoteAddress: '127.0.0.1' }],
    'logged as cut short, not as bytes that are not HTTP: its headers were parsed, so with its method and URL')
  // Garbage behind a running call, arriving in several reads: Node calls clientError for each.
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  socket.on('error', () => {})
  let answer = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => { answer += chunk })
  socket.write(call(500))
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 30))
    socket.write('FOO / HTTP/1.1\r\n\r\n')
  }
  await waitFor(() => answer.includes('"slept_ms":500'), 5000, 'the call\'s answer')
  socket.destroy()
  const hugeHeader = await rawExchange(server.url, `GET /ready HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.match(hugeHeader, /^HTTP\/1\.1 431 /)
  t.match(hugeHeader, /"code":"HPE_HEADER_OVERFLOW"/)
  const text = await (await fetch(`${server.url}/metrics`)).text()
  t.equal(sample(text, 'http_request_duration_seconds_count', 'method="other",route="unmatched",status_code="400"'), 3, 'the bad method, and the garbage behind calls on each of two connections (once each, however many reads it came in)')
  t.equal(sample(text, 'http_request_duration_seconds_count', 'method="POST",route="/api/tasks/:name",status_code="400"'), 1, 'the request cut short, under its route')
  t.equal(sample(text, 'http_request_duration_seconds_count', 'method="other",route="unmatched",status_code="431"'), 1)
})

t.test('queue-stats reports current worker memory, before any scrape', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2' })
  const stats = await getJson(`${server.url}/api/queue-stats`)
  for (const worker of stats.workers) t.ok(worker.rssBytes > 1_000_000, `worker ${worker.id}: ${worker.rssBytes} bytes`)
})

t.test('a request refused while the server drains is counted as cancelled, without a queue-wait sample, its body large or not', async (t) => {
  // OFFLOAD_MIN_BYTES: the large body is refused by the offloader, before it is a call.
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024' })
  const running = callTask(server.url, 'diag.work', { sleep_ms: 500 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the call to run')
  const closing = server.close()
  await waitFor(() => server.app.pool.isDraining, 2000, 'the drain to begin')
  for (const body of [1, 'x'.repeat(4096)]) {
    const late = await callTask(server.url, 'echo', body)
    t.equal(late.status, 503)
    t.equal(late.json.code, 'WORKERS_UNAVAILABLE')
  }
  t.equal((await running).status, 200)
  await closing
  const { calls } = await server.app.metrics.counts()
  t.same(calls, { ok: 1, rejected: 0, failed: 0, timeout: 0, worker_died: 0, queue_full: 0, queue_timeout: 0, cancelled: 2 })
  const text = await server.app.metrics.registry.metrics()
  t.notMatch(text, /pyworker_queue_wait_seconds_count\{task="echo"\}/, 'echo never waited: no queue-wait series at all')
})

t.test("a worker's print() is logged with its request id, worker slot and pid", async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const reply = await callTask(server.url, 'diag.work', { print: 'a line from the task' }, { 'x-request-id': 'print-test-1' })
  t.equal(reply.status, 200)
  await waitFor(() => server.logs.some((l) => l.msg === 'a line from the task'), 5000, 'the printed line in the log')
  const line = server.logs.find((l) => l.msg === 'a line from the task')
  t.match(line, { requestId: 'print-test-1', task: 'diag.work', worker: 1, workerPid: reply.json.pid, stream: 'stderr' })
})

t.test("under load, every line a task prints just before it returns is logged with its own request's id, not the next call's", async (t) => {
  // The server often reads such a line after the reply, once it has sent the worker its next
  // call: the worker's marks around each call's output say whose it is (call-output-marks.ts).
  const server = await startServer(t, { POOL_SIZE: '2', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  const clients = 12
  const callsEach = 60
  await Promise.all(Array.from({ length: clients }, async (_, client) => {
    for (let n = 0; n < callsEach; n++) {
      const id = `printer-${client}-${n}`
      const reply = await callTask(server.url, 'extra.print_request_id', null, { 'x-request-id': id })
      if (reply.status !== 200) t.fail(`${id}: ${reply.status} ${reply.text}`)
    }
  }))
  const printed = (): Array<Record<string, any>> => server.logs.filter((l) => l.stream === 'stderr' && String(l.msg).startsWith('printed by '))
  await waitFor(() => printed().length === clients * callsEach, 10_000, 'every printed line in the log')
  const misattributed = printed().filter((l) => l.msg !== `printed by ${String(l.requestId)}`)
  t.same(misattributed.slice(0, 5).map((l) => `${String(l.msg)} logged under ${String(l.requestId)}`), [], `${misattributed.length} of ${clients * callsEach} lines under another request's id`)
  t.notOk(server.logs.some((l) => String(l.msg).includes('\x1e')), 'no mark is logged')
})

t.test("a client's W3C trace context: the task gets it to send on, and the request's lines, the task's output and its failure carry the trace's ids", async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const spanId = '00f067aa0ba902b7'
  const traceparent = `00-${traceId}-${spanId}-01`
  const headers = { traceparent, tracestate: 'rojo=00f067aa0ba902b7', baggage: 'tenant=acme' }
  const traced = await callTask(server.url, 'extra.trace_headers', null, { 'x-request-id': 'traced-1', ...headers })
  t.same([traced.status, traced.json], [200, headers], 'the task got the headers to send on')
  const failed = await callTask(server.url, 'extra.trace_headers', { fail: true }, { 'x-request-id': 'traced-2', traceparent })
  t.equal(failed.status, 500)
  // A later version is passed on as 00; an invalid one is ignored, and its tracestate with it; none, none.
  t.same((await callTask(server.url, 'extra.trace_headers', null, { 'x-request-id': 'traced-3', traceparent: `01-${traceId}-${spanId}-01-more` })).json, { traceparent })
  t.same((await callTask(server.url, 'extra.trace_headers', null, { 'x-request-id': 'untraced-1', traceparent: `00-${traceId.toUpperCase()}-${spanId}-01`, tracestate: 'rojo=1' })).json, {})
  t.same((await callTask(server.url, 'extra.trace_headers', null, { 'x-request-id': 'untraced-2' })).json, {})
  await waitFor(() => server.logs.some((l) => l.msg === 'traced untraced-2') && server.logs.some((l) => l.requestId === 'untraced-2' && l.statusCode === 200), 5000, 'the last call\'s lines')
  const linesOf = (requestId: string): Array<Record<string, any>> => server.logs.filter((l) => l.requestId === requestId)
  for (const requestId of ['traced-1', 'traced-2', 'traced-3']) {
    const lines = linesOf(requestId)
    t.ok(lines.some((l) => l.stream === 'stderr' && l.msg === `traced ${requestId}`), `${requestId}: the task's print`)
    t.ok(lines.some((l) => typeof l.statusCode === 'number'), `${requestId}: the request's line`)
    t.same(lines.filter((l) => l.traceId !== traceId || l.spanId !== spanId).map((l) => l.msg), [], `${requestId}: every line has the trace's and the client span's ids`)
  }
  t.ok(linesOf('traced-2').some((l) => l.level === 50 && /failing as asked/.test(l.msg)), 'the failure\'s line is among them')
  for (const requestId of ['untraced-1', 'untraced-2']) {
    t.ok(linesOf(requestId).length >= 2)
    t.notOk(linesOf(requestId).some((l) => 'traceId' in l || 'spanId' in l), `${requestId}: no trace ids`)
  }
  t.notOk(server.logs.some((l) => JSON.stringify(l).includes('tenant=acme')), 'baggage is passed on, never logged')
})

t.test('a worker that floods stderr has lines past its log budget dropped and counted; the call is unaffected', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const reply = await callTask(server.url, 'diag.work', { print: 'flood\n'.repeat(10_000) }, { 'x-request-id': 'flooder' })
  t.equal(reply.status, 200)
  t.equal((await callTask(server.url, 'diag.work', { print: 'flood\n'.repeat(10_000) })).status, 200)
  t.equal((await callTask(server.url, 'diag.work', { print: 'flood\n'.repeat(10_000) })).status, 200)
  // 30,000 lines within moments: the burst of 20,000 (and what a few milliseconds refill) are logged.
  const logged = (): number => server.logs.filter((l) => l.stream === 'stderr' && l.msg === 'flood').length
  const dropped = (): number => server.logs.filter((l) => typeof l.droppedLines === 'number').reduce((sum, l) => sum + (l.droppedLines as number), 0)
  await waitFor(() => logged() + dropped() === 30_000, 5000, 'every line logged or counted')
  t.ok(logged() >= 20_000 && logged() < 30_000, `${logged()} lines logged`)
  t.match(server.logs.find((l) => typeof l.droppedLines === 'number'), { level: 40, worker: 1, stream: 'stderr', task: 'diag.work' })
  const text = await (await fetch(`${server.url}/metrics`)).text()
  t.equal(sample(text, 'pyfleet_worker_stderr_dropped_lines_total', ''), dropped(), 'the metric counts what the log says was dropped')
})

t.test('one log line per request with task, queue wait, run time and outcome; tracebacks only in logs', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const reply = await callTask(server.url, 'diag.work', { raise: 'secret internals' }, { 'x-request-id': 'log-test-1' })
  t.equal(reply.status, 500)
  t.notMatch(reply.text, /secret internals|Traceback/, 'the client sees no traceback')
  await waitFor(() => server.logs.some((l) => l.requestId === 'log-test-1' && l.msg === 'request completed'), 5000, 'the request line')
  const lines = server.logs.filter((l) => l.requestId === 'log-test-1')
  const completed = lines.filter((l) => l.msg === 'request completed')
  t.equal(completed.length, 1)
  t.match(completed[0], { task: 'diag.work', outcome: 'failed', statusCode: 500, queueMs: Number, runMs: Number, remoteAddress: /^(::ffff:)?127\.0\.0\.1$/ })
  t.ok(lines.some((l) => typeof l.traceback === 'string' && l.traceback.includes('RuntimeError: secret internals')), 'traceback logged')
})

t.test('worker lifecycle events are logged', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  await callTask(server.url, 'diag.work', { exit: 9 })
  await waitFor(() => server.logs.filter((l) => l.msg === 'worker ready').length >= 2, 10_000, 'the replacement to be ready')
  t.ok(server.logs.some((l) => l.msg === 'worker exited' && l.exitCode === 9))
  t.ok(server.logs.some((l) => l.msg === 'replacing worker' && l.reason === 'crash' && l.task === 'diag.work' && typeof l.requestId === 'string'), 'naming the call it was running')
})

t.test('past a pressure threshold /health is 503 with Retry-After, task calls still run, metrics say why', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', MAX_HEAP_USED_BYTES: '1' })
  await waitFor(async () => (await fetch(`${server.url}/health`)).status === 503, 5000, '/health to report pressure')
  const health = await fetch(`${server.url}/health`)
  t.equal(health.headers.get('retry-after'), '10')
  t.match(await health.json(), { statusCode: 503, code: 'FST_UNDER_PRESSURE', message: /^under pressure: the V8 heap used is \d+ bytes, over MAX_HEAP_USED_BYTES$/ })
  await waitFor(() => server.logs.some((l) => l.requestId === health.headers.get('x-request-id')), 2000, 'its log line')
  t.match(server.logs.find((l) => l.requestId === health.headers.get('x-request-id')), { level: 40, statusCode: 503, code: 'FST_UNDER_PRESSURE' })
  t.equal((await callTask(server.url, 'echo', { still: 'served' })).status, 200, 'task calls are not shed by under-pressure')
  t.equal((await fetch(`${server.url}/ready`)).status, 200)
  const text = await (await fetch(`${server.url}/metrics`)).text()
  t.equal(sample(text, 'pyfleet_under_pressure', ''), 1)
  t.ok(sample(text, 'pyfleet_pressure_heap_used_bytes', '') > 1)
})

t.test('the event loop utilization gauge is the last second\'s, not the average since start', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  // The app runs in this process: hold its event loop, then leave it idle.
  const until = Date.now() + 3000
  while (Date.now() < until) { /* busy: the loop does nothing else */ }
  await new Promise((resolve) => setTimeout(resolve, 2500))
  const text = await (await fetch(`${server.url}/metrics`)).text()
  // Since start it would be at least 3 s busy out of ~6: about 0.5.
  t.ok(sample(text, 'pyfleet_pressure_event_loop_utilization_ratio', '') < 0.25, 'idle again')
})

t.test('task requests refused before they became a call are counted by task and code; a 422 is a call, not a refusal', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const post = async (name: string, body: string, type = 'application/json'): Promise<number> =>
    (await fetch(`${server.url}/api/tasks/${name}`, { method: 'POST', headers: { 'content-type': type }, body })).status
  t.equal(await post('stats.describe', '{"values": [1, '), 400, 'a body that does not parse')
  t.equal(await post('stats.describe', '{"values": "x"}'), 400, 'a schema failure')
  t.equal(await post('stats.describe', '{"values": "y"}'), 400, 'another')
  t.equal(await post('stats.describe', 'a,b', 'text/csv'), 415, 'a content type it does not take')
  t.equal(await post('no.such-task', '{}'), 404, 'a task not served')
  t.equal(await post('csv.profile', '', 'text/csv'), 422, 'a call its task refused')
  const text = await (await fetch(`${server.url}/metrics`)).text()
  t.equal(sample(text, 'pyfleet_task_requests_refused_total', 'task="stats.describe",code="INVALID_INPUT"'), 1)
  t.equal(sample(text, 'pyfleet_task_requests_refused_total', 'task="stats.describe",code="FST_ERR_VALIDATION"'), 2)
  t.equal(sample(text, 'pyfleet_task_requests_refused_total', 'task="stats.describe",code="FST_ERR_CTP_INVALID_MEDIA_TYPE"'), 1)
  t.equal(sample(text, 'pyfleet_task_requests_refused_total', 'task="unknown",code="TASK_NOT_FOUND"'), 1, 'the name a client made up is no label')
  t.notMatch(text, /no\.such-task/)
  t.notMatch(text, /pyfleet_task_requests_refused_total\{task="csv\.profile"/, 'the 422 is counted as a rejected call instead')
  t.equal(sample(text, 'pyworker_calls_total', 'task="csv.profile",outcome="rejected"'), 1)
  // Refused by the server on the socket itself: a body whose chunked framing is broken.
  const broken = await rawExchange(server.url, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n')
  t.match(broken, /^HTTP\/1\.1 400 /)
  const after = await (await fetch(`${server.url}/metrics`)).text()
  t.equal(sample(after, 'pyfleet_task_requests_refused_total', 'task="echo",code="HPE_INVALID_CHUNK_SIZE"'), 1, 'a refusal written by the server itself is counted too')
  // A valid request pipelined behind a 404 answered before its body (the connection closes):
  // never run, and its 400 is no refusal of its input.
  const one = (name: string): string => `POST /api/tasks/${name} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`
  t.match(await rawExchange(server.url, one('nope') + one('diag.work')), /^HTTP\/1\.1 404 /)
  await waitFor(async () => sample(await (await fetch(`${server.url}/metrics`)).text(), 'pyfleet_task_requests_refused_total', 'task="unknown",code="TASK_NOT_FOUND"') === 2, 5000, 'the 404 counted')
  const last = await (await fetch(`${server.url}/metrics`)).text()
  t.notMatch(last, /pyfleet_task_requests_refused_total\{task="diag\.work"/, 'the request behind it is not counted as refused')
})

t.test('every QUEUE_TIMEOUT answer is counted once, a large body\'s that ran out waiting for the offload thread too', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', OFFLOAD_MIN_BYTES: '1024' })
  // Bodies of 1 MB, parsed one at a time on the thread, each with a budget of 1 ms: those
  // behind the first run out while they wait for the thread, before they are calls.
  const body = JSON.stringify({ pad: 'x'.repeat(1_000_000) })
  const answers = await Promise.all(Array.from({ length: 8 }, async () => await callTask(server.url, 'echo', body, { 'content-type': 'application/json', 'x-request-timeout-ms': '1' })))
  const timedOut = answers.filter((answer) => answer.json?.code === 'QUEUE_TIMEOUT')
  t.ok(timedOut.some((answer) => /waited to be parsed/.test(answer.json.message)), 'some ran out waiting for the offload thread')
  const { calls } = await server.app.metrics.counts()
  t.equal(calls.queue_timeout, timedOut.length, 'counted as queue_timeout, each once')
  const text = await (await fetch(`${server.url}/metrics`)).text()
  t.equal(sample(text, 'pyfleet_calls_limited_total', 'task="echo",limit="client_budget_queued"'), timedOut.length, 'each by its client\'s budget')
  // They never ran: a 0 s run time for each would pull the task's duration quantiles down.
  const durations = sample(text, 'pyworker_call_duration_seconds_count', 'task="echo",outcome="queue_timeout"')
  t.notOk(durations > 0, `no run-time sample for calls that never ran (${durations})`)
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.equal(stats.queue.rejected, timedOut.length, 'and in queue-stats')
  // And logged as calls are: the task, the outcome, the budget that ran out and, for a body
  // that never left the offload thread's queue, how long it waited there (a review found
  // these lines bare: counting lines by outcome fell short of the metric).
  const lines = server.logs.filter((line) => line.msg === 'request completed' && line.code === 'QUEUE_TIMEOUT')
  t.equal(lines.length, timedOut.length, 'a line each')
  for (const line of lines) t.match(line, { task: 'echo', outcome: 'queue_timeout', budgetMs: 1, queueMs: Number, runMs: 0 })
  const unparsed = timedOut.filter((answer) => /waited to be parsed/.test(answer.json.message)).length
  t.equal(lines.filter((line) => line.offloadWaitMs === 1).length, unparsed, 'the wait for the thread, on the lines of the bodies that ran out there')
})

t.test('pyfleet_calls_limited_total tells the server\'s limits from the client\'s budget, and adds up to the outcomes it splits', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_TIMEOUT_MS: '300', QUEUE_LIMIT_BYTES: '1000', TASK_TIMEOUTS: 'diag.work=5000' })
  const { url } = server
  // Its client's budget runs out while the task runs on: 504, the worker is kept.
  t.equal((await callTask(url, 'diag.work', { sleep_ms: 400 }, { 'x-request-timeout-ms': '100' })).status, 504)
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 0, 5000, 'the worker free again')
  // The one worker busy: one call waits past QUEUE_TIMEOUT_MS, one past its own shorter budget,
  // and one is refused because its body and the waiting ones' would pass QUEUE_LIMIT_BYTES.
  const busy = callTask(url, 'diag.work', { sleep_ms: 1000 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker busy')
  const byServer = callTask(url, 'echo', { pad: 'x'.repeat(600) })
  const byBudget = callTask(url, 'echo', { n: 1 }, { 'x-request-timeout-ms': '50' })
  await waitFor(() => server.app.pool.waiting >= 1, 5000, 'a caller waiting')
  const tooBig = await callTask(url, 'echo', { pad: 'y'.repeat(600) })
  t.match(tooBig.json, { code: 'QUEUE_FULL', message: /QUEUE_LIMIT_BYTES=1000/ })
  t.match((await byServer).json, { code: 'QUEUE_TIMEOUT', message: /^no worker became free within 300 ms/ })
  t.match((await byBudget).json, { code: 'QUEUE_TIMEOUT', message: /x-request-timeout-ms budget/ })
  t.equal((await busy).status, 200)

  const text = await (await fetch(`${url}/metrics`)).text()
  const limited = (task: string, limit: string): number => sample(text, 'pyfleet_calls_limited_total', `task="${task}",limit="${limit}"`)
  t.equal(limited('diag.work', 'client_budget_running'), 1)
  t.equal(limited('diag.work', 'task_timeout'), 0)
  t.equal(limited('echo', 'queue_timeout_ms'), 1)
  t.equal(limited('echo', 'client_budget_queued'), 1)
  t.equal(limited('echo', 'queue_limit_bytes'), 1)
  t.equal(limited('echo', 'queue_limit'), 0)
  // The split adds up to SPEC §6's outcomes.
  const calls = (task: string, outcome: string): number => sample(text, 'pyworker_calls_total', `task="${task}",outcome="${outcome}"`)
  t.equal(calls('echo', 'queue_timeout'), limited('echo', 'queue_timeout_ms') + limited('echo', 'client_budget_queued') + limited('echo', 'shed_late_calls'))
  t.equal(calls('echo', 'queue_full'), limited('echo', 'queue_limit') + limited('echo', 'queue_limit_bytes'))
  t.equal(calls('diag.work', 'timeout'), limited('diag.work', 'task_timeout') + limited('diag.work', 'client_budget_running'))
  if (await hasPromtool(t)) await promtool(t, ['check', 'metrics'], text)
})
