// The OpenAPI document tells the truth: real answers of a real server (the built-in
// tasks, a fixture's typed results, every error a call can get, the service routes)
// each match what GET /api/openapi.json says their operation answers: a status it
// lists, its content type, a body valid against that schema (JSON Schema 2020-12, as
// a generated client reads it), x-request-id on every answer. pyfleet's own components
// are read as closed: a field an answer has and the document lacks is a failure.

import t from 'tap'
import { pack } from 'msgpackr'
import { answerOf, DocumentedAnswers, parsedAnswer, type Answer } from '../helpers/openapi-answers.js'
import { rawExchange } from '../helpers/raw-http.js'
import { FIXTURES, getJson, startServer, type TestServer } from '../helpers/server.js'

const TOKEN = 'conformance-token-'.padEnd(32, 'x')

let server: TestServer
let documented: DocumentedAnswers
t.before(async () => {
  server = await startServer(t, {
    POOL_SIZE: '2',
    ADMIN_TOKEN: TOKEN,
    BODY_LIMIT_BYTES: '65536',
    TASK_MODULES: 'output_tasks',
    PYTHONPATH: FIXTURES
  })
  documented = new DocumentedAnswers(await getJson(`${server.url}/api/openapi.json`))
})

type Check = (what: string, method: string, path: string, answer: Answer, status: number) => void

interface Asserts { equal: (found: unknown, wanted: unknown, message: string) => unknown, same: (found: unknown, wanted: unknown, message: string) => unknown }

function checker (t: Asserts): Check {
  return (what, method, path, answer, status) => {
    t.equal(answer.status, status, `${what}: ${status}`)
    t.same(documented.problems(method, path, answer), [], `${what}: as documented`)
  }
}

