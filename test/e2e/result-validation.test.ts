// Output schemas on a real server: declared by a task (output_schema=), listed in
// GET /api/tasks, and with VALIDATE_RESULTS=1 checked against every result, small ones
// on the event loop and large ones on the offload thread, a value the schema refuses
// answered 500 RESULT_INVALID (logged, counted as failed, its worker kept).

import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { Packr } from 'msgpackr'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FIXTURES, ROOT, callTask, getJson, startServer, waitFor, workerPids } from '../helpers/server.js'

const ENV = { TASK_MODULES: 'output_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '2' }

async function failedCalls (url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const match = /^pyworker_calls_total\{task="out\.shaped",outcome="failed"\} (\d+)$/m.exec(text)
  return Number(match?.[1])
}

t.test('GET /api/tasks lists each task\'s output schema, null where none is declared', async (t) => {
  const server = await startServer(t, ENV)
  const shaped = await getJson(`${server.url}/api/tasks/out.shaped`)
  t.same(shaped.outputSchema.required, ['n'])
  t.equal(shaped.outputSchema.properties.blob.bytes, true)
  const undeclared = await getJson(`${server.url}/api/tasks/out.undeclared`)
  t.equal(undeclared.outputSchema, null)
  t.ok('outputSchema' in undeclared, 'present, as null')
})

t.test('without VALIDATE_RESULTS (the default), results are not checked: a value the schema refuses still goes back', async (t) => {
  const server = await startServer(t, { ...ENV, VALIDATE_RESULTS: '0' })
  const reply = await callTask(server.url, 'out.shaped', { give: 'string-n' })
  t.equal(reply.status, 200)
  t.same(reply.json, { n: 'one' })
})

t.test('with VALIDATE_RESULTS=1, results the schema accepts go back as before, bytes and wide integers included', async (t) => {
  const server = await startServer(t, { ...ENV, VALIDATE_RESULTS: '1' })
  const good = await callTask(server.url, 'out.shaped', { give: 'good' })
  t.equal(good.status, 200)
  t.same(good.json, { n: 1 })
  const bytes = await callTask(server.url, 'out.shaped', { give: 'bytes' })
  t.equal(bytes.status, 200, 'bytes match {"bytes": true}')
  t.same(bytes.json, { n: 2, blob: Buffer.from([0, 1, 255]).toString('base64') })
  const big = await callTask(server.url, 'out.shaped', { give: 'big' })
  t.equal(big.status, 200, 'an integer past 2^53 (a BigInt in Node) is an integer')
  t.equal(big.text, `{"n":"${2n ** 60n + 1n}"}`, 'and exact, as a decimal string in JSON')
  const packed = await fetch(`${server.url}/api/tasks/out.shaped`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/msgpack' }, body: '{"give":"big"}' })
  t.equal(packed.status, 200)
  t.same(new Packr({ int64AsType: 'bigint', useRecords: false }).unpack(Buffer.from(await packed.arrayBuffer())), { n: 2n ** 60n + 1n }, 'msgpack answers keep the worker\'s bytes')
  const inf = await callTask(server.url, 'out.shaped', { give: 'inf-ratio' })
  t.equal(inf.status, 200, 'an infinite float passes as the null JSON answers write: ["number", "null"]')
  t.same(inf.json, { n: 4, ratio: null })
  const large = await callTask(server.url, 'out.shaped', { give: 'large-good' })
  t.equal(large.status, 200, 'a large result, checked on the offload thread')
  t.equal(large.json.pad.length, 300_000)
  const undeclared = await callTask(server.url, 'out.undeclared', [1, 'two'])
  t.equal(undeclared.status, 200, 'a task without an output schema is not checked')
  t.same(undeclared.json, { anything: [1, 'two'] })
})

t.test('with VALIDATE_RESULTS=1, a result the schema refuses is a 500 RESULT_INVALID naming the place, logged, counted as failed; the worker stays', async (t) => {
  const server = await startServer(t, { ...ENV, VALIDATE_RESULTS: '1' })
  const pids = workerPids(server)
  const cases: Array<[string, RegExp]> = [
    ['string-n', /^task out\.shaped returned a value its output schema refuses: result\/n must be integer \(got string\)$/],
    ['float', /result\/n must be integer \(got number\)$/],
    ['inf-n', /result\/n must be integer \(got -Infinity \(null in JSON\)\)$/],
    ['many-wrong', /result\/list\/\d+ must be string \(got integer\); 199 more \(details lists the first 50\)$/],
    ['two-wrong', /result\/(n must be integer \(got string\)|pad must be string \(got integer\)); 1 more in details$/],
    ['missing', /result must have required property 'n'$/],
    ['binary', /result must not be binary \(msgpack bin\); 1 more in details$/],
    ['extra', /result must NOT have additional properties \("secret"\)$/],
    ['large-bad', /result\/n must be integer \(got string\)$/]
  ]
  for (const [give, message] of cases) {
    const reply = await callTask(server.url, 'out.shaped', { give }, { 'x-request-id': `bad-${give}` })
    t.equal(reply.status, 500, give)
    t.equal(reply.json.code, 'RESULT_INVALID', give)
    t.match(reply.json.message, message, give)
    t.ok(Array.isArray(reply.json.details) && reply.json.details.length > 0, `${give}: Ajv's errors as details`)
    t.ok(reply.json.details.length <= 50, `${give}: at most 50 of them`)
    t.notMatch(reply.text, /not shown|xxxxxxxx/, `${give}: the value itself is not shown`)
    const logged = server.logs.find((line) => line.requestId === `bad-${give}` && line.level === 50 && /output schema refuses/.test(line.msg))
    t.ok(logged, `${give}: logged at error under its request id`)
    t.equal(logged?.task, 'out.shaped')
    // Three strings per detail, at most 20: Ajv's params (values of any type) made a log index refuse lines.
    t.ok(logged?.details.length <= 20 && logged?.details.every((d: Record<string, unknown>) => Object.keys(d).join() === 'instancePath,keyword,message' && Object.values(d).every((v) => typeof v === 'string')), `${give}: the logged details are bounded strings`)
  }
  const packed = await fetch(`${server.url}/api/tasks/out.shaped`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/msgpack' }, body: '{"give":"string-n"}' })
  t.equal(packed.status, 500, 'a msgpack answer is checked too')
  t.equal(await failedCalls(server.url), cases.length + 1, 'each counted as a failed call')
  t.same(workerPids(server), pids, 'no worker was replaced: the task returned, it did not break')
  const after = await callTask(server.url, 'out.shaped', { give: 'good' })
  t.equal(after.status, 200)
})

t.test('a worker serving code whose output schema the table does not have yet is checked against its own declaration', async (t) => {
  // As during a rolling reload, before the table switches: here a crash replacement that
  // imported the task after its file changed (the table keeps what the first workers declared).
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-drift-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const modeFile = join(dir, 'mode')
  await writeFile(modeFile, 'int')
  const server = await startServer(t, { TASK_MODULES: 'drift_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1', DRIFT_MODE_FILE: modeFile })
  const before = await callTask(server.url, 'drift.value', {})
  t.same([before.status, before.json.n], [200, 1])
  await writeFile(modeFile, 'str')
  const [pid] = workerPids(server)
  process.kill(pid, 'SIGKILL')
  await waitFor(() => { const pids = workerPids(server); return pids.length === 1 && pids[0] !== pid }, 10_000, 'a replacement worker')
  const after = await callTask(server.url, 'drift.value', {})
  t.equal(after.status, 200, `the new code's result, checked against the new code's schema: ${after.text}`)
  t.equal(after.json.n, 'one')
  t.equal((await getJson(`${server.url}/api/tasks/drift.value`)).outputSchema.properties.n.type, 'integer', 'while the table still lists the first declaration')

  // A declaration Ajv refuses (a reload would refuse the worker; a crash replacement cannot be):
  // the table's schema is used, and the worker is not taken for a failing one.
  await writeFile(modeFile, 'bad')
  const [strPid] = workerPids(server)
  process.kill(strPid, 'SIGKILL')
  await waitFor(() => { const pids = workerPids(server); return pids.length === 1 && pids[0] !== strPid }, 10_000, 'a replacement worker')
  const [badPid] = workerPids(server)
  for (let i = 0; i < 5; i++) {
    const reply = await callTask(server.url, 'drift.value', {})
    t.equal(reply.status, 200, `call ${i + 1}: checked against the table's schema: ${reply.text}`)
  }
  t.same(workerPids(server), [badPid], 'the same worker served them all')
})

t.test('a msgpack bin is no object: refused with 400 where the input schema wants one, not passed to the task as bytes', async (t) => {
  const server = await startServer(t, ENV)
  const post = async (body: Buffer): Promise<{ status: number, json: any }> => {
    const reply = await fetch(`${server.url}/api/tasks/out.ided`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: new Uint8Array(body) as unknown as BodyInit })
    return { status: reply.status, json: await reply.json() }
  }
  const bin = await post(new Packr({ useRecords: false }).pack(Buffer.from('abc')))
  t.equal(bin.status, 400)
  t.same([bin.json.code, bin.json.message], ['FST_ERR_VALIDATION', 'body must not be binary (msgpack bin)'])
  const map = await post(new Packr({ useRecords: false }).pack({ data: Buffer.from('abc') }))
  t.equal(map.status, 200, 'a map is, with bytes where the schema says bytes')
  const wrong = await post(new Packr({ useRecords: false }).pack({ data: 'text' }))
  t.same([wrong.status, wrong.json.message], [400, 'body/data must be binary (msgpack bin)'], 'the bytes keyword says what it wants')
})

t.test('an output schema Ajv refuses stops the start, naming the task, its module and the schema', async (t) => {
  const child = spawn(process.execPath, ['dist/server.js', '--check'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, TASK_MODULES: 'bad_output_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk) => { output += String(chunk) })
  child.stderr.on('data', (chunk) => { output += String(chunk) })
  const [code] = await once(child, 'exit')
  t.equal(code, 1)
  t.match(output, /task bad\.output \(at bad_output_tasks\.py, line 6\) declares an invalid output schema: strict mode: unknown keyword: "propertys"/)
})
