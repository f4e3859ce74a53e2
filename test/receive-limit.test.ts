// ReceiveLimit's stream handling on its own, with real streams standing in for a
// request, its response and its socket (test/e2e/receive-limit.test.ts has the whole path).

import t from 'tap'
import { EventEmitter } from 'node:events'
import { PassThrough, type Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ReceiveLimit, SMALL_BODY_BYTES } from '../src/routes/receive-limit.js'

interface Exchange { request: FastifyRequest, reply: FastifyReply, raw: PassThrough & { complete: boolean, socket: EventEmitter }, response: EventEmitter, socket: EventEmitter }

function exchange (headers: Record<string, string>): Exchange {
  const socket = new EventEmitter()
  const raw = Object.assign(new PassThrough(), { headers, socket, complete: false })
  const response = new EventEmitter()
  return { request: { raw, headers } as unknown as FastifyRequest, reply: { raw: response } as unknown as FastifyReply, raw, response, socket }
}

/** Enters a body and reads what comes out, as Fastify's parser would. */
function enter (limit: ReceiveLimit, headers: Record<string, string>): Exchange & { read: Readable } {
  const one = exchange(headers)
  const read = limit.enter(one.request, one.reply, one.raw)
  read.on('data', () => {})
  read.on('error', () => {}) // the parser's: a refusal, or a client gone
  return { ...one, read }
}

async function outcome (stream: Readable): Promise<string> {
  return await new Promise((resolve) => {
    stream.on('data', () => {})
    stream.once('end', () => resolve('end'))
    stream.once('error', (error) => resolve(`error: ${error.message}`))
  })
}

const tick = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

t.test('a small body is not counted, and is read as it is', async (t) => {
  const limit = new ReceiveLimit(1000, 1_000_000, () => {})
  const small = exchange({ 'content-length': String(SMALL_BODY_BYTES) })
  t.equal(limit.enter(small.request, small.reply, small.raw), small.raw)
  t.equal(small.socket.listenerCount('close'), 0, 'no listener on its socket')
  t.equal(limit.bytes, 0)
})

t.test('a large body counts its bytes as they arrive, not its declared length', async (t) => {
  const limit = new ReceiveLimit(100_000, 1_000_000, () => {})
  const large = enter(limit, { 'content-length': '90000' })
  t.not(large.read, large.raw, 'read through a counting stream')
  t.equal(limit.bytes, 0, 'nothing has arrived: nothing is held')
  large.raw.write(Buffer.alloc(1000))
  await tick()
  t.equal(limit.bytes, 1000)
  enter(limit, { 'content-length': '50000' })
  t.equal(limit.bytes, 1000, 'admitted by its declared length against what is held, and holding nothing yet')
  const tooLarge = exchange({ 'content-length': '99500' })
  t.throws(() => limit.enter(tooLarge.request, tooLarge.reply, tooLarge.raw), { code: 'RECEIVE_FULL', statusCode: 503, retryAfterSeconds: 1 }, 'one whose declared length would pass what is held is refused before it is read')
  large.raw.write(Buffer.alloc(89_000))
  await tick()
  t.equal(limit.bytes, 90_000)
  large.raw.destroy()
  await tick()
  t.equal(limit.bytes, 0, 'given back when the request closes')
})

