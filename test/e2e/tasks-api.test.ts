// The task API through a listening server and the real pool of four workers.

import t from 'tap'
import { connect, type Socket } from 'node:net'
import { pack, unpack } from 'msgpackr'
import { rawExchange } from '../helpers/raw-http.js'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { resolvePython } from '../../src/python-path.js'
import { ROOT, callTask, getJson, startServer, startServerProcess, waitFor, type TestServer } from '../helpers/server.js'

let server: TestServer
let url: string
t.before(async () => {
  server = await startServer(t, { BODY_LIMIT_BYTES: '1048576' })
  url = server.url
})

t.test('echoes JSON values: nested, unicode, numbers, null', async (t) => {
  const value = { text: 'héllo wörld ✓ 🐍', nested: { list: [1, 2.5, -3, [true, false, null]], empty: {} }, big: 2 ** 53 - 1 }
  const reply = await callTask(url, 'echo', value)
  t.equal(reply.status, 200)
  t.same(reply.json, value)
  t.match(reply.headers.get('content-type'), /application\/json/)
  for (const scalar of ['a string', 42, null, true, [1, 'two']]) {
    t.same((await callTask(url, 'echo', JSON.stringify(scalar))).json, scalar)
  }
})

t.test('echoes msgpack in and out, with bytes staying bytes', async (t) => {
  const value = { bytes: Buffer.from([0, 1, 2, 255]), text: 'ünïcode', n: 7 }
  const response = await fetch(`${url}/api/tasks/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack', accept: 'application/msgpack' },
    body: new Uint8Array(pack(value))
  })
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'application/msgpack')
  const back = unpack(Buffer.from(await response.arrayBuffer()))
  t.ok(Buffer.from(back.bytes).equals(value.bytes), 'bytes round-trip')
  t.equal(back.text, value.text)
  for (const [accept, type] of [
    ['application/json, application/msgpack;q=0', 'application/json; charset=utf-8'],
    ['application/json;q=1, application/msgpack;q=0.1', 'application/json; charset=utf-8'],
    ['application/x-msgpack; q=0.5', 'application/msgpack'],
    ['application/json;q=0.5, application/msgpack', 'application/msgpack'],
    // Both named at the same quality: msgpack, which the client named although JSON is the default.
    ['application/json, application/msgpack', 'application/msgpack'],
    // Exact names only, and wildcards cover JSON, the default.
    ['application/notmsgpack', 'application/json; charset=utf-8'],
    ['application/msgpack;q=0.1, */*', 'application/json; charset=utf-8'],
    // The most specific range covering JSON decides its quality.
    ['application/msgpack;q=0.5, application/json;q=0.1, */*', 'application/msgpack'],
    ['application/json;q=0, */*, application/msgpack;q=0.5', 'application/msgpack'],
    ['*/*, application/*;q=0, application/msgpack;q=0.5', 'application/msgpack'],
    ['application/msgpack;q=abc', 'application/json; charset=utf-8'],
    ['Application/MsgPack', 'application/msgpack'],
    // JSON refused, msgpack covered by a wildcard: msgpack. Not named, msgpack never wins by quality alone.
    ['application/json;q=0, */*', 'application/msgpack'],
    ['application/json;q=0.2, application/*;q=0.5', 'application/json; charset=utf-8'],
    ['application/json;q=0.9, */*', 'application/json; charset=utf-8'],
    ['application/json;q=0, application/*;q=0.5', 'application/msgpack'],
    ['*/*;q=0.5', 'application/json; charset=utf-8'],
    ['text/html;q=0.9, */*;q=0.8', 'application/json; charset=utf-8'],
    // Neither acceptable: JSON, rather than a 406.
    ['application/json;q=0', 'application/json; charset=utf-8']
  ]) {
    const negotiated = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', accept }, body: '{"a":1}' })
    t.equal(negotiated.headers.get('content-type'), type, `Accept: ${accept}`)
    t.equal(negotiated.headers.get('vary'), 'accept', 'a cache must not give one client the other\'s answer')
  }
})

t.test('echoes an object of more than 65,535 keys, as JSON and as msgpack', async (t) => {
  const wide = Object.fromEntries(Array.from({ length: 66_000 }, (_, i) => [`k${i}`, i]))
  const reply = await callTask(url, 'echo', wide)
  t.equal(reply.status, 200)
  t.same(reply.json, wide)
  const response = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/msgpack' }, body: JSON.stringify(wide) })
  t.same(unpack(Buffer.from(await response.arrayBuffer())), wide)
})

t.test('writes bytes as base64 in JSON responses', async (t) => {
  const response = await fetch(`${url}/api/tasks/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack' },
    body: new Uint8Array(pack({ data: Buffer.from('hello'), list: [Buffer.from([0, 255]), 'text'], lookalike: { type: 'Buffer', data: [1, 2] } }))
  })
  t.same(await response.json(), {
    data: Buffer.from('hello').toString('base64'),
    list: ['AP8=', 'text'],
    lookalike: { type: 'Buffer', data: [1, 2] }
  }, "bytes anywhere become base64; a task's own object shaped like Buffer's JSON stays as it is")
  const top = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: new Uint8Array(pack(Buffer.from('hi'))) })
  t.equal(await top.json(), 'aGk=', 'bytes at the top level too')
})

t.test('large integers from Python reach JSON clients without BigInt errors', async (t) => {
  const response = await fetch(`${url}/api/tasks/echo`, {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack' },
    body: new Uint8Array(pack({ n: 2n ** 62n }))
  })
  t.equal(response.status, 200)
  t.same(await response.json(), { n: String(2n ** 62n) })
})

t.test('sets server-timing and x-request-id', async (t) => {
  const reply = await callTask(url, 'echo', {}, { 'x-request-id': 'client-id.42_x' })
  t.match(reply.headers.get('server-timing'), /^queue;dur=\d+\.\d+, run;dur=\d+\.\d+$/)
  t.equal(reply.headers.get('x-request-id'), 'client-id.42_x')
  const unsafe = await callTask(url, 'echo', {}, { 'x-request-id': 'bad id\twith spaces' })
  t.not(unsafe.headers.get('x-request-id'), 'bad id\twith spaces')
  t.match(unsafe.headers.get('x-request-id'), /^[A-Za-z0-9._-]+$/)
  const tooLong = await callTask(url, 'echo', {}, { 'x-request-id': 'a'.repeat(129) })
  t.not(tooLong.headers.get('x-request-id'), 'a'.repeat(129))
  const longest = await callTask(url, 'echo', {}, { 'x-request-id': 'a'.repeat(128) })
  t.equal(longest.headers.get('x-request-id'), 'a'.repeat(128), '128 characters are kept')
})

