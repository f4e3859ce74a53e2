// decodeReply: bytes that are not msgpack break the protocol (SPEC §4); valid
// msgpack that Node cannot represent is the task's failure, and the worker stays.

import t from 'tap'
import { Packr } from 'msgpackr'
import { decodeReply, ProtocolError } from '../../src/pool/protocol.js'

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
