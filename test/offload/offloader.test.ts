// The offload thread as the server runs it: real worker threads, the real thread
// script for jobs, and fixture scripts for a thread that fails or never answers.

import t from 'tap'
import type { IncomingMessage } from 'node:http'
import * as workerThreads from 'node:worker_threads'
import { Worker } from 'node:worker_threads'
import pino from 'pino'
import { pack } from 'msgpackr'
import { Offloader } from '../../src/offload/offloader.js'
import { OffloadCancelledError, OffloadThreadError, refusedOutcome } from '../../src/offload/offload-errors.js'
import { PendingBody } from '../../src/offload/encoded.js'
import { ownBytes } from '../../src/offload/jobs.js'
import { decodeValue, EncodedInput, MSG_DEFERRED } from '../../src/pool/protocol.js'
import { encodeFrame } from '../../src/pool/frames.js'
import { InvalidInputError, ReceiveFullError, ValidationError } from '../../src/errors.js'
import { ReceiveLimit } from '../../src/routes/receive-limit.js'
import { PROCESS_LIMIT_FIX } from '../../src/process-limit.js'
import { BUILT_OFFLOAD_THREAD, waitFor, type Teardown } from '../helpers/server.js'

const FIXTURE_THREADS = new URL('../fixtures/offload-threads/', import.meta.url)
const task = { name: 'sum', schema: { type: 'object', required: ['values'], properties: { values: { type: 'array', items: { type: 'number' } } } } }

interface Options {
  script?: string | URL
  lines?: string[]
  idleStopMs?: number
  holdBody?: (bytes: number, request?: IncomingMessage) => () => void
  done?: string[]
}

function offloader (t: Teardown, options: Options = {}): Offloader {
  const log = pino({ level: 'info' }, { write (line: string) { options.lines?.push(JSON.parse(line).msg as string) } })
  const offload = new Offloader({
    minBytes: 1,
    log,
    holdBody: options.holdBody,
    onJobDone: (op) => { options.done?.push(op) },
    script: typeof options.script === 'string' ? new URL(options.script, FIXTURE_THREADS) : options.script ?? BUILT_OFFLOAD_THREAD,
    idleStopMs: options.idleStopMs
  })
  t.teardown(async () => { await offload.close() })
  return offload
}

/** A result frame's body, laid out as the Python runtime writes it ({t, id, value}, in that order). */
function resultFrame (id: number, value: unknown): Uint8Array {
  return pack({ t: 'result', id, value })
}

t.test('a JSON body becomes the input as msgpack, and its errors are the classes the event loop raises', async (t) => {
  const offload = offloader(t)
  const ok = await offload.input(task, new PendingBody(Buffer.from('{"values": [1, 2.5, 4294967296]}'), 'json'))
  t.ok(ok.input instanceof EncodedInput, 'encoded on the thread')
  t.same(decodeValue((ok.input as EncodedInput).bytes), { values: [1, 2.5, 4294967296] })
  t.equal(ok.holdsWideNumbers, false, 'widened on the thread already: the pool must not scan the bytes again')

  const bad = await offload.input(task, new PendingBody(Buffer.from('{"values": [1,'), 'json')).catch((error: Error) => error)
  t.ok(bad instanceof InvalidInputError, 'a parse error is a 400 INVALID_INPUT')
  t.match(bad, { statusCode: 400, code: 'INVALID_INPUT', message: /body is not valid JSON/, details: { line: 1, column: 15 } })

  const invalid = await offload.input(task, new PendingBody(Buffer.from('{"values": "x"}'), 'json')).catch((error: Error) => error)
  t.ok(invalid instanceof ValidationError, 'a schema error is FST_ERR_VALIDATION')
  t.match(invalid, { statusCode: 400, message: 'body/values must be array', details: [{ instancePath: '/values', keyword: 'type' }] })
})

t.test('a msgpack body: checked before it is decoded, as on the event loop', async (t) => {
  const offload = offloader(t)
  const ok = await offload.input(task, new PendingBody(pack({ values: [1, 2] }), 'msgpack'))
  t.same(decodeValue((ok.input as EncodedInput).bytes), { values: [1, 2] })
  // An array header claiming 2^32-1 elements in five bytes: refused by its shape, not decoded.
  const claims = await offload.input(task, new PendingBody(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), 'msgpack')).catch((error: Error) => error)
  t.match(claims, { code: 'INVALID_INPUT', statusCode: 400 })
})

