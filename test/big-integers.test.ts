// Reading JSON integer literals past 2^53 exactly, and checking BigInts against schemas.

import t from 'tap'
import { exactQueryInteger, MAX_WIDE_LITERALS, parseWithExactIntegers, validateWithBigInts } from '../src/routes/big-integers.js'

const parse = (text: string): unknown => JSON.parse(text)

t.test('only integer literals past 2^53 outside strings, within 64 bits, become BigInt', async (t) => {
  t.equal(parseWithExactIntegers('{"a": 1, "b": 9007199254740991, "c": 1e300, "d": -0.5}', parse), undefined, 'none: nothing to redo')
  const text = '{"id": 9007199254740993, "s": "\\"9007199254740993", "e": 9007199254740993e0, "f": 90071992547409930.0, "n": [-9007199254740993, {"k": 12345678901234567890}], "huge": 18446744073709551616, "low": -9223372036854775808, "lower": -9223372036854775809}'
  t.same(parseWithExactIntegers(text, parse), {
    id: 9007199254740993n,
    s: '"9007199254740993',
    e: 9007199254740992,
    f: 90071992547409930,
    n: [-9007199254740993n, { k: 12345678901234567890n }],
    huge: 18446744073709551616,
    low: -9223372036854775808n,
    lower: -9223372036854775809
  }, 'past 64 bits: the number JSON.parse makes of it, as before')
  t.equal(parseWithExactIntegers(' 9007199254740993 ', parse), 9007199254740993n, 'the whole body')
  const strings = '["a\\\\", "b\\"c 9007199254740993\\\\\\"", 9007199254740995, "\\\\\\"9007199254740997"]'
  t.same(parseWithExactIntegers(strings, parse), JSON.parse(strings).map((v: unknown) => typeof v === 'number' ? 9007199254740995n : v), 'escaped quotes and backslashes before a closing quote')
})

t.test('a client string in the marker\'s format stays a string', async (t) => {
  // The marker is a NUL, a nonce drawn at start-up, and a colon: a client cannot know the nonce.
  const value = parseWithExactIntegers('{"a": "\\u0000x:5", "b": "\\u0000000000000000:6", "c": 9007199254740993}', parse) as Record<string, unknown>
  t.same(value, { a: '\u0000x:5', b: '\u0000000000000000:6', c: 9007199254740993n })
})

t.test('exactQueryInteger: integer text past 2^53 within 64 bits, nothing else', async (t) => {
  t.equal(exactQueryInteger('9007199254740993'), 9007199254740993n)
  t.equal(exactQueryInteger('-9223372036854775808'), -9223372036854775808n)
  t.equal(exactQueryInteger('9007199254740991'), undefined, 'safe: a number is exact')
  t.equal(exactQueryInteger('18446744073709551616'), undefined, 'past 64 bits')
  t.equal(exactQueryInteger('9007199254740992'), 9007199254740992n, '2^53 itself')
  t.equal(exactQueryInteger('-9007199254740992'), -9007199254740992n)
  t.equal(exactQueryInteger('-9007199254740991'), undefined)
  t.equal(exactQueryInteger('18446744073709551615'), 18446744073709551615n, 'the largest uint64')
  t.equal(exactQueryInteger('99999999999999999999'), undefined, '20 digits past it')
  t.equal(exactQueryInteger('-9223372036854775809'), undefined, 'one below the smallest int64')
  t.equal(exactQueryInteger('9007199254740993.0'), undefined)
  t.equal(exactQueryInteger('+1790000000000000001'), 1790000000000000001n, 'a plus sign, as Ajv takes it')
  t.equal(exactQueryInteger('018446744073709551615'), 18446744073709551615n, 'leading zeros')
  t.equal(exactQueryInteger('00000000000000000005'), undefined, '5, however written')
  t.equal(exactQueryInteger(' 9007199254740993'), undefined)
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

t.test('more than MAX_WIDE_LITERALS such integers in one body: a 400 saying what to do instead', async (t) => {
  const body = (n: number): string => `[${Array(n).fill('9007199254740993').join(',')}]`
  t.equal((parseWithExactIntegers(body(MAX_WIDE_LITERALS), parse) as unknown[]).length, MAX_WIDE_LITERALS, 'at the limit: read')
  t.throws(() => parseWithExactIntegers(body(MAX_WIDE_LITERALS + 1), parse), { code: 'INVALID_INPUT', message: /more than 100000 integers past 2\^53; send it as msgpack/ })
})