t.test('a schema violation is a 400 and borrows no worker', async (t) => {
  const before = server.app.pool.members().reduce((n, w) => n + w.calls, 0)
  const reply = await callTask(url, 'diag.work', { sleep_ms: '1' })
  t.equal(reply.status, 400)
  t.equal(reply.json.code, 'FST_ERR_VALIDATION')
  t.match(reply.json.message, /sleep_ms must be integer/)
  t.ok(Array.isArray(reply.json.details))
  const unknownField = await callTask(url, 'diag.work', { sleep_msec: 1 })
  t.equal(unknownField.status, 400)
  const after = server.app.pool.members().reduce((n, w) => n + w.calls, 0)
  t.equal(after, before, 'no call reached a worker')
})

t.test('bad JSON and bad msgpack are 400 INVALID_INPUT with details', async (t) => {
  const bad = await callTask(url, 'echo', '{"a":\n  1,,}')
  t.equal(bad.status, 400)
  t.equal(bad.json.code, 'INVALID_INPUT')
  t.same(bad.json.details, { line: 2, column: 5 })
  const cut = await callTask(url, 'echo', '{"a":\n  [1,')
  t.match(cut.json, { code: 'INVALID_INPUT', message: /Unexpected end of JSON input/, details: { line: 2, column: 6 } }, 'a body that ends too soon: where it ends')
  const proto = await callTask(url, 'echo', '{"__proto__": {"polluted": true}}')
  t.match([proto.status, proto.json], [400, { code: 'INVALID_INPUT', message: /^the body holds a __proto__ key, which is refused/ }], 'said as what it is, not as invalid JSON')
  const constructor = await callTask(url, 'echo', '{"constructor":{"prototype":{"x":1}}}')
  t.same([constructor.status, constructor.json], [200, { constructor: { prototype: { x: 1 } } }], 'ordinary keys, as in msgpack')
  const response = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: Buffer.from([0xc1]) })
  t.equal(response.status, 400)
  t.equal((await response.json()).code, 'INVALID_INPUT')
  for (const key of [[0xc4, 0x01, 0x6b], [0x92, 0x01, 0x02]]) { // {b'k': 1}, {(1, 2): 1}
    const keyed = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: Buffer.from([0x81, ...key, 0x01]) })
    t.same([keyed.status, (await keyed.json()).message], [400, 'body is not valid msgpack: a map key is bytes, an array or a map; keys must be strings, numbers, booleans or nil'])
  }
  const undef = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: Buffer.from([0x81, 0xa1, 0x61, 0xd4, 0x00, 0x00]) })
  t.equal(undef.status, 400, 'msgpack extension types are refused in Node, not sent to a worker')
  t.equal(server.app.pool.liveWorkers, 4, 'no worker was harmed')
})

t.test('msgpack reference extensions are refused before they can expand', async (t) => {
  // msgpackr's structured-clone extensions: 0xd6 0x69 <id> names the value that
  // follows, 0xd6 0x70 <id> points back at it. Level k = [level k-1, pointer to
  // level k-1]: 528 bytes that decode to a value with 2^40 paths.
  const id = (kind: number, n: number): Buffer => Buffer.from([0xd6, kind, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff])
  let body = Buffer.concat([id(0x69, 0), Buffer.from([0x91, 0x01])])
  for (let k = 1; k <= 40; k++) body = Buffer.concat([id(0x69, k), Buffer.from([0x92]), body, id(0x70, k - 1)])
  const response = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body })
  t.equal(response.status, 400)
  const error = await response.json()
  t.equal(error.code, 'INVALID_INPUT')
  t.match(error.message, /extension type/)
  t.equal((await callTask(url, 'echo', { still: 'here' })).status, 200, 'the server still answers')
})

t.test('strings that are not Unicode are a 400 in Node, and no worker dies', async (t) => {
  const pids = (await getJson(`${url}/api/queue-stats`)).workers.map((w: { pid: number }) => w.pid).sort()
  for (const text of ['{"a":"\\ud800"}', '{"\\udc00":1}', '"x\\udbff"', '[["ok","\\ud83d"]]']) {
    const reply = await callTask(url, 'echo', text)
    t.equal(reply.status, 400, text)
    t.equal(reply.json.code, 'INVALID_INPUT', text)
    t.match(reply.json.message, /lone UTF-16 surrogate/, text)
  }
  // The same from msgpack: a str holding the CESU-8 bytes of U+D800 is not UTF-8.
  const msgpack = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: Buffer.from([0xa3, 0xed, 0xa0, 0x80]) })
  t.equal(msgpack.status, 400)
  t.match((await msgpack.json()).message, /not valid UTF-8/)
  t.equal((await callTask(url, 'echo', '{"pair":"\\ud83d\\udc0d"}')).json.pair, '🐍', 'a surrogate pair is fine')
  const stats = await getJson(`${url}/api/queue-stats`)
  t.same(stats.workers.map((w: { pid: number }) => w.pid).sort(), pids, 'the same four workers: none died')
  t.equal(stats.pool.available, 4)
})

t.test('a JSON body whose bytes are not UTF-8 is a 400 naming the first bad byte, not text with U+FFFD in it', async (t) => {
  const latin1 = Buffer.from('{"a":"caf\xe9"}', 'latin1')
  const untyped = await fetch(`${url}/api/tasks/echo`, { method: 'POST', body: latin1 }) // no content type: JSON too
  t.equal(untyped.headers.get('content-type'), 'application/json; charset=utf-8')
  for (const reply of [await callTask(url, 'echo', latin1), { status: untyped.status, json: await untyped.json() }]) {
    t.equal(reply.status, 400)
    t.equal(reply.json.code, 'INVALID_INPUT')
    t.equal(reply.json.message, 'body is not valid UTF-8: byte 0xe9 at offset 9 (counting from 0); JSON must be UTF-8: was it sent as Latin-1 or another charset?')
    t.same(reply.json.details, { offset: 9 })
  }
  // A real U+FFFD (EF BF BD) before the bad byte is text, and is skipped; one alone is fine.
  const both = Buffer.concat([Buffer.from('{"a":"\ufffd ok","b":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')])
  t.equal((await callTask(url, 'echo', both)).json.details?.offset, 19)
  t.same((await callTask(url, 'echo', '{"a":"\ufffd"}')).json, { a: '\ufffd' })
  // A multi-byte character cut off at the end of the body.
  const cut = Buffer.concat([Buffer.from('"'), Buffer.from('€').subarray(0, 2)])
  t.equal((await callTask(url, 'echo', cut)).json.details?.offset, 1)
})

