// RECEIVE_LIMIT_BYTES through a real server: bodies being received are counted
// (declared lengths at once, chunked ones as they arrive), a body that would pass
// the limit gets 503 RECEIVE_FULL before it is uploaded, and every way a request
// can end gives its bytes back (the count is read from /api/queue-stats, as an
// operator would, and must come back to 0).

import t from 'tap'
import { connect, type Socket } from 'node:net'
import { rawExchange } from '../helpers/raw-http.js'
import { callTask, getJson, startServer, waitFor, type TestServer } from '../helpers/server.js'

const LIMIT = 1000

async function receiving (server: TestServer): Promise<{ bytes: number, limitBytes: number, refused: number }> {
  return (await getJson(`${server.url}/api/queue-stats`)).receiving
}

function headers (length: number | 'chunked', extra = ''): string {
  const framing = length === 'chunked' ? 'transfer-encoding: chunked' : `content-length: ${length}`
  return `POST /api/tasks/echo HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n${framing}\r\n${extra}\r\n`
}

function chunk (text: string): string {
  return `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`
}

/** A JSON string body of exactly `length` bytes. */
function body (length: number): string {
  return `"${'x'.repeat(length - 2)}"`
}

/** A connection that has sent `bytes` and keeps what it is answered. */
interface Upload { socket: Socket, answer: () => string, closed: Promise<void> }

async function startUpload (server: TestServer, bytes: string): Promise<Upload> {
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  socket.on('error', () => {})
  let answer = ''
  socket.setEncoding('utf8').on('data', (text: string) => { answer += text })
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  socket.write(bytes)
  return { socket, answer: () => answer, closed }
}

function jsonOf (answer: string): any {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))
}

t.test('a body that would take the bytes being received past the limit gets 503 RECEIVE_FULL, before it is uploaded', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  // 800 declared bytes, 1 sent: counted at its declared length from the start.
  const first = await startUpload(server, headers(800) + '"')
  await waitFor(async () => (await receiving(server)).bytes === 800, 5000, 'the first body to be counted')

  // Expect: 100-continue: the refusal comes instead of the 100, so nothing is uploaded.
  const refused = await rawExchange(server.url, headers(300, 'expect: 100-continue\r\n'))
  t.match(refused, /^HTTP\/1\.1 503 /, '503')
  t.notMatch(refused, /100 Continue/, 'no 100 Continue: the client never uploads the refused body')
  t.match(refused, /\r\nretry-after: 1\r\n/i)
  t.match(refused, /\r\nconnection: close\r\n/i, 'the connection closes: its body was never read')
  t.same(jsonOf(refused), {
    statusCode: 503,
    code: 'RECEIVE_FULL',
    error: 'Service Unavailable',
    message: `800 bytes of other request bodies are being received, and this one's 300 would pass RECEIVE_LIMIT_BYTES=${LIMIT}; retry later`
  })
  // A smaller body still fits beside the first.
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(100) })).status, 200, 'a body that fits is received')

  const stats = await receiving(server)
  t.same(stats, { bytes: 800, limitBytes: LIMIT, refused: 1 }, '/api/queue-stats: the first body alone, one refusal')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /\npyfleet_receiving_bytes 800\n/, 'the gauge says the same')
  t.match(metrics, /\npyfleet_receive_refused_total 1\n/)

  first.socket.write('x'.repeat(798) + '"')
  await waitFor(() => / 200 OK/.test(first.answer()), 5000, 'the first call to be answered')
  t.equal(jsonOf(first.answer()), 'x'.repeat(798), 'the first body, received whole, ran')
  t.equal((await receiving(server)).bytes, 0, 'received: given back')
  first.socket.destroy()
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(298) })).status, 200, 'the refused body, sent again, is received')
  t.equal((await receiving(server)).bytes, 0)
})

