// Rolling reload and per-task concurrency under load, against real workers, and spares
// that die. (MAX_CALLS_PER_WORKER and MAX_WORKER_RSS_MB under load: recycling.test.ts.)

import t from 'tap'
import { pbkdf2 } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { callTask, FIXTURES, getJson, startServer, waitFor, workerPids } from '../helpers/server.js'
import { rawExchange } from '../helpers/raw-http.js'
import type { TaskInfo } from '../../src/pool/ready-message.js'
import { PythonWorker } from '../../src/pool/python-worker.js'

const TOKEN = 'test-admin-token-0123456789'

/** Keeps `concurrency` echo calls going until stop() and counts the statuses. */
function steadyLoad (url: string, concurrency: number): { stop: () => Promise<Map<number, number>> } {
  const statuses = new Map<number, number>()
  let running = true
  const loops = Array.from({ length: concurrency }, async (_, i) => {
    while (running) {
      const reply = await callTask(url, 'echo', { i }).catch(() => ({ status: -1 }))
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
    }
  })
  return {
    stop: async () => {
      running = false
      await Promise.all(loops)
      return statuses
    }
  }
}

t.test('POST /admin/reload under steady load: zero failed calls, every pid changes', async (t) => {
  const server = await startServer(t, { ADMIN_TOKEN: TOKEN })
  const before = workerPids(server)
  const load = steadyLoad(server.url, 8)
  await waitFor(async () => (await getJson(`${server.url}/api/queue-stats`)).tasks.completed > 50, 5000, 'load to flow')
  const response = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(response.status, 200)
  const result = await response.json()
  const statuses = await load.stop()
  t.same([...statuses.keys()], [200], `all responses 200 (${statuses.get(200) ?? 0} calls)`)
  t.same(result.oldPids.sort(), before.sort())
  t.equal(result.newPids.length, 4)
  t.notOk(result.newPids.some((pid: number) => before.includes(pid)), 'every worker was replaced')
  t.type(result.durationMs, 'number')
  const stats = await getJson(`${server.url}/api/queue-stats`)
  t.equal(stats.restarts.reload, 4)
  t.ok(server.logs.some((l) => l.msg === 'reload finished' && Array.isArray(l.newPids)))
  const id = response.headers.get('x-request-id')
  t.same(server.logs.filter((l) => /^reload (started|finished)$/.test(l.msg)).map((l) => [l.msg, l.requestId]), [['reload started', id], ['reload finished', id]], 'the reload\'s lines carry the admin request\'s id')
})

t.test('reloads asked for while one runs: the first starts the next, the others share it; each reload is logged and counted once', async (t) => {
  const server = await startServer(t, { ADMIN_TOKEN: TOKEN, POOL_SIZE: '1' })
  // The one worker busy for a while: the first reload's spare waits for it, so the requests after it come while it runs.
  const long = callTask(server.url, 'diag.work', { sleep_ms: 2000 })
  await waitFor(() => server.app.pool.members().some((w) => w.state === 'busy'), 5000, 'the long call to start')
  const reload = async (): Promise<Response> => await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  const lines = (msg: string | RegExp): Array<Record<string, any>> => server.logs.filter((l) => typeof msg === 'string' ? l.msg === msg : msg.test(l.msg ?? ''))
  const first = reload()
  await waitFor(() => lines('reload started').length === 1, 5000, 'the first reload to start')
  const second = reload()
  await waitFor(() => lines('reload started').length === 2, 5000, 'the second to be asked for')
  const third = reload()
  await waitFor(() => lines(/shares it$/).length === 1, 5000, 'the third to be asked for')
  const answers = await Promise.all([first, second, third])
  t.same(answers.map((a) => a.status), [200, 200, 200])
  const [, secondResult, thirdResult] = await Promise.all(answers.map(async (a) => await a.json()))
  t.same(thirdResult.newPids, secondResult.newPids, 'the third got the reload the second asked for')
  t.equal((await long).status, 200)
  const thirdId = answers[2].headers.get('x-request-id')
  t.equal(lines('reload finished').length, 2, 'two reloads finished, two lines')
  t.same(lines(/^reload asked for while the next one waits to begin/).map((l) => l.requestId), [thirdId])
  t.same(lines('the reload this request shared finished').map((l) => [l.requestId, l.newPids]), [[thirdId, secondResult.newPids]])
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^pyfleet_reloads_total\{outcome="ok"\} 2$/m, 'counted once each')
  t.equal((await getJson(`${server.url}/api/queue-stats`)).restarts.reload, 2, 'two workers replaced by reloads')
})

