// Which numbers become BigInt (msgpack int64) before packing, and which stay numbers.

import t from 'tap'
import { wideIntegersAsBigInt } from '../../src/pool/wide-integers.js'

t.test('integers beyond 32 bits and within 2^53 become BigInt; everything else is left alone', async (t) => {
  t.equal(wideIntegersAsBigInt(0xffffffff), 0xffffffff, 'uint32: msgpackr already writes an integer')
  t.equal(wideIntegersAsBigInt(-0x80000000), -0x80000000, 'int32 likewise')
  t.equal(wideIntegersAsBigInt(0x100000000), 0x100000000n)
  t.equal(wideIntegersAsBigInt(-0x80000001), -0x80000001n)
  t.equal(wideIntegersAsBigInt(Number.MAX_SAFE_INTEGER), BigInt(Number.MAX_SAFE_INTEGER))
  t.equal(wideIntegersAsBigInt(Number.MIN_SAFE_INTEGER), BigInt(Number.MIN_SAFE_INTEGER))
  t.equal(wideIntegersAsBigInt(2 ** 53), 2n ** 53n, '±2^53 itself: msgpackr decodes such an int64 as a number')
  t.equal(wideIntegersAsBigInt(-(2 ** 53)), -(2n ** 53n))
  t.equal(wideIntegersAsBigInt(2 ** 53 + 2), 2 ** 53 + 2, 'past it, a number may have been rounded: stays a float')
  t.equal(wideIntegersAsBigInt(1e300), 1e300)
  t.equal(wideIntegersAsBigInt(5e9 + 0.5), 5e9 + 0.5)
  t.ok(Number.isNaN(wideIntegersAsBigInt(NaN)))
  t.equal(wideIntegersAsBigInt('5000000000'), '5000000000')
  t.equal(wideIntegersAsBigInt(null), null)
})

t.test('containers are changed in place, at any depth; bytes are not walked', async (t) => {
  const bytes = Buffer.from([1, 2, 3])
  const value = { a: [1, 5e9, { b: [[-5e9]] }], c: bytes, d: 'x', e: 2.5 }
  t.equal(wideIntegersAsBigInt(value), value, 'the same object')
  t.same(value, { a: [1, 5000000000n, { b: [[-5000000000n]] }], c: bytes, d: 'x', e: 2.5 })
  t.equal(value.c, bytes)
  let deep: unknown[] = [6e9]
  for (let i = 0; i < 100_000; i++) deep = [deep]
  t.doesNotThrow(() => wideIntegersAsBigInt(deep), 'iterative: no stack overflow')
})