t.test('parseOnly: a body that parses gives no input, one that does not gives its parse error', async (t) => {
  const offload = offloader(t)
  t.match(await offload.input(task, new PendingBody(Buffer.from('{"values": "not checked"}'), 'json'), { parseOnly: true }), { input: undefined, holdsWideNumbers: false, waitedMs: Number })
  const bad = await offload.input(task, new PendingBody(Buffer.from('nope'), 'json'), { parseOnly: true }).catch((error: Error) => error)
  t.match(bad, { code: 'INVALID_INPUT' })
})

t.test('a reply frame becomes the answer: JSON, or the worker\'s own msgpack bytes', async (t) => {
  const offload = offloader(t)
  const value = { text: 'é', n: 2 ** 40, data: Buffer.from([1, 2, 3]) }
  const frame = resultFrame(7, value)
  const json = await offload.answer({ t: MSG_DEFERRED, id: 7, frame }, 'json')
  t.equal(json.t, 'answer')
  t.equal(Buffer.from((json as { bytes: Uint8Array }).bytes).toString(), JSON.stringify({ text: 'é', n: 2 ** 40, data: 'AQID' }), 'bytes as base64, as replies.ts writes them')
  const msgpack = await offload.answer({ t: MSG_DEFERRED, id: 7, frame: resultFrame(7, value) }, 'msgpack')
  t.same(decodeValue((msgpack as { bytes: Uint8Array }).bytes), value)

  const error = await offload.answer({ t: MSG_DEFERRED, id: 8, frame: pack({ t: 'error', id: 8, kind: 'rejected', type: 'TaskError', message: 'no' }) }, 'json')
  t.match(error, { t: 'error', reply: { kind: 'rejected', message: 'no' } }, 'a task error comes back as the reply')
  const wrongCall = await offload.answer({ t: MSG_DEFERRED, id: 9, frame: resultFrame(8, 'x') }, 'json')
  t.match(wrongCall, { t: 'protocol', message: /reply for call 8 while call 9 is outstanding/ })
  const notMsgpack = await offload.answer({ t: MSG_DEFERRED, id: 9, frame: Buffer.alloc(100, 0xc1) }, 'json')
  t.match(notMsgpack, { t: 'protocol' }, 'bytes that are not msgpack break the protocol')
})

t.test('a thread that exits fails the job waiting for it, and the next job starts a new one', async (t) => {
  const lines: string[] = []
  const offload = offloader(t, { script: 'exits.mjs', lines })
  for (const round of [1, 2]) {
    const error = await offload.input(task, new PendingBody(Buffer.from('{}'), 'json')).catch((e: Error) => e)
    t.ok(error instanceof OffloadThreadError, `round ${round}: the job is refused with OffloadThreadError`)
    t.match(error, { message: /exited with code 3/ })
    t.equal(offload.threadStarts, round, 'a new thread for each job after a failure')
    t.equal(offload.pendingJobs, 0)
    t.equal(offload.pendingBodyBytes, 0, 'its bytes are no longer counted')
  }
  t.match(lines, [/the offload thread stopped: it exited with code 3/, /the offload thread stopped/], 'each failure is logged')
})

t.test('a thread that throws fails its job with the error\'s message', async (t) => {
  const offload = offloader(t, { script: 'throws.mjs' })
  const frame = encodeFrame(Buffer.from('x')) // any bytes: the thread throws before reading them
  const error = await offload.answer({ t: MSG_DEFERRED, id: 1, frame }, 'json').catch((e: Error) => e)
  t.ok(error instanceof OffloadThreadError)
  t.match(error, { message: /a bug in the thread/ })
})

t.test('a thread that fails at a limit on processes and threads says which limit, not a bare EAGAIN', async (t) => {
  const lines: string[] = []
  const offload = offloader(t, { script: 'out-of-threads.mjs', lines })
  const error = await offload.input(task, new PendingBody(Buffer.from('{}'), 'json')).catch((e: Error) => e)
  t.ok(error instanceof OffloadThreadError)
  t.match(error, { message: `the offload thread stopped: EAGAIN: resource temporarily unavailable, uv_thread_create: ${PROCESS_LIMIT_FIX}` })
  t.match(lines, [`the offload thread stopped: EAGAIN: resource temporarily unavailable, uv_thread_create: ${PROCESS_LIMIT_FIX}; the job it was running failed, and the next job starts a new one`])
})