t.test('a text body whose bytes are not UTF-8 is a 400 naming the first bad byte, and how to say its charset', async (t) => {
  const reply = await callTask(url, 'text.stats', Buffer.from('one caf\xe9 later', 'latin1'), { 'content-type': 'text/plain' })
  t.equal(reply.status, 400)
  t.match(reply.json, { code: 'INVALID_INPUT', message: 'body is not valid UTF-8 text: byte 0xe9 at offset 7 (counting from 0); was it sent as Latin-1 (say charset=iso-8859-1) or another charset?', details: { offset: 7 } })
  const said = await callTask(url, 'text.stats', Buffer.from('one caf\xe9 later', 'latin1'), { 'content-type': 'text/plain; charset=iso-8859-1' })
  t.match([said.status, said.json], [200, { words: 3 }], 'with its charset said, the same bytes are text')
})

t.test('an HTTP/1.1 request without Host is a 400 in the error shape, with its x-request-id; the connection closes', async (t) => {
  const answer = await rawExchange(url, 'POST /api/tasks/echo HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}')
  t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(answer, /\r\nx-request-id: [0-9a-f-]{36}\r\n/i)
  t.match(answer, /\r\nconnection: close\r\n/i)
  t.match(answer, /\{"statusCode":400,"code":"MISSING_HOST_HEADER","error":"Bad Request","message":"an HTTP\/1\.1 request must have a Host header \(RFC 9112 §3\.2\)"\}$/)
  // HTTP/1.0 has no such rule.
  t.match(await rawExchange(url, 'POST /api/tasks/echo HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}'), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n\{\}$/)
})

t.test('a request with two Host lines is a 400 in the error shape, of either HTTP version; the connection closes', async (t) => {
  // RFC 9112 §3.2 again: Node kept the first, where a proxy in front may have routed by the other.
  for (const version of ['1.1', '1.0']) {
    const answer = await rawExchange(url, `POST /api/tasks/echo HTTP/${version}\r\nHost: a.example\r\ncontent-type: application/json\r\nHOST: b.example\r\ncontent-length: 2\r\n\r\n{}`)
    t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/, version)
    t.match(answer, /\r\nconnection: close\r\n/i)
    t.match(answer, /\{"statusCode":400,"code":"DUPLICATE_HOST_HEADER","error":"Bad Request","message":"a request must have one Host header, not 2 \(RFC 9112 §3\.2\)"\}$/)
  }
})