t.test('a reload does not wait for a long call to replace the other workers: theirs run the new code while it goes on', async (t) => {
  const server = await startServer(t, { ADMIN_TOKEN: TOKEN, POOL_SIZE: '3' })
  const before = workerPids(server)
  const long = callTask(server.url, 'diag.work', { sleep_ms: 6000 })
  await waitFor(() => server.app.pool.members().some((w) => w.state === 'busy'), 5000, 'the long call to start')
  const busyPid = server.app.pool.members().find((w) => w.state === 'busy')?.pid
  let longEnded = false
  void long.then(() => { longEnded = true })
  const reload = fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  await waitFor(() => workerPids(server).filter((pid) => !before.includes(pid)).length === 2 || longEnded, 20_000, 'the two idle workers to be replaced')
  t.notOk(longEnded, 'both replaced while the long call still ran')
  t.ok(workerPids(server).includes(busyPid as number), 'the busy worker stays until its call ends')
  t.equal((await long).status, 200, 'and its call succeeds')
  const response = await reload
  t.equal(response.status, 200)
  const result = await response.json()
  t.same(result.oldPids.sort(), before.sort())
  t.equal(result.oldPids.length, 3)
})

t.test('a reload whose caller left before its answer is logged and measured as abandoned (499): who reloaded stays on record', async (t) => {
  const server = await startServer(t, { ADMIN_TOKEN: TOKEN, POOL_SIZE: '1' })
  // The one worker is busy: the reload waits for its call, and the caller gives up meanwhile (curl -m).
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 1500 })
  await waitFor(() => server.app.pool.members().some((w) => w.state === 'busy'), 5000, 'the call to start')
  const controller = new AbortController()
  const reload = fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, signal: controller.signal }).catch((error: Error) => error)
  await waitFor(() => server.logs.some((l) => l.msg === 'reload started'), 5000, 'the reload to start')
  controller.abort()
  t.match(await reload, { name: 'AbortError' })
  t.equal((await busy).status, 200)
  await waitFor(() => server.logs.some((l) => l.msg === 'reload finished'), 10_000, 'the reload to finish')
  await waitFor(() => server.logs.some((l) => l.msg === 'request abandoned: the client left before its answer'), 5000, 'the abandoned line')
  const started = server.logs.find((l) => l.msg === 'reload started')
  t.match(server.logs.find((l) => l.msg === 'request abandoned: the client left before its answer'), { statusCode: 499, method: 'POST', url: '/admin/reload', requestId: started?.requestId })
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /\nhttp_request_duration_seconds_count\{method="POST",route="\/admin\/reload",status_code="499"\} 1\n/)
})

t.test('a worker that times out while its reload spare waits for it is replaced by that spare, not by another started cold', async (t) => {
  const server = await startServer(t, { ADMIN_TOKEN: TOKEN, POOL_SIZE: '1', TASK_TIMEOUTS: 'diag.work=1500' })
  const [before] = workerPids(server)
  const long = callTask(server.url, 'diag.work', { sleep_ms: 10_000 })
  await waitFor(() => server.app.pool.members().some((w) => w.state === 'busy'), 5000, 'the call to start')
  const reload = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal((await long).status, 504, 'the call ran past its timeout')
  t.equal(reload.status, 200)
  const result = await reload.json()
  t.same(result.oldPids, [before])
  const replaced = server.logs.find((l) => l.msg === 'replacing worker with the spare that was ready for it')
  t.match(replaced, { reason: 'timeout', workerPid: before }, 'the spare took the slot')
  t.same(result.newPids, [replaced?.newWorkerPid], 'and serves now')
  t.notOk(server.logs.some((l) => /^replacement not used/.test(l.msg)), 'no spare was stopped unused')
  t.equal((await callTask(server.url, 'echo', { after: 1 })).status, 200)
})

