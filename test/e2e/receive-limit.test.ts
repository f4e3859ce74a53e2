// RECEIVE_LIMIT_BYTES through a real server: bodies over 16 KiB (and chunked ones)
// are counted as their bytes arrive, a body whose declared length would pass the
// limit gets 503 RECEIVE_FULL before it is uploaded, one whose bytes pass it as
// they arrive gets it then, and every way a request can end gives its bytes back
// (the count is read from /api/queue-stats, as an operator would, and must come
// back to 0).

import t from 'tap'
import { connect, type Socket } from 'node:net'
import { rawExchange } from '../helpers/raw-http.js'
import { spawn } from 'node:child_process'
import { callTask, getJson, startServer, startServerProcess, waitFor, type TestServer } from '../helpers/server.js'

const LIMIT = 100_000

async function receiving (server: TestServer): Promise<{ bytes: number, limitBytes: number, refused: number }> {
  return (await getJson(`${server.url}/api/queue-stats`)).receiving
}

async function counted (server: TestServer, bytes: number, what: string): Promise<void> {
  await waitFor(async () => (await receiving(server)).bytes === bytes, 5000, `${what} (${bytes} bytes counted)`)
}

function headers (length: number | 'chunked', extra = '', task = 'echo'): string {
  const framing = length === 'chunked' ? 'transfer-encoding: chunked' : `content-length: ${length}`
  return `POST /api/tasks/${task} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n${framing}\r\n${extra}\r\n`
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

t.test('a body whose declared length would take the bytes held past the limit gets 503 RECEIVE_FULL, before it is uploaded', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  const first = await startUpload(server, headers(90_000) + '"' + 'x'.repeat(79_999))
  await counted(server, 80_000, 'the first body, most of it sent')

  // Expect: 100-continue: the refusal comes instead of the 100, so nothing is uploaded.
  const refused = await rawExchange(server.url, headers(30_000, 'expect: 100-continue\r\n'))
  t.match(refused, /^HTTP\/1\.1 503 /, '503')
  t.notMatch(refused, /100 Continue/, 'no 100 Continue: the client never uploads the refused body')
  t.match(refused, /\r\nretry-after: 1\r\n/i)
  t.match(refused, /\r\nconnection: close\r\n/i, 'the connection closes: its body was never read')
  t.same(jsonOf(refused), {
    statusCode: 503,
    code: 'RECEIVE_FULL',
    error: 'Service Unavailable',
    message: `80000 bytes of other request bodies are being received, and this one's 30000 would pass RECEIVE_LIMIT_BYTES=${LIMIT}; retry later`
  })
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(19_000) })).status, 200, 'a body that fits beside it is received')
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(10_000) })).status, 200, 'small bodies are not counted')

  t.same(await receiving(server), { bytes: 80_000, limitBytes: LIMIT, refused: 1 }, '/api/queue-stats: the first body, one refusal')
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  t.match(metrics, /\npyfleet_receiving_bytes 80000\n/, 'the gauge says the same')
  t.match(metrics, /\npyfleet_receive_refused_total 1\n/)

  first.socket.write('x'.repeat(9_999) + '"')
  await waitFor(() => / 200 OK/.test(first.answer()), 5000, 'the first call to be answered')
  t.equal(jsonOf(first.answer()), 'x'.repeat(89_998), 'the first body, received whole, ran')
  await counted(server, 0, 'received: given back')
  first.socket.destroy()
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(29_000) })).status, 200, 'the refused body, sent again, is received')
  t.equal((await receiving(server)).bytes, 0)
})

t.test('a large body holds the bytes it has sent, not its declared length: connections that only declare keep nobody out', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  // Four connections each declaring most of the limit and sending one byte.
  const idle = await Promise.all(Array.from({ length: 4 }, async () => await startUpload(server, headers(90_000) + '"')))
  await counted(server, 4, 'the four bytes sent')
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(50_000) })).status, 200, 'a body of half the limit is received beside them')
  for (const upload of idle) upload.socket.destroy()
  await counted(server, 0, 'every byte given back')
})

