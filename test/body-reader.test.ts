// readBody (src/routes/body-reader.ts): a body whole, in one buffer of its own, with
// Fastify's limits and errors. The e2e suites send real bodies through it; these are
// the cases a real client rarely makes (more or fewer bytes than it declared).

import t from 'tap'
import { PassThrough } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import { readBody } from '../src/routes/body-reader.js'

interface Read { error: (Error & { code?: string, statusCode?: number }) | null, body?: Buffer }

async function read (headers: Record<string, string>, chunks: Array<Buffer | Error>, limit = 1000): Promise<Read> {
  const payload = new PassThrough()
  const request = { headers } as unknown as FastifyRequest
  const result = new Promise<Read>((resolve) => { readBody(request, payload, limit, (error, body) => { resolve({ error, body }) }) })
  for (const chunk of chunks) {
    if (chunk instanceof Error) { payload.destroy(chunk); return await result }
    payload.write(chunk)
    await new Promise((resolve) => setImmediate(resolve))
  }
  payload.end()
  return await result
}

t.test('a body of its declared length, in pieces: one buffer of its own with every byte', async (t) => {
  const pool = Buffer.from('xxhello, world')
  const { error, body } = await read({ 'content-length': '12' }, [pool.subarray(2, 7), pool.subarray(7)])
  t.equal(error, null)
  t.equal(body?.toString(), 'hello, world')
  pool.fill(0)
  t.equal(body?.toString(), 'hello, world', 'a copy, not a view over the chunks\' memory (the socket\'s read buffer, reused)')
})

t.test('a large declared length costs nothing until a quarter of it has arrived, then the body is whole and in order', async (t) => {
  const declared = 32 * 1024 * 1024
  const payload = new PassThrough()
  let read: Read | undefined
  readBody({ headers: { 'content-length': String(declared) } } as unknown as FastifyRequest, payload, declared, (error, body) => { read = { error, body } })
  const piece = 1024 * 1024
  const before = process.memoryUsage().arrayBuffers
  payload.write(Buffer.alloc(1024, 1))
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(process.memoryUsage().arrayBuffers - before < 4 * piece, 'a client that declares 32 MiB and sends 1 KiB holds about 1 KiB, not 32 MiB')
  let sent = 1024
  for (let i = 0; sent < declared; i++) {
    const size = Math.min(piece, declared - sent)
    payload.write(Buffer.alloc(size, i % 250 + 2))
    sent += size
    await new Promise((resolve) => setImmediate(resolve))
  }
  payload.end()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(read?.error, null)
  t.equal(read?.body?.length, declared)
  t.same([read?.body?.[0], read?.body?.[1023], read?.body?.[1024], read?.body?.[1024 + piece], read?.body?.[declared - 1]], [1, 1, 2, 3, 2 + Math.floor((declared - 1024 - 1) / piece) % 250], 'every piece in its place, before and after the buffer was made')
})

t.test('a chunked body (no length) is gathered whole', async (t) => {
  const { error, body } = await read({ 'transfer-encoding': 'chunked' }, [Buffer.from('ab'), Buffer.from('cd'), Buffer.from('e')])
  t.equal(error, null)
  t.equal(body?.toString(), 'abcde')
})

t.test('a declared length past the limit: 413 before a byte is read', async (t) => {
  const { error } = await read({ 'content-length': '1001' }, [])
  t.equal(error?.code, 'FST_ERR_CTP_BODY_TOO_LARGE')
  t.equal(error?.statusCode, 413)
})

t.test('a chunked body that grows past the limit: 413', async (t) => {
  const { error } = await read({ 'transfer-encoding': 'chunked' }, [Buffer.alloc(600), Buffer.alloc(600)])
  t.equal(error?.code, 'FST_ERR_CTP_BODY_TOO_LARGE')
})

t.test('more bytes than declared, or fewer: 400 FST_ERR_CTP_INVALID_CONTENT_LENGTH', async (t) => {
  const more = await read({ 'content-length': '3' }, [Buffer.from('abcd')])
  t.equal(more.error?.code, 'FST_ERR_CTP_INVALID_CONTENT_LENGTH')
  t.equal(more.error?.statusCode, 400)
  const fewer = await read({ 'content-length': '5' }, [Buffer.from('abc')])
  t.equal(fewer.error?.code, 'FST_ERR_CTP_INVALID_CONTENT_LENGTH')
})

t.test('the stream\'s own error: 400, unless it carries a status of its own', async (t) => {
  const plain = await read({ 'content-length': '5' }, [Buffer.from('ab'), new Error('the client left')])
  t.equal(plain.error?.message, 'the client left')
  t.equal(plain.error?.statusCode, 400)
  const full = Object.assign(new Error('RECEIVE_LIMIT_BYTES'), { statusCode: 503 })
  const refused = await read({ 'content-length': '5' }, [full])
  t.equal(refused.error?.statusCode, 503, 'a RECEIVE_FULL refusal keeps its 503')
})

t.test('done is called once, even when bytes keep coming after a refusal', async (t) => {
  const payload = new PassThrough()
  let calls = 0
  readBody({ headers: { 'content-length': '2' } } as unknown as FastifyRequest, payload, 1000, () => { calls++ })
  payload.write(Buffer.from('abc'))
  payload.write(Buffer.from('def'))
  payload.end()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(calls, 1)
})
