// Reading JSON integer literals past 2^53 exactly, and checking BigInts against schemas.

import t from 'tap'
import { parseWithExactIntegers, validateWithBigInts } from '../src/routes/big-integers.js'

const parse = (text: string): unknown => JSON.parse(text)

t.test('only integer literals past 2^53 outside strings become BigInt', async (t) => {
  t.equal(parseWithExactIntegers('{"a": 1, "b": 9007199254740991, "c": 1e300, "d": -0.5}', parse), undefined, 'none: nothing to redo')
  const text = '{"id": 9007199254740993, "s": "\\"9007199254740993", "e": 9007199254740993e0, "f": 90071992547409930.0, "n": [-9007199254740993, {"k": 12345678901234567890}]}'
  t.same(parseWithExactIntegers(text, parse), {
    id: 9007199254740993n,
    s: '"9007199254740993',
    e: 9007199254740992,
    f: 90071992547409930,
    n: [-9007199254740993n, { k: 12345678901234567890n }]
  })
  t.equal(parseWithExactIntegers(' 9007199254740993 ', parse), 9007199254740993n, 'the whole body')
  t.equal(parseWithExactIntegers('"\\u0000x:9007199254740993"', parse), undefined, 'a string that looks like the marker is a string')
})

t.test('past 64 bits: a 400 with the line and column', async (t) => {
  t.throws(() => parseWithExactIntegers('[1,\n  18446744073709551616]', parse), { code: 'INVALID_INPUT', details: { line: 2, column: 3 } })
  t.throws(() => parseWithExactIntegers('[-9223372036854775809]', parse), { code: 'INVALID_INPUT' })
  const long = '1'.repeat(100)
  t.throws(() => parseWithExactIntegers(`[${long}]`, parse), { message: /the integer 1{40}… does not fit 64 bits/ })
})

t.test('validateWithBigInts: the schema sees numbers, the value keeps its BigInts, also when validation throws', async (t) => {
  const value = { n: 2n ** 60n, list: [1n, 2] }
  const seen: unknown[] = []
  t.equal(validateWithBigInts(value, (v) => { seen.push(structuredClone(v)); return true }), true)
  t.same(seen, [{ n: 2 ** 60, list: [1, 2] }])
  t.same(value, { n: 2n ** 60n, list: [1n, 2] }, 'put back')
  t.throws(() => validateWithBigInts(value, () => { throw new Error('boom') }))
  t.same(value, { n: 2n ** 60n, list: [1n, 2] }, 'put back after a throw')
  t.equal(validateWithBigInts(5n, (v) => v === 5), true, 'a BigInt body')
})