t.test('bodies waiting for the thread count against RECEIVE_LIMIT_BYTES with those being received; one alone always goes', async (t) => {
  const refused: number[] = []
  const receiving = new ReceiveLimit(100, 1000, () => { refused.push(1) })
  const offload = offloader(t, { script: 'stalls.mjs', holdBody: (bytes) => receiving.holdArrived(bytes) })
  // Larger than the bound: alone, it is taken.
  const first = offload.input(task, new PendingBody(Buffer.alloc(150, 0x20), 'json')).catch((e: Error) => e)
  t.equal(offload.pendingBodyBytes, 150)
  t.equal(receiving.bytes, 150, 'counted with the bodies being received')
  const second = await offload.input(task, new PendingBody(Buffer.alloc(10, 0x20), 'json')).catch((e: Error) => e)
  t.ok(second instanceof ReceiveFullError, 'refused while the first waits')
  t.match(second, { statusCode: 503, retryAfterSeconds: 1, message: /^150 bytes of other request bodies are being received or waiting to be parsed, and this one's 10 would pass RECEIVE_LIMIT_BYTES=100/ })
  t.equal(refused.length, 1, 'counted as a RECEIVE_FULL refusal')
  t.equal(offload.pendingJobs, 1, 'the refused body was not sent')
  await offload.close()
  t.match(await first, { code: 'WORKERS_UNAVAILABLE', statusCode: 503 }, 'closing answers what still waits with 503, rather than leaving it for ever')
  t.equal(receiving.bytes, 0, 'and gives its bytes back')
  const after = await offload.input(task, new PendingBody(Buffer.from('{}'), 'json')).catch((e: Error) => e)
  t.match(after, { code: 'WORKERS_UNAVAILABLE', message: /shutting down/ }, 'and refuses new jobs')
})

t.test('answers go before bodies waiting: each holds a worker', async (t) => {
  const done: string[] = []
  const offload = offloader(t, { done })
  const order: string[] = []
  const body = (text: string): PendingBody => new PendingBody(Buffer.from(text), 'json')
  // The first body goes to the thread at once; the second waits; the answer, sent last, passes it.
  const jobs = [
    offload.input(task, body('{"values": [1]}')).then(() => { order.push('body 1') }),
    offload.input(task, body('{"values": [2]}')).then(() => { order.push('body 2') }),
    offload.answer({ t: MSG_DEFERRED, id: 3, frame: resultFrame(3, 'x') }, 'json').then(() => { order.push('answer') })
  ]
  t.equal(offload.pendingJobs, 3)
  await Promise.all(jobs)
  t.same(order, ['body 1', 'answer', 'body 2'])
  t.same(done, ['input', 'answer', 'input'])
  t.equal(offload.pendingJobs, 0)
})

t.test('a body whose client leaves while it waits is dropped at once, unparsed, and gives its bytes back', async (t) => {
  const receiving = new ReceiveLimit(1_000_000, 1_000_000, () => {})
  const offload = offloader(t, { script: 'stalls.mjs', holdBody: (bytes) => receiving.holdArrived(bytes) })
  let leave: () => void = () => {}
  let unsubscribed = 0
  const first = offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json')).catch((e: Error) => e)
  const second = offload.input(task, new PendingBody(Buffer.from('{"values": [2]}'), 'json'), {
    onClientGone: (drop) => { leave = drop; return () => { unsubscribed++ } }
  }).catch((e: Error) => e)
  t.equal(offload.pendingJobs, 2)
  leave() // the client leaves while its body waits behind the first, which the thread never finishes
  t.ok(await second instanceof OffloadCancelledError, 'dropped without waiting for the job ahead of it')
  t.equal(offload.pendingJobs, 1)
  t.equal(receiving.bytes, 15, 'its bytes given back, the first one\'s still held')
  t.ok(unsubscribed >= 1, 'it stopped watching its client')
  await offload.close()
  await first
})

t.test('a body whose client\'s budget runs out while it waits is answered 503 QUEUE_TIMEOUT, unparsed', async (t) => {
  const offload = offloader(t, { script: 'stalls.mjs' })
  const first = offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json')).catch((e: Error) => e)
  const late = await offload.input(task, new PendingBody(Buffer.from('{"values": [2]}'), 'json'), { budgetMs: 20 }).catch((e: Error) => e)
  t.match(late, { code: 'QUEUE_TIMEOUT', statusCode: 503, retryAfterSeconds: 1, message: /^the x-request-timeout-ms budget of 20 ms ran out while the body waited to be parsed/ })
  t.equal(offload.pendingJobs, 1, 'the first still runs')
  // A budget past Node's longest timer (the header may have any number of digits) waits, and is not spent at once.
  const patient = offload.input(task, new PendingBody(Buffer.from('{"values": [3]}'), 'json'), { budgetMs: 99_999_999_999 }).catch((e: Error) => e)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(offload.pendingJobs, 2, 'still waiting behind the first')
  await offload.close()
  await first
  t.match(await patient, { code: 'WORKERS_UNAVAILABLE' }, 'until the close answers it')
})

t.test('a body whose wait runs out is told to retry after about the time the thread needs for what it has ahead, at its recent pace', async (t) => {
  // 200 ms a job (slow.mjs): once one has run, the thread's pace is at least 200 ms per job of
  // 15 bytes. Ten bodies ahead and the late one itself: at least 11 × 200 ms, so Retry-After is
  // 3 s or more (more on a slow machine, never less); it was 1 s whatever the backlog.
  const offload = offloader(t, { script: 'slow.mjs' })
  await offload.input(task, new PendingBody(Buffer.from('{"values": [0]}'), 'json'))
  const ahead = Array.from({ length: 10 }, (_, i) => offload.input(task, new PendingBody(Buffer.from(`{"values": [${i}]}`), 'json')))
  const late = await offload.input(task, new PendingBody(Buffer.from('{"values": [9]}'), 'json'), { budgetMs: 20 }).catch((e: Error) => e)
  t.match(late, { code: 'QUEUE_TIMEOUT', statusCode: 503 })
  const { retryAfterSeconds } = late as Error & { retryAfterSeconds: number }
  t.ok(retryAfterSeconds >= 3 && retryAfterSeconds <= 60, `Retry-After ${retryAfterSeconds} s for 11 jobs at 200 ms or more each (at most 60)`)
  await offload.close()
  await Promise.allSettled(ahead)
})

t.test('a job the thread works on past its task\'s timeout fails, and the thread is ended: the next job gets a new one', async (t) => {
  const lines: string[] = []
  const offload = offloader(t, { script: 'stalls.mjs', lines })
  const first = offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json'), { timeLimitMs: 50 }).catch((e: Error) => e)
  const second = offload.input(task, new PendingBody(Buffer.from('{"values": [2]}'), 'json'), { timeLimitMs: 50 }).catch((e: Error) => e)
  const overran = await first
  t.match(overran, { code: 'TASK_TIMEOUT', statusCode: 504, message: /^checking the body took longer than task sum's timeout \(50 ms\) on the offload thread, and was stopped/ })
  t.same(refusedOutcome(overran), { outcome: 'timeout', limit: 'task_timeout' }, 'counted as a call past its timeout')
  const next = await second
  t.match(next, { code: 'TASK_TIMEOUT' }, 'the job waiting behind it ran on a new thread, with a time limit of its own')
  t.equal(offload.threadStarts, 2)
  t.equal(offload.pendingJobs, 0)
  t.equal(offload.pendingBodyBytes, 0, 'their bytes are no longer counted')
  t.match(lines, [/the offload thread worked on a job of 15 bytes past its task's timeout \(50 ms\); it was ended/, /past its task's timeout/])
  const answer = await offload.answer({ t: MSG_DEFERRED, id: 1, frame: encodeFrame(resultFrame(1, 'x')) }, 'json', undefined, 50).catch((e: Error) => e)
  t.ok(answer instanceof OffloadThreadError, 'an answer past it is the offload thread\'s failure (500), not the worker\'s')
  t.match(answer, { message: /writing the answer took longer than the task's timeout \(50 ms\)/ })
})

t.test('a job done within its time limit is not disturbed, and its timer is cleared', async (t) => {
  const offload = offloader(t)
  for (let round = 0; round < 3; round++) {
    const ok = await offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json'), { timeLimitMs: 60_000 })
    t.ok(ok.input instanceof EncodedInput)
  }
  t.equal(offload.threadStarts, 1, 'one thread for all of them')
  // A limit past Node's longest timer does not fire at once.
  t.ok((await offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json'), { timeLimitMs: 99_999_999_999 })).input instanceof EncodedInput)
})

t.test('a body that waits for the thread past QUEUE_TIMEOUT_MS is answered 503 QUEUE_TIMEOUT, unparsed, as a call waiting that long for a worker', async (t) => {
  const offload = new Offloader({ minBytes: 1, queueTimeoutMs: 20, log: pino({ level: 'silent' }), script: new URL('stalls.mjs', FIXTURE_THREADS) })
  t.teardown(async () => { await offload.close() })
  const first = offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json')).catch((e: Error) => e)
  const late = await offload.input(task, new PendingBody(Buffer.from('{"values": [2]}'), 'json'), { budgetMs: 60_000 }).catch((e: Error) => e)
  t.match(late, { code: 'QUEUE_TIMEOUT', statusCode: 503, message: /^QUEUE_TIMEOUT_MS \(20 ms\) ran out while the body waited to be parsed/ })
  await offload.close()
  await first
})

t.test('a client that leaves at once, while its body is being queued, is dropped and stops being watched', async (t) => {
  const offload = offloader(t, { script: 'stalls.mjs' })
  const first = offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json')).catch((e: Error) => e)
  let unsubscribed = 0
  // A subscriber that reports the client gone from inside the subscription itself.
  const gone = await offload.input(task, new PendingBody(Buffer.from('{"values": [2]}'), 'json'), {
    budgetMs: 600_000,
    onClientGone: (drop) => { drop(); return () => { unsubscribed++ } }
  }).catch((e: Error) => e)
  t.ok(gone instanceof OffloadCancelledError)
  t.equal(unsubscribed, 1, 'its subscription ended')
  t.equal(offload.pendingJobs, 1)
  await offload.close()
  await first
})

t.test('answers go first, but a waiting body goes after four in a row', async (t) => {
  const offload = offloader(t)
  const order: string[] = []
  const body = (n: number): Promise<void> => offload.input(task, new PendingBody(Buffer.from(`{"values": [${n}]}`), 'json')).then(() => { order.push(`body ${n}`) })
  const answer = (n: number): Promise<void> => offload.answer({ t: MSG_DEFERRED, id: n, frame: resultFrame(n, n) }, 'json').then(() => { order.push(`answer ${n}`) })
  // Body 1 goes to the thread at once; body 2 waits behind the answers, but not for all six.
  await Promise.all([body(1), body(2), answer(1), answer(2), answer(3), answer(4), answer(5), answer(6)])
  t.same(order, ['body 1', 'answer 1', 'answer 2', 'answer 3', 'answer 4', 'body 2', 'answer 5', 'answer 6'])
})

t.test('while the server drains, bodies are answered 503 instead of being parsed for a call that cannot run', async (t) => {
  const done: string[] = []
  const offload = offloader(t, { done })
  const first = offload.input(task, new PendingBody(Buffer.from('{"values": [1]}'), 'json'))
  const waiting = offload.input(task, new PendingBody(Buffer.from('{"values": [2]}'), 'json')).catch((e: Error) => e)
  offload.drain()
  t.ok((await first).input instanceof EncodedInput, 'the body being parsed is finished (the pool answers its call 503)')
  t.match(await waiting, { code: 'WORKERS_UNAVAILABLE', statusCode: 503, retryAfterSeconds: 1 }, 'the one waiting is answered at once')
  const late = await offload.input(task, new PendingBody(Buffer.from('{}'), 'json')).catch((e: Error) => e)
  t.match(late, { code: 'WORKERS_UNAVAILABLE' }, 'and so is one that comes later')
  t.same(done, ['input'])
  // Answers still go: their calls were admitted, and the drain waits for them.
  const answer = await offload.answer({ t: MSG_DEFERRED, id: 1, frame: resultFrame(1, 'ok') }, 'json')
  t.equal(answer.t, 'answer')
})

t.test('a thread that cannot be started fails the job with OffloadThreadError, not a crash of the caller', async (t) => {
  const offload = offloader(t, { script: new URL('https://example.invalid/thread.mjs') })
  const error = await offload.answer({ t: MSG_DEFERRED, id: 1, frame: resultFrame(1, 'x') }, 'json').catch((e: Error) => e)
  t.ok(error instanceof OffloadThreadError)
  t.match(error, { message: /could not take the job/ })
  t.equal(offload.pendingJobs, 0)
})

t.test('at a limit on processes and threads no thread can start: jobs are done on the event loop instead, said once, until one can', async (t) => {
  // Node's Worker at a pids limit throws ERR_WORKER_INIT_FAILED with the errno as its message;
  // made here by a Worker class that does so while `full` is set, a real one otherwise.
  let full = true
  class LimitedWorker extends Worker {
    constructor (...args: ConstructorParameters<typeof Worker>) {
      if (full) throw Object.assign(new Error('EAGAIN'), { code: 'ERR_WORKER_INIT_FAILED' })
      super(...args)
    }
  }
  const { Offloader: AtLimit } = await t.mockImport<typeof import('../../src/offload/offloader.js')>('../../src/offload/offloader.js', {
    'node:worker_threads': { ...workerThreads, Worker: LimitedWorker }
  })
  const lines: Array<{ level: number, msg: string }> = []
  const done: string[] = []
  const offload = new AtLimit({
    minBytes: 1,
    log: pino({ level: 'info' }, { write (line: string) { lines.push(JSON.parse(line)) } }),
    onJobDone: (op) => { done.push(op) },
    script: BUILT_OFFLOAD_THREAD
  })
  t.teardown(async () => { await offload.close() })

  const input = await offload.input(task, new PendingBody(Buffer.from('{"values": [1, 4294967296]}'), 'json'))
  t.same(decodeValue((input.input as EncodedInput).bytes), { values: [1, 4294967296] }, 'the body is the input, as the thread makes it')
  const refused = await offload.input(task, new PendingBody(Buffer.from('{"values": "x"}'), 'json')).catch((e: Error) => e)
  t.ok(refused instanceof ValidationError, 'and refused as the thread refuses it')
  const answer = await offload.answer({ t: MSG_DEFERRED, id: 7, frame: resultFrame(7, { n: 1 }) }, 'json')
  t.same(answer.t === 'answer' ? JSON.parse(Buffer.from(answer.bytes).toString()) : answer, { n: 1 }, 'a large reply is written as the answer')
  t.equal(offload.threadStarts, 0, 'no thread ran them')
  t.equal(offload.pendingJobs, 0)
  t.equal(offload.pendingBodyBytes, 0, 'their bytes are no longer counted')
  t.same(done, [], 'pyfleet_offload_jobs_total counts the thread\'s conversions only')
  const warned = lines.filter((line) => line.msg.startsWith('the offload thread could not be started'))
  t.equal(warned.length, 1, 'said once, not for every job')
  t.match(warned[0], { level: 40, msg: `the offload thread could not be started: EAGAIN: ${PROCESS_LIMIT_FIX}. Large bodies and answers are converted on the event loop until it can be, which holds every other request while each one is` })

  full = false
  const onThread = await offload.input(task, new PendingBody(Buffer.from('{"values": [2]}'), 'json'))
  t.same(decodeValue((onThread.input as EncodedInput).bytes), { values: [2] })
  t.equal(offload.threadStarts, 1, 'a thread starts once there is room')
  t.same(done, ['input'])
  t.match(lines.at(-1), { level: 30, msg: 'the offload thread started again: large bodies and answers are converted on it again' })
})

t.test('ownBytes: bytes that own their buffer move as they are; a view into a larger buffer is copied', async (t) => {
  const whole = new Uint8Array(8)
  t.equal(ownBytes(whole), whole)
  const view = Buffer.from('a small buffer from Node\'s shared pool')
  const copy = ownBytes(view)
  t.not(copy.buffer, view.buffer)
  t.same(Buffer.from(copy), view)
})

t.test('the thread ends when it has had no job for a while, and the next job starts a new one', async (t) => {
  const lines: string[] = []
  const offload = offloader(t, { idleStopMs: 50, lines })
  t.equal(offload.threadRunning, false, 'no thread before the first job')
  const body = (): PendingBody => new PendingBody(Buffer.from('{"values": [1]}'), 'json')
  await offload.input(task, body())
  t.equal(offload.threadStarts, 1)
  await waitFor(() => !offload.threadRunning, 5_000, 'the idle thread to end')
  const again = await offload.input(task, body())
  t.same(decodeValue((again.input as EncodedInput).bytes), { values: [1] }, 'a new thread takes the next job')
  t.equal(offload.threadStarts, 2)
  t.same(lines, [], 'an idle stop is not a failure, and is not logged as one')
})