async function post (path: string, body: string | Uint8Array, headers: Record<string, string>): Promise<Answer> {
  return await answerOf(`${server.url}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : new Uint8Array(body) })
}

const JSON_BODY = { 'content-type': 'application/json' }
const MSGPACK_BOTH = { 'content-type': 'application/msgpack', accept: 'application/msgpack' }

/**
 * Inputs of built-in tasks beyond the examples each declares (all of which are sent too): shapes the
 * examples do not have (nesting, every algorithm, options). A task without examples needs one here.
 */
const INPUTS: Record<string, unknown> = {
  echo: { a: 1, b: [1.5, 'two', null, true], c: { d: {} } },
  'xml.import': { xml: '<feed><item id="1"><title>One</title><tag>a</tag><tag>b</tag></item><item>text</item></feed>', record: 'item' },
  'csv.profile': { csv: 'name,age,born,ok\nada,36,1815-12-10,true\nbob,,1990-01-01,false\n' },
  'text.stats': { text: 'The quick brown fox. It jumps over the lazy dog!\n\nA second paragraph.', top: 3 },
  'stats.describe': { values: [1, 2, 2.5, 4, 10], bins: 3 },
  'stats.regression': { x: [1, 2, 3, 4], y: [2.1, 3.9, 6.2, 7.8], degree: 2 },
  'hash.digest': { data: Buffer.from('hello').toString('base64'), algorithms: ['sha256', 'md5', 'blake2b'] },
  'diag.work': { sleep_ms: 1, cpu_ms: 1, print: 'hi' }
}

t.test('every built-in task\'s answers, JSON and msgpack, match its operation', async (t) => {
  const check = checker(t)
  const { tasks } = await getJson(`${server.url}/api/tasks`) as { tasks: Array<{ name: string, schema: { examples?: unknown[] } }> }
  const builtIn = tasks.filter(({ name }) => !name.startsWith('out.'))
  t.ok(builtIn.length > 1, `${builtIn.length} built-in tasks`)
  for (const name of Object.keys(INPUTS)) t.ok(builtIn.some((task) => task.name === name), `${name}, in INPUTS (test/e2e/openapi-answers.test.ts), is a built-in task (one removed or renamed: remove or rename it there)`)
  const inputs = builtIn.flatMap(({ name, schema }) => [...(name in INPUTS ? [INPUTS[name]] : []), ...(schema.examples ?? [])].map((input) => [name, input] as const))
  for (const { name } of builtIn) t.ok(inputs.some(([task]) => task === name), `${name} has an input to send: give its schema "examples", or add one to INPUTS in test/e2e/openapi-answers.test.ts`)
  for (const [name, input] of inputs) {
    const path = `/api/tasks/${name}`
    t.same(documented.requestProblems('POST', path, 'application/json', input), [], `${name}: the JSON input is one the document takes`)
    t.same(documented.requestProblems('POST', path, 'application/msgpack', input), [], `${name}: and as msgpack`)
    check(`${name} JSON`, 'POST', path, await post(path, JSON.stringify(input), JSON_BODY), 200)
    check(`${name} msgpack`, 'POST', path, await post(path, pack(input), MSGPACK_BOTH), 200)
  }
  const raw: Array<[string, string, string | Uint8Array]> = [
    ['xml.import?record=item&limit=1', 'application/xml', '<feed><item a="1">x</item><item>y</item></feed>'],
    ['csv.profile?header=true&delimiter=%3B', 'text/csv', 'a;b\n1;x\n2;y\n'],
    ['text.stats?top=2', 'text/plain; charset=utf-8', 'One sentence. Two words here.'],
    ['hash.digest?algorithms=sha1', 'application/octet-stream', new Uint8Array([0, 1, 2, 255])]
  ]
  for (const [query, type, body] of raw) {
    check(`raw ${type}`, 'POST', `/api/tasks/${query.split('?')[0]}`, await post(`/api/tasks/${query}`, body, { 'content-type': type }), 200)
  }
  check('hash.digest with msgpack bin', 'POST', '/api/tasks/hash.digest', await post('/api/tasks/hash.digest', pack({ data: Buffer.from([1, 2, 3]) }), MSGPACK_BOTH), 200)
})

t.test('typed results, bytes and infinities included, match the document\'s JSON and msgpack schemas', async (t) => {
  const check = checker(t)
  for (const give of ['good', 'bytes', 'inf-ratio']) {
    const body = { give }
    check(`out.shaped ${give} JSON`, 'POST', '/api/tasks/out.shaped', await post('/api/tasks/out.shaped', JSON.stringify(body), JSON_BODY), 200)
    check(`out.shaped ${give} msgpack`, 'POST', '/api/tasks/out.shaped', await post('/api/tasks/out.shaped', pack(body), MSGPACK_BOTH), 200)
  }
  for (const binary of [true, false]) {
    check(`out.oneof binary=${binary}`, 'POST', '/api/tasks/out.oneof', await post('/api/tasks/out.oneof', JSON.stringify({ binary }), JSON_BODY), 200)
  }
  check('out.ided', 'POST', '/api/tasks/out.ided', await post('/api/tasks/out.ided', pack({ data: Buffer.from([7]) }), MSGPACK_BOTH), 200)
  check('a refused result', 'POST', '/api/tasks/out.shaped', await post('/api/tasks/out.shaped', JSON.stringify({ give: 'string-n' }), JSON_BODY), 500)
})

t.test('every error a task call can get is one its operation lists, with the Error schema', async (t) => {
  const check = checker(t)
  const echo = '/api/tasks/echo'
  check('bad JSON', 'POST', echo, await post(echo, '{"a":', JSON_BODY), 400)
  check('bad msgpack', 'POST', echo, await post(echo, new Uint8Array([0xc1]), { 'content-type': 'application/msgpack' }), 400)
  t.notSame(documented.requestProblems('POST', '/api/tasks/stats.describe', 'application/json', { values: [] }), [], 'the document refuses the input the server refuses')
  t.notSame(documented.requestProblems('POST', '/api/tasks/hash.digest', 'application/json', { data: 5 }), [], 'and, in JSON, anything but a string for binary data')
  t.same(documented.requestProblems('POST', '/api/tasks/hash.digest', 'application/msgpack', { data: new Uint8Array([1]) }), [], 'which msgpack carries as a bin')
  check('schema failure', 'POST', '/api/tasks/stats.describe', await post('/api/tasks/stats.describe', JSON.stringify({ values: [] }), JSON_BODY), 400)
  check('a query option with a JSON body', 'POST', '/api/tasks/csv.profile', await post('/api/tasks/csv.profile?header=true', JSON.stringify(INPUTS['csv.profile']), JSON_BODY), 400)
  check('a bad x-request-timeout-ms', 'POST', echo, await post(echo, '1', { ...JSON_BODY, 'x-request-timeout-ms': 'soon' }), 400)
  check('too large', 'POST', echo, await post(echo, JSON.stringify('x'.repeat(70_000)), JSON_BODY), 413)
  check('a type it does not take', 'POST', echo, await post(echo, 'hi', { 'content-type': 'text/plain' }), 415)
  check('the task refuses it', 'POST', '/api/tasks/csv.profile', await post('/api/tasks/csv.profile', JSON.stringify({ csv: 'a,b\n1\n' }), JSON_BODY), 422)
  check('the task raises', 'POST', '/api/tasks/diag.work', await post('/api/tasks/diag.work', JSON.stringify({ raise: 'boom' }), JSON_BODY), 500)
  check('the worker dies', 'POST', '/api/tasks/diag.work', await post('/api/tasks/diag.work', JSON.stringify({ exit: 3 }), JSON_BODY), 502)
  check('past the budget while running', 'POST', '/api/tasks/diag.work', await post('/api/tasks/diag.work', JSON.stringify({ sleep_ms: 2000 }), { ...JSON_BODY, 'x-request-timeout-ms': '100' }), 504)
  const expect = await rawExchange(server.url, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1\r\nexpect: later\r\n\r\n', { enough: (answer) => answer.endsWith('}') })
  check('an Expect it cannot meet', 'POST', echo, parsedAnswer(expect), 417)
  const gzip = await rawExchange(server.url, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n1\r\n1\r\n0\r\n\r\n', { enough: (answer) => answer.endsWith('}') })
  check('a transfer coding it lacks', 'POST', echo, parsedAnswer(gzip), 501)
})

t.test('503s of a full queue and of a budget spent waiting match the document, Retry-After included', async (t) => {
  const check = checker(t)
  const busy = await startServer(t, { POOL_SIZE: '1', QUEUE_LIMIT: '1' })
  const call = async (body: unknown, headers: Record<string, string> = {}): Promise<Answer> =>
    await answerOf(`${busy.url}/api/tasks/diag.work`, { method: 'POST', headers: { ...JSON_BODY, ...headers }, body: JSON.stringify(body) })
  const running = call({ sleep_ms: 1500 })
  await new Promise((resolve) => setTimeout(resolve, 300))
  const waiting = call({ sleep_ms: 1 }, { 'x-request-timeout-ms': '200' })
  await new Promise((resolve) => setTimeout(resolve, 50))
  check('QUEUE_FULL', 'POST', '/api/tasks/diag.work', await call({ sleep_ms: 1 }), 503)
  check('QUEUE_TIMEOUT', 'POST', '/api/tasks/diag.work', await waiting, 503)
  check('the call that held the worker', 'POST', '/api/tasks/diag.work', await running, 200)
})

t.test('the service routes\' answers match the document', async (t) => {
  const check = checker(t)
  for (const path of ['/api/tasks', '/api/tasks/echo', '/api/tasks/xml.import', '/api/openapi.json', '/api/queue-stats', '/health', '/ready', '/metrics']) {
    check(path, 'GET', path, await answerOf(`${server.url}${path}`), 200)
  }
  check('an unknown task described', 'GET', '/api/tasks/nope', await answerOf(`${server.url}/api/tasks/nope`), 404)
  const reload = `${server.url}/admin/reload`
  check('reload without a token', 'POST', '/admin/reload', await answerOf(reload, { method: 'POST' }), 401)
  check('reload with a wrong token', 'POST', '/admin/reload', await answerOf(reload, { method: 'POST', headers: { authorization: 'Bearer wrong' } }), 403)
  check('reload', 'POST', '/admin/reload', await answerOf(reload, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } }), 200)
  check('the snapshot while a call runs', 'GET', '/api/queue-stats', await (async () => {
    const running = post('/api/tasks/diag.work', JSON.stringify({ sleep_ms: 300 }), JSON_BODY)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const answer = await answerOf(`${server.url}/api/queue-stats`)
    await running
    return answer
  })(), 200)
})
