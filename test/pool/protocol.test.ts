// decodeReply: bytes that are not msgpack break the protocol (SPEC §4); valid
// msgpack that Node cannot represent is the task's failure, and the worker stays.

import t from 'tap'
import { Packr, unpack } from 'msgpackr'
import { decodeReply, decodeValue, encodeCall, encodeInput, EncodedInput, encodeValue, ProtocolError, SplitFrame, type ResultMessage } from '../../src/pool/protocol.js'
import { decodeReady } from '../../src/pool/ready-message.js'

const packr = new Packr({ useRecords: false, moreTypes: true })

t.test('a result with a bytes key or an extension type is a failed call, not a protocol error', async (t) => {
  const bytesKey = packr.pack({ t: 'result', id: 7, value: new Map([[Buffer.from('k'), 1]]) })
  const reply = decodeReply(bytesKey, 7)
  t.equal(reply.t, 'error')
  t.match(reply, { id: 7, kind: 'failed', type: 'UndecodableResult', message: 'the result has a bytes dict key; use str keys' })
  // Deeper: the path says where, as the worker says it of a TaskError's details.
  const deep = packr.pack({ t: 'result', id: 9, value: { rows: [{ a: 1 }, new Map<unknown, number>([['b', 1], [[1, 2], 2]])] } })
  t.match(decodeReply(deep, 9), { kind: 'failed', type: 'UndecodableResult', message: 'the result has a tuple dict key [1,2] at ["rows"][1]; use str keys' })
  // A tuple key's values as the worker writes them for details (unsendable.py's test has the same
  // key and text), and only the first 100 characters built: 8 MB of bytes in a key are their length.
  const mixed = packr.pack({ t: 'result', id: 10, value: new Map<unknown, number>([[[Buffer.from('ab'), 2.5, [1, 'x'], null, true], 1]]) })
  t.match(decodeReply(mixed, 10), { message: 'the result has a tuple dict key [<2 bytes>,2.5,[1,"x"],null,true]; use str keys' })
  const huge = packr.pack({ t: 'result', id: 11, value: new Map<unknown, number>([[[Buffer.alloc(8 * 1024 * 1024), 'y'.repeat(1000)], 1]]) })
  t.match(decodeReply(huge, 11), { message: `the result has a tuple dict key [<8388608 bytes>,"${'y'.repeat(79)}...; use str keys` })
  // {t: 'result', id: 8, value: ExtType(5, 'x')}, by hand: fixmap of 3, then fixext1 of type 5.
  const withExt = Buffer.from([0x83, 0xa1, 0x74, 0xa6, ...Buffer.from('result'), 0xa2, 0x69, 0x64, 0x08, 0xa5, ...Buffer.from('value'), 0xd4, 0x05, 0x78])
  t.match(decodeReply(withExt, 8), { kind: 'failed', type: 'UndecodableResult', message: /^the result is msgpack that cannot become a JavaScript value \(an extension type\?\)/ })
})

t.test('a frame that will not decode and is no reply to the call (another call\'s, or no message) is a protocol error, not the task\'s failure', async (t) => {
  const bad = new Map([[Buffer.from('k'), 1]])
  t.throws(() => decodeReply(packr.pack({ t: 'result', id: 99, value: bad }), 5), new ProtocolError('reply for call 99 while call 5 is outstanding'), 'as the same frame with a value that decodes')
  t.throws(() => decodeReply(packr.pack({ t: 'result', id: 99, value: 1 }), 5), new ProtocolError('reply for call 99 while call 5 is outstanding'))
  t.throws(() => decodeReply(packr.pack(bad), 5), new ProtocolError('frame is not a result or error message'))
  t.throws(() => decodeReply(packr.pack({ t: 'ready', id: 5, value: bad }), 5), new ProtocolError('frame is not a result or error message'))
  t.match(decodeReply(packr.pack({ t: 'error', id: 5, kind: 'rejected', type: 'TaskError', message: 'm', details: bad }), 5), { kind: 'failed', type: 'UndecodableResult' }, 'an error reply to this call: still the task\'s')
})