t.test('a chunked body is counted as it arrives, and refused by the chunk that would pass the limit', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  const first = await startUpload(server, headers('chunked') + chunk('"' + 'x'.repeat(599)))
  await waitFor(async () => (await receiving(server)).bytes === 600, 5000, 'the first chunk to be counted')

  const second = await startUpload(server, headers('chunked') + chunk('"' + 'x'.repeat(299)))
  await waitFor(async () => (await receiving(server)).bytes === 900, 5000, 'the second body\'s first chunk to be counted')
  second.socket.write(chunk('x'.repeat(200)))
  await second.closed
  t.match(second.answer(), /^HTTP\/1\.1 503 /, 'the chunk that passes the limit gets 503')
  t.match(jsonOf(second.answer()), { code: 'RECEIVE_FULL', message: `600 bytes of other request bodies are being received, and this one's 500 would pass RECEIVE_LIMIT_BYTES=${LIMIT}; retry later` })
  await waitFor(async () => (await receiving(server)).bytes === 600, 5000, 'the refused body\'s bytes to be given back')

  first.socket.write(chunk('x'.repeat(399) + '"') + '0\r\n\r\n')
  await waitFor(() => / 200 OK/.test(first.answer()), 5000, 'the first call to be answered')
  t.equal(jsonOf(first.answer()), 'x'.repeat(998))
  t.same(await receiving(server), { bytes: 0, limitBytes: LIMIT, refused: 1 })
  first.socket.destroy()
})

t.test('a client that leaves mid-body gives its bytes back, declared or chunked, pipelined or not', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  const declared = await startUpload(server, headers(500) + '"xx')
  const chunked = await startUpload(server, headers('chunked') + chunk('"' + 'x'.repeat(199)))
  // Two requests in one write: the first whole, the second's body cut short.
  const pipelined = await startUpload(server, headers(10) + body(10) + headers(100) + '"x')
  await waitFor(async () => (await receiving(server)).bytes === 800, 5000, 'three bodies to be counted')
  for (const upload of [declared, chunked, pipelined]) upload.socket.destroy()
  await waitFor(async () => (await receiving(server)).bytes === 0, 5000, 'every byte to be given back')
  t.equal((await receiving(server)).refused, 0)
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(900) })).status, 200, 'the whole limit is free again')
})

t.test('one body alone is always received, and a body over BODY_LIMIT_BYTES is still a 413', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT), BODY_LIMIT_BYTES: '5000' })
  const alone = await callTask(server.url, 'echo', { s: 'x'.repeat(3000) })
  t.equal(alone.status, 200, 'three times the limit, but nothing else is being received')

  const first = await startUpload(server, headers(800) + '"')
  await waitFor(async () => (await receiving(server)).bytes === 800, 5000, 'the first body to be counted')
  const tooLarge = await rawExchange(server.url, headers(6000, 'expect: 100-continue\r\n'))
  t.match(tooLarge, /^HTTP\/1\.1 413 /, 'over BODY_LIMIT_BYTES: 413, whatever else is being received')
  t.equal((await receiving(server)).refused, 0, 'not counted as a refusal')
  first.socket.destroy()
  await waitFor(async () => (await receiving(server)).bytes === 0, 5000, 'given back')
})

t.test('RECEIVE_LIMIT_BYTES=0 counts nothing and refuses nothing', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: '0' })
  const first = await startUpload(server, headers(800) + '"')
  const second = await startUpload(server, headers(800) + '"')
  for (const upload of [first, second]) upload.socket.write('x'.repeat(798) + '"')
  await waitFor(() => / 200 OK/.test(first.answer()) && / 200 OK/.test(second.answer()), 5000, 'both calls to be answered')
  t.same(await receiving(server), { bytes: 0, limitBytes: 0, refused: 0 })
  for (const upload of [first, second]) upload.socket.destroy()
})

