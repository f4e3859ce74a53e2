// decodeReply: bytes that are not msgpack break the protocol (SPEC §4); valid
// msgpack that Node cannot represent is the task's failure, and the worker stays.

import t from 'tap'
import { Packr } from 'msgpackr'
import { decodeReady, decodeReply, ProtocolError, type ResultMessage } from '../../src/pool/protocol.js'

const packr = new Packr({ useRecords: false, moreTypes: true })

t.test('a result with a bytes key or an extension type is a failed call, not a protocol error', async (t) => {
  const bytesKey = packr.pack({ t: 'result', id: 7, value: new Map([[Buffer.from('k'), 1]]) })
  const reply = decodeReply(bytesKey, 7)
  t.equal(reply.t, 'error')
  t.match(reply, { id: 7, kind: 'failed', type: 'UndecodableResult', message: /^the result is msgpack that cannot become a JavaScript value/ })
  // {t: 'result', id: 8, value: ExtType(5, 'x')}, by hand: fixmap of 3, then fixext1 of type 5.
  const withExt = Buffer.from([0x83, 0xa1, 0x74, 0xa6, ...Buffer.from('result'), 0xa2, 0x69, 0x64, 0x08, 0xa5, ...Buffer.from('value'), 0xd4, 0x05, 0x78])
  t.match(decodeReply(withExt, 8), { kind: 'failed', type: 'UndecodableResult' })
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
})

t.test('a malformed ready message is refused with the task and field named', async (t) => {
  const task = { name: 'greet', doc: '', schema: {}, timeoutMs: null, raw: [], rawField: null, maxConcurrency: null }
  const ready = (tasks: unknown[], pid: unknown = 42): Buffer => packr.pack({ t: 'ready', v: 1, pid, tasks })
  t.match(decodeReady(ready([task])), { pid: 42, tasks: [{ name: 'greet' }] })
  const cases: Array<[Buffer, RegExp]> = [
    [ready([task], 'x'), /pid that is string "x"/],
    [ready([{ ...task, timeoutMs: true }]), /task "greet": timeoutMs must be a positive number or null, not boolean true/],
    [ready([{ ...task, schema: 'object' }]), /task "greet": schema must be a map or a boolean, not string "object"/],
    [ready([{ ...task, schema: [] }]), /task "greet": schema must be a map or a boolean, not an array/],
    [ready([{ ...task, raw: 'text/plain' }]), /task "greet": raw must be a list of strings/],
    [ready([{ ...task, maxConcurrency: 0 }]), /task "greet": maxConcurrency must be a number of at least 1/],
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