function thrown (decode: () => unknown): unknown {
  try { decode() } catch (error) { return error }
  return undefined
}

t.test('bytes that are not msgpack, or not a reply, are protocol errors', async (t) => {
  t.ok(thrown(() => decodeReply(Buffer.from([0xc1]), 1)) instanceof ProtocolError, 'the never-used byte')
  t.ok(thrown(() => decodeReply(Buffer.from([0x83, 0xa1, 0x74]), 1)) instanceof ProtocolError, 'a cut map')
  const withExtThenGarbage = Buffer.from([0x83, 0xa1, 0x74, 0xa6, ...Buffer.from('result'), 0xa2, 0x69, 0x64, 0x08, 0xa5, ...Buffer.from('value'), 0xd4, 0x05, 0x78, 0xc1, 0xc1, 0xff, 0xde])
  t.ok(thrown(() => decodeReply(withExtThenGarbage, 8)) instanceof ProtocolError, 'an extension type followed by garbage')
  t.ok(thrown(() => decodeReply(packr.pack([1, 2]), 1)) instanceof ProtocolError, 'not a message map')
  t.ok(thrown(() => decodeReply(packr.pack({ t: 'result', id: 2, value: 1 }), 1)) instanceof ProtocolError, 'the wrong call id')
  t.throws(() => decodeReply(packr.pack({ t: 'result', id: 1 }), 1), new ProtocolError('unexpected or malformed "result" message'), 'a result without its value')
  t.match(decodeReply(packr.pack({ t: 'result', id: 1, value: null }), 1), { t: 'result', id: 1, value: null }, 'a value of nil is one')
})

t.test('a malformed ready message is refused with the task and field named', async (t) => {
  const task = { name: 'greet', doc: '', schema: {}, timeoutMs: null, raw: [], rawField: null, maxConcurrency: null }
  const ready = (tasks: unknown[], pid: unknown = 42): Buffer => packr.pack({ t: 'ready', v: 1, pid, tasks })
  t.match(decodeReady(ready([task])), { pid: 42, tasks: [{ name: 'greet' }] })
  t.match(decodeReady(ready([{ ...task, module: 'greetings' }])), { tasks: [{ module: 'greetings' }] }, 'the module, when a worker sends it')
  const cases: Array<[Buffer, RegExp]> = [
    [ready([task], 'x'), /pid that is string "x"/],
    [ready([{ ...task, timeoutMs: true }]), /task "greet": timeoutMs must be a positive number or null, not boolean true/],
    [ready([{ ...task, schema: 'object' }]), /task "greet": schema must be a map or a boolean, not string "object"/],
    [ready([{ ...task, schema: [] }]), /task "greet": schema must be a map or a boolean, not an array/],
    [ready([{ ...task, raw: 'text/plain' }]), /task "greet": raw must be a list of strings/],
    [ready([{ ...task, maxConcurrency: 0 }]), /task "greet": maxConcurrency must be a number of at least 1/],
    [ready([{ ...task, module: 5 }]), /task "greet": module must be a string or null, not number 5/],
    [ready([task, 7]), /task 2 of the list is number 7, not a map/],
    [ready([{ ...task, name: 3 }]), /task 1 of the list has a name that is number 3/]
  ]
  for (const [frame, message] of cases) {
    const error = thrown(() => decodeReady(frame))
    t.ok(error instanceof ProtocolError, String(message))
    t.match((error as Error).message, message)
  }
})