t.test('a crash replacement that began starting before a reload is replaced too once it joins', async (t) => {
  // Starts take 1 s (slow import): the reload comes while the replacement is still importing the old code.
  const server = await startServer(t, { POOL_SIZE: '1', ADMIN_TOKEN: TOKEN, TASK_MODULES: 'slow_import_tasks', PYTHONPATH: FIXTURES, SLOW_IMPORT_S: '1' })
  process.kill(workerPids(server)[0], 'SIGKILL')
  await waitFor(() => server.app.pool.snapshot().workers[0]?.state === 'starting', 5000, 'the replacement to be starting')
  const firstAfterReload = PythonWorker.created
  const response = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(response.status, 200)
  await waitFor(() => server.app.pool.members().length === 1 && server.app.pool.members()[0].sequence >= firstAfterReload, 15_000, 'the worker serving to be one created after the reload')
  const ping = await callTask(server.url, 'slow_import.ping', null)
  t.equal(ping.json, 'pong', ping.text)
  t.equal((await getJson(`${server.url}/api/queue-stats`)).restarts.reload, 1)
})

t.test('the admin route wants the right bearer token', async (t) => {
  const server = await startServer(t, { ADMIN_TOKEN: TOKEN, POOL_SIZE: '1' })
  const none = await fetch(`${server.url}/admin/reload`, { method: 'POST' })
  t.equal(none.status, 401)
  t.equal((await none.json()).code, 'UNAUTHORIZED')
  t.equal(none.headers.get('www-authenticate'), 'Bearer realm="pyfleet admin"', 'a 401 says which scheme (RFC 9110)')
  const wrong = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: 'Bearer not-the-token' } })
  t.equal(wrong.status, 403)
  t.equal((await wrong.json()).code, 'FORBIDDEN')
  // Someone may be guessing the token: a warning with the address, even at LOG_LEVEL=warn.
  const refusals = server.logs.filter((l) => /^admin request refused/.test(l.msg))
  t.equal(refusals.length, 2)
  t.match(refusals[1], { level: 40, remoteAddress: /127\.0\.0\.1$/, msg: 'admin request refused: the bearer token is not the ADMIN_TOKEN' })
  const badBody = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{bad' })
  t.equal(badBody.status, 401, 'the token is checked before the body is read or parsed')  // A client that puts the token in the query string: the log keeps the path, not the token.
  const inQuery = await fetch(`${server.url}/admin/reload?access_token=${TOKEN}`, { method: 'POST' })
  t.equal(inQuery.status, 401)
  await waitFor(() => server.logs.some((l) => l.url === '/admin/reload?...'), 5000, 'the request line of the call with the token in its query')
  // Mistyped or other spellings of the route are 404s, logged as their requests: without the query either.
  for (const path of ['//admin/reload', '/ADMIN/reload', '/admin%2Freload', '/%41DMIN/reload']) {
    t.equal((await fetch(`${server.url}${path}?access_token=${TOKEN}`, { method: 'POST' })).status, 404, path)
  }
  // The route itself, spelt with an escape, or with the token after '#' (where the router starts the query too).
  t.equal((await fetch(`${server.url}/%61dmin/reload?access_token=${TOKEN}`, { method: 'POST' })).status, 401)
  t.match(await rawExchange(server.url, `POST /admin/reload#access_token=${TOKEN} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`), /^HTTP\/1\.1 401 /)
  await waitFor(() => server.logs.filter((l) => /\?\.\.\.$/.test(l.url ?? '')).length === 7, 5000, 'the request lines of the other spellings')
  t.notOk(server.logs.some((l) => JSON.stringify(l).includes(TOKEN)), 'the token is in no log line')
})