t.test('a request with two Content-Type or two Authorization lines is a 400 DUPLICATE_HEADER; the connection closes', async (t) => {
  // RFC 9110 §5.3: neither is a list. Node kept the first: text/plain here, where a firewall
  // in front that reads the last one checked the body as JSON; and the first token, where a
  // proxy may have let the request through on the other.
  const twoTypes = await rawExchange(url, 'POST /api/tasks/text.stats HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-type: application/json\r\ncontent-length: 2\r\n\r\n{}')
  t.match(twoTypes, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(twoTypes, /\r\nconnection: close\r\n/i)
  t.match(twoTypes, /\{"statusCode":400,"code":"DUPLICATE_HEADER","error":"Bad Request","message":"a request must have one Content-Type header, not 2 \(RFC 9110 §5\.3: it is no list\): a proxy in front may have read another than the one pyfleet would"\}$/)
  const twoTokens = await rawExchange(url, 'GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAUTHORIZATION: Bearer b\r\n\r\n')
  t.match(twoTokens, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(twoTokens, /"code":"DUPLICATE_HEADER"[^}]*"message":"a request must have one Authorization header, not 2 /)
  // One of each is as before.
  t.match(await rawExchange(url, 'POST /api/tasks/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}'), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n\{\}$/)
})

t.test('the probe and status answers, which change every second, say Cache-Control: no-store; the task list does not', async (t) => {
  // RFC 9111 §4.2.2: a cache may give a 200 to a GET heuristic freshness; a stale "ready" or stale metrics would mislead.
  for (const path of ['/health', '/ready', '/metrics', '/api/queue-stats']) {
    const reply = await fetch(`${url}${path}`)
    t.equal(reply.status, 200, path)
    t.equal(reply.headers.get('cache-control'), 'no-store', path)
    await reply.arrayBuffer()
  }
  const tasks = await fetch(`${url}/api/tasks`)
  t.equal(tasks.headers.get('cache-control'), null, 'the task list changes only with a reload')
  await tasks.arrayBuffer()
})

t.test('a URL longer than Node\'s header limit is a 414 in the error shape, not a 431 about headers; large headers are still 431', async (t) => {
  // Node counts the request line against --max-http-header-size, and its error is the same either way.
  const longUrl = await rawExchange(url, `GET /health?${'a'.repeat(20_000)} HTTP/1.1\r\nhost: x\r\n\r\n`)
  t.match(longUrl, /^HTTP\/1\.1 414 URI Too Long\r\n/)
  t.match(longUrl, /\r\nconnection: close\r\n/i)
  t.match(longUrl, /"statusCode":414,"code":"HPE_HEADER_OVERFLOW","error":"URI Too Long","message":"the request's URL is longer than Node accepts \(its request line counts against --max-http-header-size\): send a task's input in the body, not the query string"/)
  const longHeader = await rawExchange(url, `GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.match(longHeader, /^HTTP\/1\.1 431 /)
  t.match(longHeader, /"message":"the request headers are larger than Node accepts \(--max-http-header-size\)"/)
})

t.test('JSON in a charset other than UTF-8 is 415', async (t) => {
  const reply = await callTask(url, 'echo', Buffer.from('{"a":"\xe9"}', 'latin1'), { 'content-type': 'application/json; charset=iso-8859-1' })
  t.equal(reply.status, 415)
  t.equal(reply.json.code, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
  t.match(reply.json.message, /UTF-8/)
  const utf8 = await callTask(url, 'echo', '{"a":"é"}', { 'content-type': 'application/json; charset=UTF-8' })
  t.same(utf8.json, { a: 'é' })
  const ascii = await callTask(url, 'echo', '{"a":"e"}', { 'content-type': 'application/json; charset=us-ascii' })
  t.same(ascii.json, { a: 'e' }, 'ASCII is a subset of UTF-8')
})

t.test('input nested deeper than the limit is refused in Node', async (t) => {
  const deep = '['.repeat(5000) + ']'.repeat(5000)
  const reply = await callTask(url, 'echo', deep)
  t.equal(reply.status, 400)
  t.equal(reply.json.code, 'INVALID_INPUT')
  t.match(reply.json.message, /nests deeper/)
})

t.test('an unknown task is 404 TASK_NOT_FOUND', async (t) => {
  const reply = await callTask(url, 'no.such.task', {})
  t.equal(reply.status, 404)
  t.equal(reply.json.code, 'TASK_NOT_FOUND')
  const described = await fetch(`${url}/api/tasks/no.such.task`)
  t.equal(described.status, 404)
  const beyond = await fetch(`${url}/api/tasks/echo/extra`, { method: 'POST' })
  t.equal(beyond.status, 404)
  t.match(await beyond.json(), { code: 'FST_ERR_NOT_FOUND', message: /^no route POST \/api\/tasks\/echo\/extra: run a task with POST/ }, 'a missing route, not a missing task')
})

t.test('a method a path does not have is a 405 whose Allow line lists those it has', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['PUT', '/api/tasks/echo', 'GET, HEAD, POST'],
    ['DELETE', '/api/tasks/no.such.task?x=1', 'GET, HEAD, POST'], // the path's methods, whether or not the task exists
    ['OPTIONS', '/api/tasks/echo', 'GET, HEAD, POST'],
    ['POST', '/api/tasks', 'GET, HEAD'],
    ['POST', '/health', 'GET, HEAD'],
    ['PATCH', '/metrics', 'GET, HEAD']
  ]
  for (const [method, path, allow] of cases) {
    const response = await fetch(`${url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: method === 'OPTIONS' ? undefined : '{"a":1}' })
    t.equal(response.status, 405, `${method} ${path}`)
    t.equal(response.headers.get('allow'), allow)
    // Answered before the body is read, as a 404 is: a connection with a body on it closes.
    t.equal(response.headers.get('connection'), method === 'OPTIONS' ? 'keep-alive' : 'close')
    t.same(await response.json(), { statusCode: 405, code: 'METHOD_NOT_ALLOWED', error: 'Method Not Allowed', message: `${method} is not a method of ${path.split('?')[0]}: it answers ${allow}` })
  }
  const head = await fetch(`${url}/api/tasks/echo/extra`, { method: 'HEAD' })
  t.equal(head.status, 404, 'a path no route has stays a 404, whatever the method')
  t.equal(head.headers.get('allow'), null)
  await waitFor(() => server.logs.filter((line) => line.msg === 'request completed' && line.code === 'METHOD_NOT_ALLOWED').length === cases.length, 2000, 'a log line with its code for each')
})

t.test('a body over BODY_LIMIT_BYTES is 413', async (t) => {
  const reply = await callTask(url, 'echo', JSON.stringify({ s: 'x'.repeat(1_100_000) }))
  t.equal(reply.status, 413)
  t.equal(reply.json.code, 'FST_ERR_CTP_BODY_TOO_LARGE')
  t.equal(reply.json.message, 'the body is over BODY_LIMIT_BYTES (1048576 bytes)', 'the message names the limit and its setting')
})

t.test('a compressed body is 415, not parsed or hashed as its compressed bytes', async (t) => {
  const { gzipSync } = await import('node:zlib')
  for (const [type, body] of [['application/json', '{"a":1}'], ['application/octet-stream', 'hello world'], ['application/msgpack', pack({ a: 1 })]] as const) {
    const response = await fetch(`${url}/api/tasks/${type === 'application/octet-stream' ? 'hash.digest' : 'echo'}`, {
      method: 'POST',
      headers: { 'content-type': type, 'content-encoding': 'gzip' },
      body: gzipSync(body)
    })
    t.equal(response.status, 415, type)
    t.equal(response.headers.get('accept-encoding'), 'identity', 'says which coding would do (RFC 9110 §15.5.16)')
    t.match(await response.json(), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', message: 'content-encoding "gzip" is not supported; send the body uncompressed' })
  }
  for (const none of ['identity', '', ' , identity', 'identity, IDENTITY']) {
    const identity = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': none }, body: '[1]' })
    t.equal(identity.status, 200, `${JSON.stringify(none)} is no encoding (empty list members do not count: RFC 9110 §5.6.1)`)
  }
  const listed = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'identity, gzip' }, body: '[1]' })
  t.equal(listed.status, 415, 'a coding in a list is one')
  t.match(await listed.json(), { message: 'content-encoding "gzip" is not supported; send the body uncompressed' })
})

t.test('a transfer coding other than chunked is 501, not parsed or hashed as its compressed bytes', async (t) => {
  const { gzipSync } = await import('node:zlib')
  const gzipped = gzipSync('hello world')
  const chunked = `${gzipped.length.toString(16)}\r\n${gzipped.toString('latin1')}\r\n0\r\n\r\n`
  const answer = await rawExchange(url, `POST /api/tasks/hash.digest HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: gzip, chunked\r\n\r\n${chunked}`, { enough: (a) => a.endsWith('}') })
  t.match(answer, /^HTTP\/1\.1 501 /)
  t.match(answer, /\r\nx-request-id: /)
  t.match(answer, /"code":"UNSUPPORTED_TRANSFER_CODING".*"message":"transfer coding \\"gzip\\" is not supported; send the body with transfer-encoding: chunked alone, or with a content-length"/)
  const plain = await rawExchange(url, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: Chunked\r\n\r\n3\r\n[1]\r\n0\r\n\r\n', { enough: (a) => a.endsWith(']') })
  t.match(plain, /^HTTP\/1\.1 200 [\s\S]*\[1\]$/, 'chunked alone, in any case, is fine')
})

t.test('an Expect other than 100-continue gets 417 in the error shape, and the task does not run', async (t) => {
  const answer = await rawExchange(url, 'POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 200-ok\r\ncontent-length: 19\r\n\r\n{"print":"ran-417"}', { enough: (a) => a.endsWith('}') })
  t.match(answer, /^HTTP\/1\.1 417 Expectation Failed\r\n/)
  t.match(answer, /\r\nx-request-id: /)
  t.match(answer, /"code":"EXPECTATION_FAILED".*"message":"expect: \\"200-ok\\" is not an expectation pyfleet can meet; only 100-continue is"/)
  t.notOk(server.logs.some((l) => l.msg === 'ran-417'), 'the task never ran')
})