t.test('a body whose bytes would pass the limit as they arrive is refused then, declared or chunked', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  const slow = await startUpload(server, headers(60_000) + '"')
  await counted(server, 1, 'the first body to start')
  // Admitted: 1 byte held and 60,000 declared are within the limit.
  const other = await startUpload(server, headers('chunked') + chunk('"' + 'x'.repeat(49_999)))
  await counted(server, 50_001, 'the second body to be held')
  slow.socket.write('x'.repeat(59_998) + '"')
  await slow.closed
  t.match(slow.answer(), /^HTTP\/1\.1 503 [\s\S]*"code":"RECEIVE_FULL"/, 'the bytes that take what is held past the limit are refused')
  await counted(server, 50_000, 'the refused body\'s bytes to be given back')
  // The chunked one goes on, and a chunk of it that would pass the limit is refused in turn.
  const third = await startUpload(server, headers(40_000) + '"' + 'x'.repeat(39_000))
  await counted(server, 89_001, 'a third body to be held')
  other.socket.write(chunk('x'.repeat(20_000)))
  await other.closed
  t.match(jsonOf(other.answer()), { code: 'RECEIVE_FULL', message: `39001 bytes of other request bodies are being received, and this one's 70000 would pass RECEIVE_LIMIT_BYTES=${LIMIT}; retry later` })
  third.socket.write('x'.repeat(998) + '"')
  await waitFor(() => / 200 OK/.test(third.answer()), 5000, 'the third body to be answered')
  third.socket.destroy()
  await counted(server, 0, 'every byte given back')
  t.equal((await receiving(server)).refused, 2)
})

t.test('a client that leaves mid-body gives its bytes back, declared or chunked, pipelined or not', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  const declared = await startUpload(server, headers(50_000) + '"' + 'x'.repeat(29_999))
  const chunked = await startUpload(server, headers('chunked') + chunk('"' + 'x'.repeat(19_999)))
  // Two requests in one write: the first whole, the second's body cut short.
  const pipelined = await startUpload(server, headers(20) + body(20) + headers(40_000) + '"' + 'x'.repeat(9_999))
  await counted(server, 60_000, 'three bodies')
  for (const upload of [declared, chunked, pipelined]) upload.socket.destroy()
  await counted(server, 0, 'every byte given back')
  t.equal((await receiving(server)).refused, 0)
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(90_000) })).status, 200, 'the whole limit is free again')
})

t.test('a body cut short behind a call still running on its connection gives its bytes back when the client leaves', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  const running = '{"sleep_ms":2000}'
  const upload = await startUpload(server, headers(running.length, '', 'diag.work') + running + headers(50_000) + '"' + 'x'.repeat(999))
  await counted(server, 1000, 'the second body')
  upload.socket.end() // the client sends no more: the body can never arrive whole
  await counted(server, 0, 'the cut-short body to be given back')
  t.equal(server.app.pool.snapshot().pool.borrowed, 1, 'given back while the call ahead of it still runs')
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 0, 10_000, 'the call ahead to end')
  upload.socket.destroy()
})

t.test('one body alone is always received, and a body over BODY_LIMIT_BYTES is still a 413', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT), BODY_LIMIT_BYTES: '500000' })
  const alone = await callTask(server.url, 'echo', { s: 'x'.repeat(300_000) })
  t.equal(alone.status, 200, 'three times the limit, but nothing else is being received')

  const first = await startUpload(server, headers(90_000) + '"' + 'x'.repeat(79_999))
  await counted(server, 80_000, 'the first body')
  const tooLarge = await rawExchange(server.url, headers(600_000, 'expect: 100-continue\r\n'))
  t.match(tooLarge, /^HTTP\/1\.1 413 /, 'over BODY_LIMIT_BYTES: 413, whatever else is being received')
  t.equal((await receiving(server)).refused, 0, 'not counted as a refusal')
  first.socket.destroy()
  await counted(server, 0, 'given back')
})

t.test('RECEIVE_LIMIT_BYTES=0 counts nothing and refuses nothing', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: '0' })
  const first = await startUpload(server, headers(80_000) + '"' + 'x'.repeat(40_000))
  const second = await startUpload(server, headers(80_000) + '"' + 'x'.repeat(40_000))
  for (const upload of [first, second]) upload.socket.write('x'.repeat(39_998) + '"')
  await waitFor(() => / 200 OK/.test(first.answer()) && / 200 OK/.test(second.answer()), 5000, 'both calls to be answered')
  t.same(await receiving(server), { bytes: 0, limitBytes: 0, refused: 0 })
  for (const upload of [first, second]) upload.socket.destroy()
})

