// ReceiveLimit's stream handling on its own, with real streams standing in for a
// request and its response (test/e2e/receive-limit.test.ts has the whole path).

import t from 'tap'
import { EventEmitter } from 'node:events'
import { PassThrough, type Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { ReceiveLimit } from '../src/routes/receive-limit.js'

function exchange (headers: Record<string, string>): { request: FastifyRequest, reply: FastifyReply, raw: PassThrough & { complete: boolean }, response: EventEmitter, socket: EventEmitter } {
  const socket = new EventEmitter()
  const raw = Object.assign(new PassThrough(), { headers, socket, complete: false })
  const response = new EventEmitter()
  return { request: { raw, headers } as unknown as FastifyRequest, reply: { raw: response } as unknown as FastifyReply, raw, response, socket }
}

async function outcome (stream: Readable): Promise<string> {
  return await new Promise((resolve) => {
    stream.on('data', () => {})
    stream.once('end', () => resolve('end'))
    stream.once('error', (error) => resolve(`error: ${error.message}`))
  })
}

t.test('a chunked body whose client leaves mid-body ends the counting stream in an error, so the parser does not wait for ever', async (t) => {
  let refusals = 0
  const limit = new ReceiveLimit(1000, 5000, () => { refusals++ })
  const { request, reply, raw } = exchange({ 'transfer-encoding': 'chunked' })
  const counted = limit.enter(request, reply, raw)
  const ended = outcome(counted)
  raw.write(Buffer.alloc(300))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(limit.bytes, 300, 'counted as it passes')
  raw.destroy()
  t.equal(await ended, 'error: the client closed the connection before its body had all arrived')
  t.equal(limit.bytes, 0, 'given back when the request closes')
  t.equal(refusals, 0)
})

t.test('a chunked body received whole ends the counting stream normally, and its bytes are given back once', async (t) => {
  const limit = new ReceiveLimit(1000, 5000, () => {})
  const { request, reply, raw, response } = exchange({ 'transfer-encoding': 'chunked' })
  const counted = limit.enter(request, reply, raw)
  const ended = outcome(counted)
  raw.end(Buffer.alloc(400))
  t.equal(await ended, 'end')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(limit.bytes, 0, 'the request closed after its end')
  response.emit('close')
  t.equal(limit.bytes, 0, 'a second close gives nothing back twice')
})

t.test('a declared body is counted whole at once; a refusal counts nothing and calls onRefused', async (t) => {
  let refusals = 0
  const limit = new ReceiveLimit(1000, 5000, () => { refusals++ })
  const first = exchange({ 'content-length': '800' })
  t.equal(limit.enter(first.request, first.reply, first.raw), first.raw, 'a declared body is read as it is')
  t.equal(limit.bytes, 800)
  const second = exchange({ 'content-length': '300' })
  t.throws(() => limit.enter(second.request, second.reply, second.raw), { code: 'RECEIVE_FULL', statusCode: 503, retryAfterSeconds: 1 })
  t.equal(refusals, 1)
  t.equal(limit.bytes, 800)
  const tooLarge = exchange({ 'content-length': '6000' })
  t.equal(limit.enter(tooLarge.request, tooLarge.reply, tooLarge.raw), tooLarge.raw, 'over BODY_LIMIT_BYTES: left to Fastify\'s 413')
  t.equal(limit.bytes, 800, 'and not counted')
  first.response.emit('close')
  t.equal(limit.bytes, 0, 'answered before its body was read: given back when the response closes')
})

t.test('a large declared body counts its bytes as they arrive, not its declared length', async (t) => {
  const limit = new ReceiveLimit(100_000, 1_000_000, () => {})
  const large = exchange({ 'content-length': '90000' })
  const counted = limit.enter(large.request, large.reply, large.raw)
  t.not(counted, large.raw, 'read through a counting stream')
  counted.on('data', () => {})
  t.equal(limit.bytes, 0, 'nothing has arrived: nothing is held')
  large.raw.write(Buffer.alloc(1000))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(limit.bytes, 1000)
  const other = exchange({ 'content-length': '50000' })
  limit.enter(other.request, other.reply, other.raw).on('data', () => {})
  t.equal(limit.bytes, 1000, 'admitted by its declared length against what is held, and holding nothing yet')
  t.throws(() => limit.enter(exchange({ 'content-length': '99500' }).request, exchange({}).reply, new PassThrough()), { code: 'RECEIVE_FULL' }, 'one whose declared length would pass what is held is refused before it is read')
})

t.test('a connection that ends before the body has all arrived gives the body\'s bytes back, even if the request never closes', async (t) => {
  const limit = new ReceiveLimit(1000, 5000, () => {})
  const cut = exchange({ 'content-length': '800' })
  limit.enter(cut.request, cut.reply, cut.raw)
  t.equal(limit.bytes, 800)
  cut.socket.emit('end')
  t.equal(limit.bytes, 0, 'no more of it can come')
  const whole = exchange({ 'content-length': '800' })
  limit.enter(whole.request, whole.reply, whole.raw)
  whole.raw.complete = true
  whole.socket.emit('end')
  t.equal(limit.bytes, 800, 'a body that has all arrived is still held until its request is done with it')
  whole.socket.emit('close')
  t.equal(limit.bytes, 0)
})