t.test('CONNECT gets a 404 in the error shape, not a connection closed without a word', async (t) => {
  for (const target of ['example.com:443', '/api/tasks/echo']) {
    const answer = await rawExchange(url, `CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`)
    t.match(answer, /^HTTP\/1\.1 404 Not Found\r\n/, target)
    t.match(answer, /\r\nx-request-id: /)
    t.match(answer, /\r\nconnection: close\r\n/i, 'and the connection closes: Node reads no more from it')
    t.match(answer, new RegExp(`"code":"FST_ERR_NOT_FOUND".*"message":"no route CONNECT ${target}`))
  }
  t.match(server.logs.find((l) => l.method === 'CONNECT' && l.url === 'example.com:443'), { statusCode: 404, msg: 'request completed', requestId: String })
})

t.test('CONNECT pipelined behind answers still under way waits its turn: the server lives on, and every answer comes in order', async (t) => {
  const body = '{"sleep_ms":300}'
  const call = `POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  for (const ahead of ['GET /health HTTP/1.1\r\nhost: x\r\n\r\n', `${call}GET /health HTTP/1.1\r\nhost: x\r\n\r\n`]) {
    const answer = await rawExchange(url, `${ahead}CONNECT x:1 HTTP/1.1\r\nhost: x\r\n\r\n`, { enough: (text) => text.includes('no route CONNECT') })
    const statuses = answer.match(/HTTP\/1\.1 \d{3}/g)
    t.same(statuses, [...(ahead.startsWith('POST') ? ['HTTP/1.1 200'] : []), 'HTTP/1.1 200', 'HTTP/1.1 404'], 'the answers ahead, then the CONNECT\'s 404')
  }
  t.equal((await fetch(`${url}/health`)).status, 200, 'the server is still up (it used to crash: ERR_HTTP_SOCKET_ASSIGNED)')
})

t.test('a client that resets or closes right after a CONNECT does not take the server down', async (t) => {
  // A process of its own: the failure this guards against ended the process.
  const server = await startServerProcess(t, { POOL_SIZE: '2' })
  const port = Number(new URL(server.url).port)
  const body = '{"sleep_ms":200}'
  const call = `POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  for (const [ahead, reset] of [['', true], ['', true], ['', true], [call, true], [call, false]] as const) {
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    // Read (and drop) what comes, so that the server's end of the connection is seen.
    socket.resume()
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.write(`${ahead}CONNECT x:1 HTTP/1.1\r\nhost: x\r\n\r\n`)
    // Reset (RST) at once, or close (FIN) while the call ahead still runs: the CONNECT's answer cannot be written.
    if (ahead !== '') await new Promise((resolve) => setTimeout(resolve, 50))
    if (reset) socket.resetAndDestroy()
    else socket.end()
    await Promise.race([new Promise((resolve) => socket.once('close', resolve)), new Promise((resolve) => setTimeout(resolve, 2000))])
    socket.destroy()
  }
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.equal((await fetch(`${server.url}/health`)).status, 200, 'the server is still up (an unhandled \'error\' on the handed-over socket used to end it)')
  t.notMatch(server.output(), /Unhandled 'error' event|uncaught/i)
})

/** Sends a request's head; `body` follows once the server says 100 Continue (or at once if `eager`). */
async function expectExchange (head: string, body: string, { eager = false, then = '' } = {}): Promise<string> {
  let sent = eager
  return await rawExchange(url, eager ? head + body + then : head, {
    onAnswer: (answer, socket) => {
      if (!sent && answer.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) { sent = true; socket.write(body + then) }
    },
    // One JSON answer per request sent: done once the last one is complete.
    enough: (answer) => (answer.match(/\r\n\r\n[[{][^\r]*[\]}](?=HTTP|$)/g) ?? []).length >= (then === '' ? 1 : 2)
  })
}

const expectHead = (task: string, length: number, extra = ''): string =>
  `POST /api/tasks/${task} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\n${extra}content-length: ${length}\r\n\r\n`

