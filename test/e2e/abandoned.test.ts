// Records of requests whose answers were never written (src/abandoned.ts): what the
// connection's close finds, and what it must not keep alive.

import { connect } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { rawExchange } from '../helpers/raw-http.js'
import { observed, startServer, waitFor } from '../helpers/server.js'

t.test('requests refused behind an answer that closes the connection are not taken for ones their client abandoned', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  // A GET with a body is answered with connection: close (its body is not read); the three behind it are refused.
  const answer = await rawExchange(server.url, 'GET /api/tasks HTTP/1.1\r\nhost: x\r\nx-request-id: closing-a\r\ncontent-length: 2\r\n\r\n{}' +
    'GET /api/tasks HTTP/1.1\r\nhost: x\r\nx-request-id: closing-b\r\n\r\n' + 'GET /nope HTTP/1.1\r\nhost: x\r\nx-request-id: closing-c\r\n\r\n' +
    'GET /%E0%A4%A HTTP/1.1\r\nhost: x\r\nx-request-id: closing-d\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 200 OK\r\n[^]*connection: close/i, 'the first is answered, and closes the connection')
  await waitFor(() => server.logs.filter((l) => /^request not run/.test(String(l.msg))).length === 3, 5000, 'a line for each refused request, the bad URL\'s too')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(server.logs.filter((l) => /request abandoned/.test(String(l.msg))).length, 0, 'none logged as abandoned: their client did not leave')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.notMatch(observed(metrics), /status_code="499"/, 'no 499')
  t.match(metrics, /^http_request_duration_seconds_count\{method="GET",route="\/api\/tasks",status_code="400"\} 1$/m, 'each measured with its refusal: the refused task list')
  t.match(metrics, /^http_request_duration_seconds_count\{method="GET",route="unmatched",status_code="400"\} 2$/m, 'and the refused /nope and bad URL')
  t.notOk(server.logs.some((l) => l.requestId === 'closing-d' && l.msg === 'request completed'), 'the bad URL\'s answer, never written, is not logged as completed')
})

t.test('an idle keep-alive connection does not keep its last request (and its body) alive', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  let live = 0
  const finalized = new FinalizationRegistry(() => { live-- })
  const server = await startServer(t, { POOL_SIZE: '1' }, {
    beforeListen: (app) => { app.addHook('onRequest', (request, _reply, done) => { live++; finalized.register(request, 0); done() }) }
  })
  const body = JSON.stringify({ x: 'a'.repeat(256 * 1024) })
  const sockets = await Promise.all(Array.from({ length: 5 }, async () => {
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
    t.teardown(() => socket.destroy())
    let answer = ''
    socket.setEncoding('utf8').on('data', (text: string) => { answer += text })
    socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
    await waitFor(() => answer.length > body.length, 30_000, 'the echo')
    return socket
  }))
  t.equal(sockets.length, 5)
  for (let i = 0; i < 10 && live > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    gc()
  }
  t.equal(live, 0, 'no request reachable once its answer was written, though its connection stays open')
})

t.test('a request cut short (the client ended its side) behind answers still under way is answered once they are written, and recorded once', async (t) => {
  // REQUEST_BODY_TIMEOUT_MS long, so that a 408 could not stand in for the 400.
  const server = await startServer(t, { POOL_SIZE: '1', REQUEST_BODY_TIMEOUT_MS: '60000' })
  const body = '{"sleep_ms":300}'
  const call = `POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  // Its body cut short: answered as itself.
  const bodyCut = await rawExchange(server.url, call + call +
    'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\nx-request-id: cut-behind\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{"a":', { endAfterWrite: true })
  t.same(bodyCut.match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 400'], 'the two calls ahead are answered, then the request cut short')
  t.match(bodyCut, /x-request-id: cut-behind\r\n[^]*"code":"HPE_INVALID_EOF_STATE"/, 'under its own id')
  // Its headers cut short: no request to name, answered as bytes cut short.
  const headersCut = await rawExchange(server.url, call + 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-ty', { endAfterWrite: true })
  t.same(headersCut.match(/HTTP\/1\.1 \d{3}/g), ['HTTP/1.1 200', 'HTTP/1.1 400'])
  t.match(headersCut, /"code":"HPE_INVALID_EOF_STATE"/)
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="POST",route="\/api\/tasks\/:name",status_code="400"\} 1$/m, 'the body cut short, under its route')
  t.match(metrics, /^http_request_duration_seconds_count\{method="other",route="unmatched",status_code="400"\} 1$/m, 'the headers cut short, as unmatched')
  t.notMatch(metrics, /status_code="408"/, 'no 408 as well')
  t.equal(server.logs.filter((l) => l.msg === 'request cut short').length, 2, 'a line each')
})

t.test('answers Fastify\'s hooks never see (a bad URL, a CONNECT) left waiting behind a call when the client leaves are recorded as abandoned, not completed', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  // Node's request events (a CONNECT's too: unusual-requests.ts emits one), to know the two behind the call were parsed.
  const parsed = new Set<string>()
  server.app.server.on('request', (request: import('node:http').IncomingMessage) => { parsed.add(String(request.headers['x-request-id'])) })
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  socket.on('error', () => {})
  const body = '{"sleep_ms":1000}'
  socket.write(`POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}` +
    'GET /%E0%A4%A HTTP/1.1\r\nhost: x\r\nx-request-id: behind-bad-url\r\n\r\n' +
    'CONNECT x:1 HTTP/1.1\r\nhost: x:1\r\nx-request-id: behind-connect\r\n\r\n')
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the call to run')
  await waitFor(() => parsed.has('behind-bad-url') && parsed.has('behind-connect'), 5000, 'the two behind it to be parsed')
  socket.resetAndDestroy()
  const lines = (id: string): Array<Record<string, any>> => server.logs.filter((l) => l.requestId === id)
  await waitFor(() => lines('behind-connect').length > 0 && lines('behind-bad-url').length > 0, 5000, 'their lines')
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 0, 5000, 'the call to end')
  t.match(lines('behind-bad-url'), [{ msg: 'request abandoned: the client left before its answer', code: 'FST_ERR_BAD_URL', method: 'GET', statusCode: 499 }], 'the bad URL: one line, abandoned')
  t.match(lines('behind-connect'), [{ msg: 'request abandoned: the client left before its answer', code: 'FST_ERR_NOT_FOUND', method: 'CONNECT' }], 'the CONNECT: one line, abandoned')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /^http_request_duration_seconds_count\{method="GET",route="unmatched",status_code="499"\} 1$/m, 'the bad URL: a 499')
  t.match(metrics, /^http_request_duration_seconds_count\{method="other",route="unmatched",status_code="499"\} 1$/m, 'the CONNECT: a 499')
  t.notMatch(metrics, /route="unmatched",status_code="(400|404)"/, 'not the answers nobody received')
})

t.test('framework errors pipelined many at a time do not pile listeners on their connection', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.name) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const server = await startServer(t, { POOL_SIZE: '1' })
  const badUrl = 'GET /api/tasks/%E0%A4%A HTTP/1.1\r\nhost: x\r\n\r\n'
  const answer = await rawExchange(server.url, badUrl.repeat(40), { enough: (text) => (text.match(/HTTP\/1\.1 400/g) ?? []).length === 40 })
  t.equal((answer.match(/"code":"FST_ERR_BAD_URL"/g) ?? []).length, 40, 'each answered')
  await waitFor(() => server.logs.filter((l) => l.code === 'FST_ERR_BAD_URL' && l.msg === 'request completed').length === 40, 5000, 'a line each')
  t.same(warnings, [], 'no MaxListenersExceededWarning')
})