t.test('many bodies at once: the count comes back to 0', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', RECEIVE_LIMIT_BYTES: String(LIMIT) })
  // Most of the limit held by one upload while the others come: each is refused by its declared length.
  const holder = await startUpload(server, headers(95_000) + '"' + 'x'.repeat(89_999))
  await counted(server, 90_000, 'the holding upload')
  const refusedAll = await Promise.all(Array.from({ length: 20 }, async () => await callTask(server.url, 'echo', { s: 'x'.repeat(17_000) })))
  t.same(new Set(refusedAll.map((r) => r.json?.code)), new Set(['RECEIVE_FULL']), 'every one refused while the limit is held')
  holder.socket.destroy()
  await counted(server, 0, 'the holder given back')
  const replies = await Promise.all(Array.from({ length: 40 }, async (_, i) => await callTask(server.url, 'echo', { s: 'x'.repeat(17_000 + i * 100) })))
  const statuses = new Set(replies.map((r) => r.status))
  t.ok([...statuses].every((s) => s === 200 || s === 503), `only answers or refusals: ${[...statuses].join(', ')}`)
  for (const r of replies.filter((r) => r.status === 503)) t.equal(r.json.code, 'RECEIVE_FULL')
  t.same(await receiving(server), { bytes: 0, limitBytes: LIMIT, refused: 20 + replies.filter((r) => r.status === 503).length })
})

// The client runs in a process of its own: a socket reset with resetAndDestroy() keeps the
// test process from exiting. It sends its first argument at once, its second when told
// "more", and resets the connection when told "reset".
const RESETTING_CLIENT = `
  const s = require('node:net').connect(Number(process.argv[1]), '127.0.0.1', () => s.write(process.argv[2]))
  s.on('error', () => {})
  require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'more') s.write(process.argv[3])
    if (line === 'reset') { s.resetAndDestroy(); setTimeout(() => process.exit(0), 100) }
  })`

t.test('a chunked body over BODY_LIMIT_BYTES behind a running call: its 413 gives its bytes back, and a reset connection does not take the server down', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', RECEIVE_LIMIT_BYTES: String(LIMIT), BODY_LIMIT_BYTES: '65536' })
  const running = '{"sleep_ms":1500}'
  const first = headers(running.length, '', 'diag.work') + running + headers('chunked', '', 'csv.profile') + chunk(' '.repeat(30_000))
  const client = spawn(process.execPath, ['-e', RESETTING_CLIENT, new URL(server.url).port, first, chunk(' '.repeat(30_000)).repeat(3)], { stdio: ['pipe', 'ignore', 'ignore'] })
  const clientExited = new Promise((resolve) => client.once('exit', resolve))
  const stats = async (): Promise<any> => await getJson(`${server.url}/api/queue-stats`)
  await waitFor(async () => (await stats()).receiving.bytes === 30_000, 5000, 'the pipelined body to be counted')
  t.equal((await stats()).pool.borrowed, 1, 'behind a running call')
  // Past BODY_LIMIT_BYTES: Fastify refuses it (its 413 waits behind the running call) and reads on, dropping it.
  client.stdin.write('more\n')
  await waitFor(async () => (await stats()).receiving.bytes === 0, 5000, 'the body past BODY_LIMIT_BYTES to be given back (dropped, not held)')
  // Not awaited: with one worker busy, this call waits for it; it must be admitted, not refused.
  const other = callTask(server.url, 'echo', { s: 'x'.repeat(60_000) })
  client.stdin.write('reset\n') // the client leaves while its 413 is still queued: an error nobody reads must not end the process
  await clientExited
  t.equal((await other).status, 200, 'another upload, made while the dropped body flowed past, is received and answered')
  await waitFor(async () => (await stats()).pool.borrowed === 0, 10_000, 'the running call to end')
  t.equal(server.child.exitCode, null, 'the server is still running')
  t.equal((await callTask(server.url, 'echo', { s: 'x'.repeat(20_000) })).status, 200, 'and answers')
  t.equal((await stats()).receiving.bytes, 0, 'nothing left counted')
})