t.test('Expect: 100-continue: a body that would be refused is refused before it is sent; one that is needed is asked for', async (t) => {
  const tooLarge = await expectExchange(expectHead('echo', 17_000_000), '')
  t.match(tooLarge, /^HTTP\/1\.1 413 /, 'over the limit: the final answer, with no 100 before it')
  t.match(tooLarge, /"code":"FST_ERR_CTP_BODY_TOO_LARGE"/)
  const unknown = await expectExchange(expectHead('no.such.task', 5_000_000), '')
  t.match(unknown, /^HTTP\/1\.1 404 /, 'unknown task: 404 with no 100 before it')
  t.match(unknown, /"code":"TASK_NOT_FOUND"/)
  const compressed = await expectExchange(expectHead('echo', 5_000_000, 'content-encoding: gzip\r\n'), '')
  t.match(compressed, /^HTTP\/1\.1 415 /, 'compressed: 415 with no 100 before it')
  const wrongType = await expectExchange(expectHead('echo', 5_000_000).replace('application/json', 'text/csv'), '')
  t.match(wrongType, /^HTTP\/1\.1 415 /, 'a content type the task does not take: 415 with no 100 before it')
  t.match(wrongType, /task echo does not accept content-type \\"text\/csv\\"; it accepts application\/json, application\/msgpack/)
  const declared = await expectExchange(expectHead('csv.profile', 4).replace('application/json', 'TEXT/CSV; charset=latin1'), 'a\n1\n')
  t.match(declared, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/, 'a raw type the task declares, in any case, with its parameters: asked for, and served')
  const noRoute = await expectExchange(expectHead('echo', 5_000_000).replace('POST /api/tasks/echo', 'POST /api/no-such-route'), '')
  t.match(noRoute, /^HTTP\/1\.1 404 /, 'no such route: 404 with no 100 before it')
  t.match(noRoute, /"code":"FST_ERR_NOT_FOUND"/)
  // Decided by the headers and the query alone, which come before the 100 as the body's own errors cannot.
  const badBudget = await expectExchange(expectHead('echo', 5_000_000, 'x-request-timeout-ms: soon\r\n'), '')
  t.match(badBudget, /^HTTP\/1\.1 400 /, 'a budget that is no number: 400 with no 100 before it')
  t.match(badBudget, /"code":"INVALID_INPUT".*"message":"x-request-timeout-ms must be a whole number/)
  const misplaced = await expectExchange(expectHead('stats.describe', 5_000_000).replace('stats.describe', 'stats.describe?bins=3'), '')
  t.match(misplaced, /^HTTP\/1\.1 400 /, 'a query parameter that belongs in the JSON body: 400 with no 100 before it')
  t.match(misplaced, /"code":"FST_ERR_VALIDATION".*"message":"query parameter \\"bins\\" is a field of task stats.describe's input/)
  const options = await expectExchange(expectHead('csv.profile?delimiter=%3B', 4, 'x-request-timeout-ms: 60000\r\n').replace('application/json', 'text/csv'), 'a\n1\n')
  t.match(options, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/, 'a raw body\'s query options and a good budget: asked for, and served')
  const fine = await expectExchange(expectHead('echo', 7), '[1,2,3]')
  t.match(fine, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/)
  t.match(fine, /\[1,2,3\]$/)
})

t.test('expect: 100-continue on a request without a body: the 100 at once, and the connection kept for the requests behind it', async (t) => {
  // Without the 100, Node closed the connection after the answer, and the task call pipelined
  // behind it ran with its answer never sent (logged as a client that left).
  const health = 'GET /health HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\r\n'
  const call = 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{"b":"2"}'
  const answer = await rawExchange(url, health + call, { enough: (text) => text.includes('{"b":"2"}') })
  t.match(answer, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/)
  t.match(answer, /HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n\{"b":"2"\}$/, `the pipelined call's answer: ${answer}`)
  // Unframed bytes after such a request are no body: the next request, which is not HTTP.
  const garbage = await rawExchange(url, 'DELETE /api/tasks/echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n\r\n[{"a":1}]')
  t.match(garbage, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 405 [^]*HTTP\/1\.1 400 [^]*"code":"HPE_INVALID_METHOD"/, garbage)
})

t.test('an answer that comes before the body (wrong task, wrong route, compressed, a GET route) closes the connection instead of reading on', async (t) => {
  // No Expect: the 404 comes while the client has sent only the head of its request.
  const head = 'POST /api/tasks/no.such.task HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n'
  const early = await rawExchange(url, head)
  const earlyHead = early.split('\r\n\r\n')[0]
  t.match(earlyHead, /^HTTP\/1\.1 404 /)
  t.match(earlyHead, /\r\nconnection: close$|\r\nconnection: close\r\n/i, 'the 404 itself closes the connection')
  const bodyless = await fetch(`${url}/no/such/route`)
  t.equal(bodyless.status, 404)
  t.equal(bodyless.headers.get('connection'), 'keep-alive', 'a request without a body keeps its connection')
  for (const path of ['/no/such/route', '/api/tasks']) {
    const zero = await rawExchange(url, `GET ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 00\r\n\r\n`, { enough: (answer) => answer.includes('\r\n\r\n') })
    t.match(zero, /\r\nconnection: keep-alive\r\n/i, `${path}: content-length 00 is no body either`)
  }
  // A chunked body with no end: once answered, the server must stop reading it, or
  // BODY_LIMIT_BYTES would not bound what one request makes it read.
  for (const [what, method, path, extra, status] of [
    ['unknown task', 'POST', '/api/tasks/no.such.task', '', '404'],
    ['unknown route', 'POST', '/no/such/route', '', '404'],
    ['compressed body', 'POST', '/api/tasks/echo', 'content-encoding: gzip\r\n', '415'],
    ['a GET route, which reads no body', 'GET', '/api/tasks', '', '200']
  ]) {
    const socket = connect(Number(new URL(url).port), '127.0.0.1')
    socket.on('error', () => {})
    let answer = ''
    socket.setEncoding('utf8').on('data', (text: string) => { answer += text })
    const closed = new Promise((resolve) => socket.once('close', resolve))
    socket.write(`${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${extra}transfer-encoding: chunked\r\n\r\n`)
    const chunk = `100000\r\n${'x'.repeat(0x100000)}\r\n`
    let sentMb = 0
    // Up to 64 MB (four times BODY_LIMIT_BYTES), while the connection lasts.
    while (!socket.destroyed && sentMb < 64) {
      if (!socket.write(chunk)) await new Promise((resolve) => { socket.once('drain', resolve); socket.once('close', resolve) })
      sentMb++
    }
    socket.destroy()
    await closed
    t.ok(answer.startsWith(`HTTP/1.1 ${status} `), `${what}: answered ${status}`)
    t.match(answer.split('\r\n\r\n')[0], /\r\nconnection: close(\r\n|$)/i, `${what}: the answer says the connection closes`)
    t.ok(sentMb < 64, `${what}: the server closed the connection after ${sentMb} MB instead of reading on`)
  }
})

t.test('a client that writes its whole body before it reads (Python\'s http.client) gets the early answer, not a reset', async (t) => {
  // http.client sends the body whole, then reads. Destroyed as soon as the answer was
  // flushed, the connection was reset by the bytes still arriving: BrokenPipeError from
  // bodies of a few MB up, the 404, 413 or 415 unread (lingering-close.ts).
  const script = [
    'import http.client, json, sys',
    'port = int(sys.argv[1])',
    'out = []',
    'for path, ctype, size in [("/api/tasks/no.such.task", "application/json", 8_000_000), ("/api/tasks/echo", "application/json", 20_000_000), ("/api/tasks/echo", "text/csv", 8_000_000)]:',
    '    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)',
    '    try:',
    '        c.request("POST", path, b"x" * size, {"content-type": ctype})',
    '        r = c.getresponse()',
    '        out.append([r.status, json.loads(r.read())["code"], r.getheader("connection")])',
    '    except OSError as e:',
    '        out.append(repr(e))',
    '    c.close()',
    'print(json.dumps(out))'
  ].join('\n')
  const python = (await resolvePython(process.env.PYTHON || undefined, ROOT)).path
  const { stdout } = await promisify(execFile)(python, ['-c', script, new URL(url).port], { timeout: 90_000 })
  t.same(JSON.parse(stdout), [
    [404, 'TASK_NOT_FOUND', 'close'],
    [413, 'FST_ERR_CTP_BODY_TOO_LARGE', 'close'],
    [415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'close']
  ])
})

t.test('a connection lingering after an early answer closes once its client goes quiet', async (t) => {
  // The head and a little of a 10 MB body, then nothing: answered 404, then closed by the
  // server after ~2 s of quiet. Half-open allowed, as a client still sending is: the
  // server's end of writing does not end it. Watched on the server's side of the connection
  // (its count of connections moves with other tests' keep-alive connections).
  const accepted: Socket[] = []
  const onConnection = (s: Socket): void => { accepted.push(s) }
  server.app.server.on('connection', onConnection)
  t.teardown(() => { server.app.server.off('connection', onConnection) })
  const socket = connect({ port: Number(new URL(url).port), host: '127.0.0.1', allowHalfOpen: true })
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  let answer = ''
  socket.setEncoding('utf8').on('data', (text: string) => { answer += text })
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(`POST /api/tasks/no.such.task HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n${'x'.repeat(1000)}`)
  await waitFor(() => answer.includes('\r\n\r\n{'), 5000, 'the 404')
  const answeredAt = Date.now()
  t.match(answer, /^HTTP\/1\.1 404 /)
  const ours = accepted.find((s) => s.remotePort === socket.localPort)
  if (ours === undefined) throw new Error('the server side of the connection was not seen')
  const closed = ours.destroyed ? Promise.resolve() : new Promise((resolve) => ours.once('close', resolve))
  t.notOk(ours.destroyed, 'still open after its answer: lingering')
  await closed
  t.ok(Date.now() - answeredAt >= 1500, `closed after ${Date.now() - answeredAt} ms of quiet`)
})

t.test('a request pipelined behind an early answer that closes the connection is not run (its answer could not be sent)', async (t) => {
  const echoCalls = async (): Promise<number> => {
    const text = await (await fetch(`${url}/metrics`)).text()
    return [...text.matchAll(/^pyworker_calls_total\{task="echo",outcome="[a-z_]+"\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0)
  }
  const request = (path: string, extra: string, body: string): string =>
    `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${extra}content-length: ${body.length}\r\n\r\n${body}`
  for (const [what, first] of [
    ['unknown task', request('/api/tasks/no.such.task', '', '{"a":1}')],
    ['unknown route', request('/no/such/route', '', '{"a":1}')],
    ['compressed body', request('/api/tasks/echo', 'content-encoding: gzip\r\n', '{"a":1}')],
    ['a content type the task does not take', request('/api/tasks/echo', '', '{"a":1}').replace('application/json', 'text/csv')]
  ]) {
    const before = await echoCalls()
    // One write: an echo ahead of it and one behind arrive in the same packet.
    const answer = await rawExchange(url, request('/api/tasks/echo', '', '{"ahead":1}') + first + request('/api/tasks/echo', '', '{"behind":1}'))
    t.match(answer, /^HTTP\/1\.1 200 OK[\s\S]*"ahead":1[\s\S]*HTTP\/1\.1 (404|415) /, `${what}: the request ahead answered, then it`)
    t.notMatch(answer, /"behind"/, `${what}: no answer for the request behind it`)
    t.equal(await echoCalls(), before + 1, `${what}: the one behind did not run`)
  }
})

t.test('requests pipelined behind a body that does not parse are all answered, in order', async (t) => {
  const request = (task: string, type: string, body: string): string =>
    `POST /api/tasks/${task} HTTP/1.1\r\nhost: x\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  for (const [what, bad] of [
    ['bad JSON', request('echo', 'application/json', '{"i":')],
    ['an empty body', request('echo', 'application/json', '')],
    ['JSON in latin1', request('echo', 'application/json; charset=latin1', '{}')]
  ]) {
    const answer = await rawExchange(url, request('diag.work', 'application/json', '{"sleep_ms":300}') + bad + request('diag.work', 'application/json', '{"sleep_ms":100}'), {
      enough: (answer) => answer.includes('"slept_ms":100')
    })
    const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))
    t.equal(statuses.length, 3, `${what}: three answers`)
    t.equal(statuses[0], 200)
    t.ok(statuses[1] === 400 || statuses[1] === 415, `${what}: its own error`)
    t.equal(statuses[2], 200, `${what}: the request behind it is answered`)
    t.notMatch(answer, /connection: close/i, `${what}: the connection is kept`)
  }
})

t.test('a body that does not parse, from a client that asked to close (or an HTTP/1.0 one that asked to keep), is answered saying so', async (t) => {
  const bad = (version: string, connection: string, type = 'application/json', body = '[1,'): string =>
    `POST /api/tasks/echo HTTP/${version}\r\nhost: x\r\nconnection: ${connection}\r\ncontent-type: ${type}\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  for (const [what, bytes, header] of [
    ['bad JSON, connection: close', bad('1.1', 'close'), 'close'],
    ['JSON in latin1, connection: close', bad('1.1', 'close', 'application/json; charset=latin1', '{}'), 'close'],
    ['bad JSON, HTTP/1.0 keep-alive', bad('1.0', 'keep-alive'), 'keep-alive']
  ]) {
    const answer = await rawExchange(url, bytes, { enough: (a) => a.endsWith('}') })
    t.match(answer, /^HTTP\/1\.1 4(00|15) /, what)
    t.match(answer, new RegExp(`\r\nconnection: ${header}\r\n`, 'i'), `${what}: the answer says connection: ${header} (RFC 9112 §9.6)`)
  }
})

t.test('a body without content-type is JSON, the default', async (t) => {
  // fetch sends a Uint8Array body with no content-type header at all.
  const post = async (body?: string): Promise<Response> => await fetch(`${url}/api/tasks/echo`, { method: 'POST', body: body === undefined ? undefined : new TextEncoder().encode(body) })
  const ok = await post('{"a":[1,2]}')
  t.equal(ok.status, 200)
  t.same(await ok.json(), { a: [1, 2] })
  const bad = await post('{bad')
  t.equal(bad.status, 400)
  t.match(await bad.json(), { code: 'INVALID_INPUT', message: /not valid JSON/ })
  const empty = await post()
  t.equal(empty.status, 400)
  t.match(await empty.json(), { code: 'INVALID_INPUT', message: /the body is empty/ })
  // An empty body is said alike whatever its declared type.
  for (const [type, message] of [['application/json', 'the body is empty; send a JSON value'], ['application/msgpack', 'the body is empty; send a msgpack value']]) {
    const reply = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': type }, body: new Uint8Array() })
    t.same([reply.status, (await reply.json()).message], [400, message], type)
  }
})

t.test('a content type the task does not accept is 415', async (t) => {
  const reply = await callTask(url, 'echo', 'plain text', { 'content-type': 'text/plain' })
  t.equal(reply.status, 415)
  t.equal(reply.json.code, 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
  t.match(reply.json.message, /task echo does not accept content-type "text\/plain"; it accepts application\/json, application\/msgpack/)
  // A client's 12,000-character type or charset is not sent back whole (a security review's 12 KB answers).
  const long = 'x'.repeat(12_000)
  for (const type of [`text/${long}`, `application/json; charset=${long}`, `text/csv; charset=${long}`]) {
    const refused = await callTask(url, type.startsWith('text/csv') ? 'csv.profile' : 'echo', 'a', { 'content-type': type })
    t.equal(refused.status, 415)
    t.ok(refused.json.message.length < 300, `a message of ${refused.json.message.length} characters: ${refused.json.message.slice(0, 80)}...`)
  }
  // Not a media type at all: says so, and what would do (Fastify's own said only "Unsupported Media Type").
  for (const [type, what] of [['', 'an empty content-type'], ['json', 'content-type "json"'], ['application/json,', 'content-type "application/json,"']]) {
    const bad = await callTask(url, 'echo', '{}', { 'content-type': type })
    t.equal(bad.status, 415, type)
    t.equal(bad.json.message, `${what} is not a media type (type/subtype); send application/json or application/msgpack, or leave the header out for JSON`)
  }
})

t.test('lists tasks with schema, timeout, raw types and concurrency', async (t) => {
  const { tasks } = await getJson(`${url}/api/tasks`)
  const echo = tasks.find((task: any) => task.name === 'echo')
  t.match(echo, { name: 'echo', description: String, timeoutMs: Number, raw: [], rawField: null, maxConcurrency: 4 })
  t.match(tasks.find((x: { name: string }) => x.name === 'xml.import'), { raw: ['application/xml', 'text/xml'], rawField: 'xml' }, 'the field a raw body fills')
  t.ok(tasks.some((task: any) => task.name === 'diag.work'))
  t.same(await getJson(`${url}/api/tasks/echo`), echo)
})

t.test('a task that prints to stdout does not corrupt the frame stream', async (t) => {
  const reply = await callTask(url, 'diag.work', { print: 'noise\x00\x00\x00\x05{garbage' })
  t.equal(reply.status, 200)
  t.equal(reply.json.printed, 17)
  t.same((await callTask(url, 'echo', { still: 'fine' })).json, { still: 'fine' })
})

t.test('health and readiness answer 200', async (t) => {
  t.equal((await fetch(`${url}/health`)).status, 200)
  const ready = await fetch(`${url}/ready`)
  t.equal(ready.status, 200)
  t.match(await ready.json(), { status: 'ready', workers: 4 })
})

t.test('GET / is a 404 that lists what pyfleet serves', async (t) => {
  const response = await fetch(`${url}/`)
  t.equal(response.status, 404)
  t.match(await response.json(), { code: 'FST_ERR_NOT_FOUND', message: /^no route GET \/: pyfleet serves GET \/api\/tasks \(the task list\), POST \/api\/tasks\/<name>/ })
})

t.test('a trailing slash the routes do not have is named in the 404', async (t) => {
  const answers = await Promise.all([
    fetch(`${url}/api/tasks/echo/`),
    fetch(`${url}/api/tasks/echo/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
    fetch(`${url}/health/`),
    fetch(`${url}/no/such/route/`),
    fetch(`${url}/api/tasks/`)
  ])
  t.same(await Promise.all(answers.map(async (r) => [r.status, (await r.json()).message])), [
    [404, 'no route GET /api/tasks/echo/: the routes have no trailing slash; use GET /api/tasks/echo'],
    [404, 'no route POST /api/tasks/echo/: the routes have no trailing slash; use POST /api/tasks/echo'],
    [404, 'no route GET /health/: the routes have no trailing slash; use GET /health'],
    [404, 'no route GET /no/such/route/'],
    [404, 'there is no task named "" (the path ends in a slash, with no name after /api/tasks/); GET /api/tasks lists them']
  ])
})

t.test('the admin route does not exist without ADMIN_TOKEN, and its 404 says how to turn it on', async (t) => {
  const response = await fetch(`${url}/admin/reload`, { method: 'POST' })
  t.equal(response.status, 404)
  t.match(await response.json(), { code: 'FST_ERR_NOT_FOUND', message: 'no route POST /admin/reload: admin routes are off; set ADMIN_TOKEN to turn them on' })
})

t.test('a property the schema does not allow is named in the 400\'s message', async (t) => {
  const reply = await callTask(url, 'stats.describe', { values: [1, 2], vlaues: [3] })
  t.equal(reply.status, 400)
  t.match(reply.json, { code: 'FST_ERR_VALIDATION', message: 'body must NOT have additional properties ("vlaues")' })
  await waitFor(() => server.logs.some((l) => l.requestId === reply.headers.get('x-request-id')), 2000, 'its log line')
  t.match(server.logs.find((l) => l.requestId === reply.headers.get('x-request-id')), { msg: 'request completed', statusCode: 400, code: 'FST_ERR_VALIDATION', errorMessage: 'body must NOT have additional properties ("vlaues")' }, 'the completion line has the answer\'s code and message: why it was refused, without asking the client')
})

t.test('a 422\'s completion line says what the task said; a 5xx\'s does not repeat the answer (its own lines say more); a long message is cut', async (t) => {
  const rejected = await callTask(url, 'diag.work', { reject: 'the date is in the future' })
  t.equal(rejected.status, 422)
  const failed = await callTask(url, 'diag.work', { raise: 'boom' })
  t.equal(failed.status, 500)
  const long = await callTask(url, 'diag.work', { reject: `"\u0001${'x'.repeat(4000)}` })
  t.equal(long.status, 422)
  const lineOf = (reply: { headers: Headers }): Record<string, any> | undefined => server.logs.find((l) => l.msg === 'request completed' && l.requestId === reply.headers.get('x-request-id'))
  await waitFor(() => [rejected, failed, long].every((reply) => lineOf(reply) !== undefined), 2000, 'their log lines')
  t.match(lineOf(rejected), { statusCode: 422, code: 'TASK_REJECTED_INPUT', errorMessage: 'the date is in the future' })
  t.match(lineOf(failed), { statusCode: 500, code: 'TASK_FAILED' })
  t.notOk('errorMessage' in (lineOf(failed) ?? {}), 'a 5xx: its failure line has the task\'s message and traceback')
  t.match(lineOf(long)?.errorMessage, /^"\u0001x+\.\.\.$/, 'cut')
  t.ok(lineOf(long)?.errorMessage.length <= 303, `to 300 characters or so: ${String(lineOf(long)?.errorMessage.length)}`)
})