t.test('a result laid out as the worker writes it carries its value\'s own bytes; any other layout does not', async (t) => {
  const value = Buffer.from('92cb4000000000000000cf0000010000000000', 'hex') // [2.0, 2^40] as Python packs them
  const result = (idBytes: string): Buffer => Buffer.concat([Buffer.from('83a174a6' + Buffer.from('result').toString('hex') + 'a26964' + idBytes + 'a5' + Buffer.from('value').toString('hex'), 'hex'), value])
  for (const [idBytes, id] of [['07', 7], ['cc80', 128], ['cd0100', 256], ['ce00010000', 65536], ['cf0000000100000000', 2 ** 32]] as const) {
    const reply = decodeReply(result(idBytes), id)
    t.equal(reply.t, 'result')
    t.equal(Buffer.from((reply as ResultMessage).msgpack ?? []).toString('hex'), value.toString('hex'), `id ${id}`)
  }
  const otherOrder = Buffer.concat([Buffer.from('83a26964' + '07' + 'a174a6' + Buffer.from('result').toString('hex') + 'a5' + Buffer.from('value').toString('hex'), 'hex'), value])
  const reply = decodeReply(otherOrder, 7) as ResultMessage
  t.equal(reply.msgpack, undefined, 'keys in another order: the value is encoded again when needed')
  t.same(reply.value, [2, 2 ** 40])
})

t.test('integers past 32 bits are int64 in a call frame when the route says the input holds them, and always in a re-encoded answer', async (t) => {
  const input = { ts: 1764400000000, list: [-5e9, 5e9 + 0.5] }
  const header = 4
  const widened = unpack((encodeCall(1, 'echo', input, 'r', 5000, true) as Buffer).subarray(header), { int64AsType: 'bigint' } as any) as { input: unknown }
  t.strictSame(widened.input, { ts: 1764400000000n, list: [-5000000000n, 5e9 + 0.5] })
  const asIs = unpack((encodeCall(1, 'echo', input, 'r', 5000) as Buffer).subarray(header), { int64AsType: 'bigint' } as any) as { input: unknown }
  t.strictSame(asIs.input, input, 'not asked: msgpackr\'s float64s are left (the route asks whenever a number is past 32 bits)')
  t.strictSame(unpack(encodeValue(input), { int64AsType: 'bigint' } as any), { ts: 1764400000000n, list: [-5000000000n, 5e9 + 0.5] })
})

t.test('64-bit integers decode as numbers within ±2^53 and as BigInt past it, in replies and bodies alike', async (t) => {
  const reply = (value: unknown): unknown => (decodeReply(packr.pack({ t: 'result', id: 3, value }), 3) as ResultMessage).value
  t.strictSame(reply([2n ** 53n, -(2n ** 53n), 1764400000000n, -5000000000n]), [2 ** 53, -(2 ** 53), 1764400000000, -5000000000])
  t.strictSame(reply([1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 64n - 1n]), [1, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 64n - 1n])
  t.strictSame(decodeValue(packr.pack({ ts: 1764400000000n })), { ts: 1764400000000 })
  t.strictSame(decodeValue(packr.pack({ ts: 1764400000000n, id: 2n ** 60n })), { ts: 1764400000000, id: 2n ** 60n })
})

t.test('input encoded before (the offload thread\'s) makes a frame in two parts with the same bytes as one encoded at once', async (t) => {
  const input = { text: 'héllo'.repeat(1000), n: 2 ** 40, list: [1, 2, 3] }
  const whole = encodeCall(3, 'echo', input, 'req-1', 250, true)
  const split = encodeCall(3, 'echo', new EncodedInput(encodeInput(input, true)), 'req-1', 250)
  t.ok(Buffer.isBuffer(whole), 'a value encoded now: one buffer')
  t.ok(split instanceof SplitFrame, 'bytes encoded before: written after the head, not copied into one buffer with it')
  const parts = split as SplitFrame
  const joined = Buffer.concat([parts.head, parts.input])
  t.equal(parts.length, joined.length)
  t.equal(joined.readUInt32BE(0), joined.length - 4, 'the length prefix counts both parts')
  const asBigInts = { int64AsType: 'bigint' } as any
  t.same(unpack(joined.subarray(4), asBigInts), unpack((whole as Buffer).subarray(4), asBigInts), 'the same message (its keys in another order), integers widened alike')
  t.match(unpack(joined.subarray(4)), { t: 'call', id: 3, task: 'echo', requestId: 'req-1', timeoutMs: 250 }, 'the time the call may take in both')
})