t.test('the admin route reads no body: whatever a client sends with the token (curl -d, an empty JSON) reloads; a large one is refused', async (t) => {
  const server = await startServer(t, { ADMIN_TOKEN: TOKEN, POOL_SIZE: '1' })
  const authorization = `Bearer ${TOKEN}`
  const bodies: Array<[string, Record<string, string>, string]> = [
    ['curl -d \'\' (a form\'s content type)', { 'content-type': 'application/x-www-form-urlencoded' }, ''],
    ['msgpack', { 'content-type': 'application/msgpack' }, '\x80'],
    ['an empty JSON body', { 'content-type': 'application/json' }, ''],
    ['bad JSON', { 'content-type': 'application/json' }, '{bad'],
    ['CSV', { 'content-type': 'text/csv' }, 'x=1'],
    ['no content type', {}, 'anything'],
    ['a content type that is no media type', { 'content-type': 'json' }, '{}']
  ]
  for (const [what, headers, body] of bodies) {
    const response = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization, ...headers }, body })
    t.equal(response.status, 200, `${what}: ${response.status === 200 ? '' : await response.text()}`)
  }
  const large = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: 'x'.repeat(65 * 1024) })
  t.equal(large.status, 413)
  t.match(await large.json(), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', message: '/admin/reload reads no body; one over 65536 bytes is refused' })
  t.equal((await getJson(`${server.url}/api/queue-stats`)).restarts.reload, bodies.length, 'one reload each')
})

t.test('a call for a task the worker no longer has (removed by a reload in progress) is a 404, not a 500', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  // The table says a task exists that the worker's code does not have: the moment of a
  // reload that removes a task, when the old table still lists it.
  const gone: TaskInfo = { name: 'was.removed', doc: '', schema: {}, outputSchema: null, timeoutMs: null, raw: [], rawField: null, maxConcurrency: null }
  server.app.tasks.update([...server.app.pool.tasks, gone])
  const pids = workerPids(server)
  const reply = await callTask(server.url, 'was.removed', {})
  t.equal(reply.status, 404)
  t.equal(reply.json.code, 'TASK_NOT_FOUND')
  t.match(reply.json.message, /^there is no task named "was.removed" in the worker that took this call \(any more: a reload removed it, or the worker restarted with task files changed on disk since the start; the log says which\); GET \/api\/tasks lists them$/)
  t.same(workerPids(server), pids, 'and the worker stays')
})

t.test('a slow task limited to 1 worker cannot starve fast tasks', async (t) => {
  const server = await startServer(t, { TASK_CONCURRENCY: 'diag.work=1, diag.wrok=1' })
  const warning = server.logs.find((line) => /TASK_CONCURRENCY names tasks no worker declares/.test(line.msg))
  t.same(warning?.unused, ['diag.wrok'], 'a limit for a task that does not exist is reported, not silently ignored')
  const slow = Array.from({ length: 10 }, async () => await callTask(server.url, 'diag.work', { sleep_ms: 1000 }))
  await waitFor(() => server.app.pool.waiting === 9, 5000, 'nine slow calls queued behind the one running')
  // Prometheus sees why workers are idle while calls wait: the task is at its own limit.
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^pyfleet_task_calls\{task="diag\.work",state="running"\} 1$/m)
  t.match(metrics, /^pyfleet_task_calls\{task="diag\.work",state="waiting"\} 9$/m)
  t.match(metrics, /^pyfleet_task_concurrency\{task="diag\.work"\} 1$/m)
  t.match(metrics, /^pyfleet_task_concurrency\{task="echo"\} 4$/m, 'POOL_SIZE for a task with no limit of its own')
  t.match(metrics, /^pyfleet_task_calls\{task="echo",state="waiting"\} 0$/m)
  t.match(metrics, /^pyworker_pool_workers\{state="idle"\} 3$/m)
  const fast = await Promise.all(Array.from({ length: 20 }, async () => await callTask(server.url, 'echo', { fast: true })))
  t.same(fast.map((r) => r.status), Array(20).fill(200))
  // An ordering check, not a timing one: every echo finished while the first slow call
  // (1 s) was still running, so at most one slow call has left the queue.
  t.ok(server.app.pool.waiting >= 8, `${server.app.pool.waiting} slow calls still queued when the 20 echo calls were done`)
  t.equal(server.app.pool.snapshot().workers.filter((w) => w.task === 'diag.work').length, 1, 'only one worker holds diag.work')
  const { tasks } = await getJson(`${server.url}/api/tasks`)
  t.equal(tasks.find((x: any) => x.name === 'diag.work').maxConcurrency, 1)
  t.same((await Promise.all(slow)).map((r) => r.status), Array(10).fill(200))
})