t.test('a chunk that would take the count past the limit is refused, and nothing of it is counted', async (t) => {
  let refusals = 0
  const limit = new ReceiveLimit(100_000, 1_000_000, () => { refusals++ })
  const first = enter(limit, { 'transfer-encoding': 'chunked' })
  first.raw.write(Buffer.alloc(60_000))
  const second = exchange({ 'transfer-encoding': 'chunked' })
  const refused = outcome(limit.enter(second.request, second.reply, second.raw))
  second.raw.write(Buffer.alloc(50_000))
  t.match(await refused, /^error: 60000 bytes of other request bodies are being received, and this one's 50000 would pass RECEIVE_LIMIT_BYTES=100000/)
  t.equal(refusals, 1)
  t.equal(limit.bytes, 60_000, 'the refused chunk is not counted')
  second.response.emit('close')
  first.raw.destroy()
  await tick()
  t.equal(limit.bytes, 0)
})

t.test('a body whose client leaves mid-body ends the counting stream in an error, so the parser does not wait for ever', async (t) => {
  const limit = new ReceiveLimit(100_000, 1_000_000, () => {})
  const { request, reply, raw } = exchange({ 'transfer-encoding': 'chunked' })
  const counted = limit.enter(request, reply, raw)
  const ended = outcome(counted)
  raw.write(Buffer.alloc(300))
  await tick()
  t.equal(limit.bytes, 300, 'counted as it passes')
  raw.destroy()
  t.equal(await ended, 'error: the client closed the connection before its body had all arrived')
  t.equal(limit.bytes, 0, 'given back when the request closes')
})

t.test('a body received whole ends the counting stream normally, and its bytes are given back once', async (t) => {
  const limit = new ReceiveLimit(100_000, 1_000_000, () => {})
  const { request, reply, raw, response } = exchange({ 'content-length': '40000' })
  const ended = outcome(limit.enter(request, reply, raw))
  raw.end(Buffer.alloc(40_000))
  t.equal(await ended, 'end')
  await tick()
  t.equal(limit.bytes, 0, 'the request closed after its end')
  response.emit('close')
  t.equal(limit.bytes, 0, 'a second close gives nothing back twice')
})

t.test('a body over BODY_LIMIT_BYTES is left to Fastify\'s 413, uncounted', async (t) => {
  const limit = new ReceiveLimit(100_000, 1_000_000, () => {})
  enter(limit, { 'transfer-encoding': 'chunked' }).raw.write(Buffer.alloc(90_000))
  await tick()
  const tooLarge = exchange({ 'content-length': '2000000' })
  t.equal(limit.enter(tooLarge.request, tooLarge.reply, tooLarge.raw), tooLarge.raw)
  t.equal(limit.bytes, 90_000)
})

t.test('a connection that ends before the body has all arrived gives the body\'s bytes back, even if the request never closes', async (t) => {
  const limit = new ReceiveLimit(100_000, 1_000_000, () => {})
  const cut = enter(limit, { 'content-length': '80000' })
  cut.raw.write(Buffer.alloc(800))
  await tick()
  t.equal(limit.bytes, 800)
  cut.socket.emit('end')
  t.equal(limit.bytes, 0, 'no more of it can come')
  const whole = enter(limit, { 'content-length': '80000' })
  whole.raw.write(Buffer.alloc(80_000))
  await tick()
  whole.raw.complete = true
  whole.socket.emit('end')
  t.equal(limit.bytes, 80_000, 'a body that has all arrived is still held until its request is done with it')
  whole.socket.emit('close')
  t.equal(limit.bytes, 0)
})

t.test('many bodies on one connection share one pair of listeners on its socket, and each is given back', async (t) => {
  const limit = new ReceiveLimit(10_000_000, 1_000_000, () => {})
  const socket = new EventEmitter()
  const bodies = Array.from({ length: 20 }, () => {
    const one = exchange({ 'content-length': '20000' })
    one.raw.socket = socket
    const read = limit.enter(one.request, one.reply, one.raw)
    read.on('data', () => {})
    read.on('error', () => {})
    one.raw.write(Buffer.alloc(20_000))
    return one
  })
  await tick()
  t.equal(limit.bytes, 400_000)
  t.equal(socket.listenerCount('close'), 1, 'one close listener, not one per body (past the leak warning at 11)')
  t.equal(socket.listenerCount('end'), 1)
  bodies[0].response.emit('close')
  t.equal(limit.bytes, 380_000, 'one body given back on its own')
  for (const one of bodies.slice(1, 10)) one.raw.complete = true
  socket.emit('end')
  t.equal(limit.bytes, 180_000, 'the connection ending gives back only the bodies still arriving')
  socket.emit('close')
  t.equal(limit.bytes, 0, 'and closing, the rest')
})

/** A chunked body entered on a roomy limit: what the parser receives, and when it ends. */
function chunkedBody (): { one: Exchange, received: Buffer[], ended: Promise<unknown> } {
  const limit = new ReceiveLimit(10_000_000, 10_000_000, () => {})
  const one = exchange({ 'transfer-encoding': 'chunked' })
  const read = limit.enter(one.request, one.reply, one.raw)
  const received: Buffer[] = []
  read.on('data', (chunk: Buffer) => { received.push(chunk) })
  return { one, received, ended: new Promise((resolve) => read.once('end', resolve)) }
}

t.test('a body that arrives in tiny chunks reaches the parser gathered into large buffers, in order and whole', async (t) => {
  // Node hands over a Buffer per chunk of a chunked body; kept one by one until the body is
  // whole, 1-byte chunks cost ~300 bytes of heap each (a remote way to run the heap out).
  const { one, received, ended } = chunkedBody()
  const sent: number[] = []
  for (let i = 0; i < 200_000; i++) {
    sent.push(i % 251)
    one.raw.write(Buffer.from([i % 251]))
  }
  one.raw.write(Buffer.alloc(20_000, 7)) // a large chunk passes as it is, after what was gathered before it
  for (let i = 0; i < 10; i++) one.raw.write(Buffer.from([9]))
  one.raw.end()
  await ended
  const body = Buffer.concat(received)
  t.equal(body.length, 200_000 + 20_000 + 10)
  t.same([...body.subarray(0, 200_000)], sent, 'every byte, in order')
  t.ok(body.subarray(200_000, 220_000).every((b) => b === 7) && body.subarray(220_000).every((b) => b === 9))
  t.ok(received.length <= 6, `${received.length} buffers for 200,010 chunks`)
  // What is passed on holds no more memory than its bytes: no view into a larger buffer
  // (kept whole until the body is parsed, uncounted). Small copies may share Node's pool of
  // Buffer.poolSize (8 KiB on Node 20 and 22, 64 KiB on Node 24), as any small Buffer does.
  for (const chunk of received) t.ok(chunk.buffer.byteLength <= Math.max(Buffer.poolSize, chunk.length), `${chunk.length} bytes in an ArrayBuffer of ${chunk.buffer.byteLength}`)
})

t.test('tiny chunks between large ones are passed on as exact copies, in order', async (t) => {
  const { one, received, ended } = chunkedBody()
  const sent: Buffer[] = []
  for (let i = 0; i < 40; i++) {
    sent.push(Buffer.from([i]), Buffer.alloc(16 * 1024, i))
    for (const piece of sent.slice(-2)) one.raw.write(piece)
  }
  one.raw.end()
  await ended
  t.same(Buffer.concat(received), Buffer.concat(sent))
  const held = received.reduce((sum, chunk) => sum + (chunk.length < Buffer.poolSize >>> 1 ? 0 : chunk.buffer.byteLength), 0)
  t.ok(held <= 40 * 16 * 1024, `large pieces hold ${held} bytes for ${40 * 16 * 1024} of them`)
  for (const chunk of received) t.ok(chunk.buffer.byteLength <= Math.max(Buffer.poolSize, chunk.length))
})

t.test('a body waiting for the offload thread keeps its share, counted once; one with no share is counted anew, within the limit', async (t) => {
  const limit = new ReceiveLimit(30_000, 1_000_000, () => {})
  const body = enter(limit, { 'content-length': '20000' })
  body.raw.write(Buffer.alloc(20_000))
  await tick()
  t.equal(limit.bytes, 20_000)
  const release = limit.holdArrived(20_000, body.raw as unknown as FastifyRequest['raw'])
  t.equal(limit.bytes, 20_000, 'taken over, not counted twice (2 × 20,000 would pass the limit of 30,000)')
  body.raw.emit('close') // the request closes once its body is read: the share is the offload's now
  t.equal(limit.bytes, 20_000, 'still held while it waits for the thread')
  t.throws(() => limit.holdArrived(15_000), { code: 'RECEIVE_FULL' }, 'another body past the limit is refused')
  const other = limit.holdArrived(5_000) // a body whose share was given back already: counted anew
  t.equal(limit.bytes, 25_000)
  release()
  release()
  other()
  t.equal(limit.bytes, 0, 'each given back once')
  const alone = limit.holdArrived(50_000)
  t.equal(limit.bytes, 50_000, 'one body alone always goes, whatever its size')
  alone()
})