t.test('many bodies at once: the count comes back to 0', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', RECEIVE_LIMIT_BYTES: String(64 * 1024) })
  const replies = await Promise.all(Array.from({ length: 120 }, async (_, i) => await callTask(server.url, 'echo', { s: 'x'.repeat(1000 + i * 10) })))
  const statuses = new Set(replies.map((r) => r.status))
  t.ok([...statuses].every((s) => s === 200 || s === 503), `only answers or refusals: ${[...statuses].join(', ')}`)
  for (const r of replies.filter((r) => r.status === 503)) t.equal(r.json.code, 'RECEIVE_FULL')
  t.same(await receiving(server), { bytes: 0, limitBytes: 64 * 1024, refused: replies.filter((r) => r.status === 503).length })
})

t.test('a large body holds the bytes it has sent, not its declared length: connections that only declare keep nobody out', async (t) => {
  const limit = 100_000
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(limit) })
  // Four connections each declaring most of the limit and sending one byte.
  const idle = await Promise.all(Array.from({ length: 4 }, async () => await startUpload(server, headers(90_000) + '"')))
  await waitFor(async () => (await receiving(server)).bytes === 4, 5000, 'the four bytes sent to be counted')
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(50_000) })).status, 200, 'a body of half the limit is received beside them')
  // Bytes that arrive count: one of them sends most of its body, and a body that would pass the limit is refused.
  idle[0].socket.write('x'.repeat(80_000))
  await waitFor(async () => (await receiving(server)).bytes === 80_004, 5000, 'the bytes sent to be counted')
  const refused = await rawExchange(server.url, headers(30_000, 'expect: 100-continue\r\n'))
  t.match(refused, /^HTTP\/1\.1 503 [\s\S]*"code":"RECEIVE_FULL"/, 'refused by its declared length against the bytes held, before it is sent')
  for (const upload of idle) upload.socket.destroy()
  await waitFor(async () => (await receiving(server)).bytes === 0, 5000, 'every byte given back')
})

t.test('a large body whose bytes would pass the limit as they arrive is refused then', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: '100000' })
  const slow = await startUpload(server, headers(60_000) + '"')
  await waitFor(async () => (await receiving(server)).bytes === 1, 5000, 'the first body to start')
  // Admitted: 1 byte held and 60,000 declared are within the limit.
  const other = await startUpload(server, headers(60_000) + '"' + 'x'.repeat(50_000))
  await waitFor(async () => (await receiving(server)).bytes === 50_002, 5000, 'the second body to be held')
  slow.socket.write('x'.repeat(59_998) + '"')
  await slow.closed
  t.match(slow.answer(), /^HTTP\/1\.1 503 [\s\S]*"code":"RECEIVE_FULL"/, 'the chunk that takes the bytes held past the limit is refused')
  other.socket.write('x'.repeat(9_998) + '"')
  await waitFor(() => / 200 OK/.test(other.answer()), 5000, 'the second body to be answered')
  other.socket.destroy()
  await waitFor(async () => (await receiving(server)).bytes === 0, 5000, 'every byte given back')
})

t.test('a body cut short behind a call still running on its connection gives its bytes back when the client leaves', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: '100000' })
  for (const length of [800, 50_000]) { // counted at once, and as it arrives
    const running = '{"sleep_ms":2000}'
    const upload = await startUpload(server,
      `POST /api/tasks/diag.work HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: ${running.length}\r\n\r\n${running}` +
      headers(length) + '"xx')
    await waitFor(async () => (await receiving(server)).bytes > 0, 5000, 'the second body to be counted')
    upload.socket.end() // the client sends no more: the body can never arrive whole
    await waitFor(async () => (await receiving(server)).bytes === 0, 5000, `the cut-short body of ${length} bytes to be given back`)
    t.equal(server.app.pool.snapshot().pool.borrowed, 1, `given back while the call ahead of it still runs (${length} bytes)`)
    await waitFor(() => server.app.pool.snapshot().pool.borrowed === 0, 10_000, 'the call ahead to end')
    upload.socket.destroy()
  }
})