t.test('a pattern a client could make backtrack for ever is tested in linear time: a body of 40 characters is refused at once', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'pattern_tasks', PYTHONPATH: FIXTURES })
  const hostile = `${'a'.repeat(40)}!`
  // JavaScript's engine takes ~2^40 steps over each of these (35 s at 29 characters, in a review).
  const nested = await callTask(server.url, 'pattern.nested', { s: hostile })
  t.equal(nested.status, 400)
  t.match(nested.json.message, /^body\/s must match pattern "\^\(a\+\)\+\$"/)
  t.equal((await callTask(server.url, 'pattern.keys', { [hostile]: 1 })).status, 400, 'propertyNames and patternProperties')
  const raw = await fetch(`${server.url}/api/tasks/pattern.raw?tag=${hostile}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })
  t.equal(raw.status, 400, 'a raw task\'s query option')
  t.equal((await callTask(server.url, 'pattern.nested', { s: 'aaaa' })).status, 200, 'what the pattern takes still passes')
  t.same((await Promise.all(['abcdefg1', 'abcdefgh'].map(async (password) => (await callTask(server.url, 'pattern.lookahead', { password })).status))), [200, 400], 'a lookahead, which RE2 does not take, runs in JavaScript\'s engine: it has no nested quantifier')
  t.equal((await fetch(`${server.url}/health`)).status, 200)
})

t.test('a body whose schema check would take exponential or quadratic time is answered at once, and the server goes on serving', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'costly_schema_tasks', PYTHONPATH: FIXTURES })
  let tree: unknown = { kind: 'list' }
  for (let level = 0; level < 30; level++) tree = { kind: 'list', children: [tree] }
  // With Ajv alone: 9.6 s at 16 levels (479 bytes), three times as long for each level more.
  const deep = await callTask(server.url, 'costly.tree', tree)
  t.equal(deep.status, 400)
  t.match(deep.json, { code: 'FST_ERR_VALIDATION', message: /^body is too costly to check: it took more than \d+ steps/, details: [{ keyword: 'cost' }] })
  t.equal((await callTask(server.url, 'costly.tree', tree)).status, 400, 'again')
  const warnings = server.logs.filter((line) => /refused a body as too costly to check/.test(line.msg ?? ''))
  t.match(warnings, [{ level: 40, task: 'costly.tree', msg: /^task costly\.tree refused a body as too costly to check against its input schema: either a client sends bodies shaped to cost, or the schema/ }], 'the task\'s author and operator hear of it, once a minute')
  t.same((await callTask(server.url, 'costly.tree', { kind: 'list', children: [{ kind: 'paragraph' }] })).json, { kind: 'list' }, 'a shallow tree is checked as before')
  let keys = {}
  for (let level = 0; level < 40; level++) keys = { xy: keys }
  t.equal((await callTask(server.url, 'costly.keys', keys)).status, 400, 'overlapping recursive patternProperties')
  // Ajv compared every pair of items of no declared type: 20,000 numbers took 0.7 s, these 40,000 (229 KB, on the event loop) ~3 s.
  const ids = Array.from({ length: 40_000 }, (_, i) => i * 7919)
  t.same((await callTask(server.url, 'costly.unique', { ids })).json, 40_000)
  const repeated = await callTask(server.url, 'costly.unique', { ids: [...ids, 7919] })
  t.equal(repeated.status, 400)
  t.equal(repeated.json.message, 'body/ids must NOT have duplicate items (items ## 1 and 40000 are identical)')
  t.equal((await fetch(`${server.url}/health`)).status, 200)
})

t.test('a large body whose check runs past its task\'s timeout on the offload thread is answered 504, and the thread is replaced', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'costly_schema_tasks', PYTHONPATH: FIXTURES })
  // Almost a 64-digit hex number at every offset: RE2 keeps 63 threads alive all along (~1 s per MiB).
  const s = `${'a'.repeat(63)}g`.repeat(32_768)
  const slow = await callTask(server.url, 'costly.hash', { s })
  t.equal(slow.status, 504)
  t.match(slow.json, { code: 'TASK_TIMEOUT', message: /^checking the body took longer than task costly\.hash's timeout \(300 ms\) on the offload thread, and was stopped/ })
  t.ok(server.logs.some((line) => /the offload thread worked on a job of \d+ bytes past its task's timeout \(300 ms\); it was ended/.test(line.msg ?? '')), 'logged at warn')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /pyworker_calls_total\{task="costly\.hash",outcome="timeout"\} 1/, 'counted as a call past its timeout')
  t.same((await callTask(server.url, 'costly.hash', { s: `${'a'.repeat(300_000)}` })).json, 300_000, 'the next large body runs on a new thread')
  t.equal(server.app.offloader.threadStarts, 2)
})

t.test('a queue full of calls waiting on their task\'s limit does not turn away a fast call a free worker can take', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', QUEUE_LIMIT: '2', TASK_CONCURRENCY: 'diag.work=1' })
  const slow = Array.from({ length: 3 }, async () => await callTask(server.url, 'diag.work', { sleep_ms: 1000 }))
  await waitFor(() => server.app.pool.waiting === 2, 5000, 'two slow calls queued behind the one running: the queue is full')
  const fast = await callTask(server.url, 'echo', { fast: true })
  t.equal(fast.status, 200, 'the idle worker takes it')
  t.ok(server.app.pool.waiting === 2, 'while the slow calls still wait')
  const refused = await callTask(server.url, 'diag.work', { sleep_ms: 1 })
  t.equal(refused.status, 503, 'a call of the task at its limit is still refused by the full queue')
  t.equal(refused.json.code, 'QUEUE_FULL')
  t.same((await Promise.all(slow)).map((r) => r.status), [200, 200, 200])
})

t.test('a worker started outside a reload that declares other tasks (files edited under the server) is warned about, once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-drift-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const module = (tasks: string): string => `from pyfleet import task\n${tasks}`
  const one = (timeout: number): string => `@task("drift.one", timeout_ms=${timeout})\ndef one(x):\n    return x\n`
  await writeFile(join(dir, 'drift_tasks.py'), module(one(1000)))
  const server = await startServer(t, { POOL_SIZE: '2', ADMIN_TOKEN: TOKEN, TASK_MODULES: 'drift_tasks', PYTHONPATH: dir, PYTHONDONTWRITEBYTECODE: '1' })
  const drifts = (): Array<Record<string, any>> => server.logs.filter((line) => /differ from the table being served/.test(line.msg ?? ''))
  const replaceOne = async (): Promise<void> => {
    const [victim] = workerPids(server)
    process.kill(victim, 'SIGKILL')
    await waitFor(() => workerPids(server).length === 2 && !workerPids(server).includes(victim), 15_000, 'a replacement')
  }

  // What Prometheus sees: running workers whose tasks differ from the table served.
  const unlike = async (): Promise<number> => Number(/^pyfleet_workers_unlike_task_table (\d+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())?.[1])
  await replaceOne()
  t.equal(drifts().length, 0, 'unchanged code: no warning')
  t.equal(await unlike(), 0)

  await writeFile(join(dir, 'drift_tasks.py'), module(one(2000) + '@task("drift.two")\ndef two(x):\n    return x\n'))
  await replaceOne()
  t.match(drifts(), [{ level: 40, added: ['drift.two'], removed: [], changed: ['drift.one'] }], 'the edit is named')
  t.equal(await unlike(), 1, 'and counted: one worker runs the edited code')
  await replaceOne()
  t.equal(drifts().length, 1, 'the same difference is said once')
  t.equal((await callTask(server.url, 'drift.two', {})).status, 404, 'the table served is still the old one')

  // Another edit, then a reload: its new workers differ from the table on purpose, which is no drift.
  await writeFile(join(dir, 'drift_tasks.py'), module(one(2000) + '@task("drift.two")\ndef two(x):\n    return x\n' + '@task("drift.three")\ndef three(x):\n    return x\n'))
  const reload = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(reload.status, 200)
  t.equal(drifts().length, 1, 'a reload\'s own workers are not warned about')
  t.equal((await callTask(server.url, 'drift.three', { ok: 1 })).status, 200, 'a reload applies it')
  t.equal(await unlike(), 0, 'every worker serves the table again')
  await replaceOne()
  t.equal(drifts().length, 1, 'after the reload, new workers match the table: no warning')

  // The same edit twice, with matching workers in between: said both times.
  const current = module(one(2000) + '@task("drift.two")\ndef two(x):\n    return x\n' + '@task("drift.three")\ndef three(x):\n    return x\n')
  await writeFile(join(dir, 'drift_tasks.py'), module(one(3000)))
  await replaceOne()
  t.equal(drifts().length, 2, 'a new edit is said')
  await writeFile(join(dir, 'drift_tasks.py'), current)
  await replaceOne()
  await writeFile(join(dir, 'drift_tasks.py'), module(one(3000)))
  await replaceOne()
  t.equal(drifts().length, 3, 'and said again once workers had matched the table in between')
})

/** Waits for a spare to be started and ready beside the single member; returns its pid. */
async function readySpare (server: Awaited<ReturnType<typeof startServer>>, member: number, readyBefore: number): Promise<number> {
  await waitFor(() => server.logs.filter((l) => l.msg === 'worker ready').length > readyBefore, 10_000, 'the spare to be ready')
  const spare = server.logs.filter((l) => l.msg === 'worker ready').at(-1)?.workerPid as number
  if (spare === member) throw new Error('the last worker ready is the member, not a spare')
  return spare
}

async function wholeAgain (server: Awaited<ReturnType<typeof startServer>>, dead: number): Promise<void> {
  // No traffic from here on: the pool must heal by itself, or an idle replica stays unready.
  await waitFor(async () => {
    const [worker] = server.app.pool.snapshot().workers
    return worker?.state === 'idle' && worker.pid !== dead && (await fetch(`${server.url}/ready`)).status === 200
  }, 15_000, 'a live worker in the slot and /ready 200, without any call')
}

t.test('a recycling spare that dies while its worker is busy is not swapped in: the pool heals without traffic', async (t) => {
  // Spares take 0.5 s to start (slow import): the long call surely has the worker before its spare is ready.
  const server = await startServer(t, { POOL_SIZE: '1', MAX_CALLS_PER_WORKER: '1', TASK_MODULES: 'slow_import_tasks', PYTHONPATH: FIXTURES, SLOW_IMPORT_S: '0.5' })
  const [member] = workerPids(server)
  const readyBefore = server.logs.filter((l) => l.msg === 'worker ready').length
  t.equal((await callTask(server.url, 'echo', 1)).status, 200, 'the call that reaches the limit: a spare starts')
  const long = callTask(server.url, 'diag.work', { sleep_ms: 2500 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the long call to run')
  const spare = await readySpare(server, member, readyBefore)
  t.same(workerPids(server), [member], 'the spare waits: the busy member is still the only one')
  process.kill(spare, 'SIGKILL')
  t.equal((await long).status, 200)
  await wholeAgain(server, spare)
  t.equal((await callTask(server.url, 'echo', 2)).status, 200)
  const said = server.logs.filter((l) => /^a spare exited before it could take over/.test(l.msg ?? ''))
  t.equal(said.length, 1, 'the spare\'s exit is said once')
  t.match(said[0], { level: 40, workerPid: member, sparePid: spare, reason: 'max_calls' }, 'naming the worker that stays and the spare')
})

t.test('a reload whose spare dies before taking over starts another and completes', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', ADMIN_TOKEN: TOKEN })
  const [member] = workerPids(server)
  const readyBefore = server.logs.filter((l) => l.msg === 'worker ready').length
  const long = callTask(server.url, 'diag.work', { sleep_ms: 2500 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const reload = fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  const spare = await readySpare(server, member, readyBefore)
  process.kill(spare, 'SIGKILL')
  t.equal((await long).status, 200)
  const response = await reload
  t.equal(response.status, 200)
  const body = await response.json() as { oldPids: number[], newPids: number[] }
  t.same(body.oldPids, [member])
  t.notOk(body.newPids.includes(spare), 'the dead spare is not among the new workers')
  await wholeAgain(server, spare)
})

t.test('a worker that dies while its memory is measured after a call is replaced at once, without further traffic', async (t) => {
  // OFFLOAD_MIN_BYTES=1: every reply is decoded on the offload thread, and its worker,
  // whose reply said nothing then, is measured from /proc before it is given back.
  const server = await startServer(t, { POOL_SIZE: '1', MAX_WORKER_RSS_MB: '100', MAX_CALLS_PER_WORKER: '0', OFFLOAD_MIN_BYTES: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
  const [pid] = workerPids(server)
  // Its exit comes while the pool reads its RSS (the worker still borrowed): the read waits
  // behind work that fills libuv's thread pool (this process is the server's) for ~0.5 s,
  // and the worker exits 50 ms after its answer.
  const occupied = Array.from({ length: 4 }, async () => await new Promise((resolve) => { pbkdf2('x', 'y', 400_000, 64, 'sha512', resolve) }))
  t.equal((await callTask(server.url, 'extra.exit_after_return', { delay_ms: 50 })).status, 200)
  await Promise.all(occupied)
  await wholeAgain(server, pid)
  t.equal((await getJson(`${server.url}/api/queue-stats`)).restarts.crash, 1, 'counted as a crash')
})

t.test('QUEUE_LIMIT=0: a client calling again as soon as it is answered finds the worker free, even when its memory is measured after each call', async (t) => {
  // OFFLOAD_MIN_BYTES=1: every reply is decoded on the offload thread, and its worker measured from /proc before it is given back.
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_LIMIT: '0', MAX_WORKER_RSS_MB: '100', MAX_CALLS_PER_WORKER: '0', OFFLOAD_MIN_BYTES: '1' })
  const statuses: number[] = []
  for (let i = 0; i < 100; i++) statuses.push((await callTask(server.url, 'echo', i)).status)
  t.same(statuses.filter((s) => s !== 200), [], 'no QUEUE_FULL from an idle server')
})

t.test('a reload while the only worker\'s replacement crashes on a queued call waits for the next one, and applies the new tasks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-reload-crash-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 'crash_tasks.py'), 'from pyfleet import task\n@task("crash.one")\ndef one(x):\n    return x\n')
  const server = await startServer(t, { POOL_SIZE: '1', ADMIN_TOKEN: TOKEN, TASK_MODULES: 'crash_tasks', PYTHONPATH: dir, PYTHONDONTWRITEBYTECODE: '1' })
  await writeFile(join(dir, 'crash_tasks.py'), 'from pyfleet import task\n@task("crash.one")\ndef one(x):\n    return x\n@task("crash.two")\ndef two(x):\n    return x\n')
  // The first call ends its worker; its replacement (begun before the reload) takes the
  // second, queued call and dies too, before the reload looks again; the next one begins
  // after the reload did, and no failed start happened.
  t.equal((await callTask(server.url, 'diag.work', { exit: 1 })).status, 502)
  const second = callTask(server.url, 'diag.work', { exit: 1 })
  await new Promise((resolve) => setTimeout(resolve, 2))
  const reload = await fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal((await second).status, 502)
  t.equal(reload.status, 200, await reload.clone().text())
  t.match(await reload.json(), { tasks: ['crash.one', 'crash.two'] })
  t.equal((await callTask(server.url, 'crash.two', {})).status, 200, 'the new task is served')
})
