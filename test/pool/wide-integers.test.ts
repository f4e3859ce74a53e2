// Which float64s in packed msgpack are rewritten as int64, and that the scan finds
// every value whatever surrounds it.

import t from 'tap'
import { Packr, Unpackr } from 'msgpackr'
import { holdsIntegersPastDoubles, isWideInteger, nextValue, widenPackedIntegers } from '../../src/pool/wide-integers.js'

// As protocol.ts packs; the unpacker reads every 64-bit integer as BigInt, so an
// int64 and a float64 of the same value decode differently.
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' })

t.test('integers beyond 32 bits and within ±2^53 are wide; everything else is not', async (t) => {
  t.notOk(isWideInteger(0xffffffff), 'uint32: msgpackr already writes an integer')
  t.notOk(isWideInteger(-0x80000000), 'int32 likewise')
  t.ok(isWideInteger(0x100000000))
  t.ok(isWideInteger(-0x80000001))
  t.ok(isWideInteger(2 ** 53), '±2^53 itself: msgpackr decodes such an int64 as a number')
  t.ok(isWideInteger(-(2 ** 53)))
  t.notOk(isWideInteger(2 ** 53 + 2), 'past it, a number may have been rounded: stays a float')
  t.notOk(isWideInteger(1e300))
  t.notOk(isWideInteger(5e9 + 0.5))
  t.notOk(isWideInteger(NaN))
  t.notOk(isWideInteger(Infinity))
})

t.test('a wide integer becomes the int64 msgpackr writes for the same BigInt, byte for byte', async (t) => {
  for (const n of [0x100000000, -0x80000001, 1764400000000, -1764400000000, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 53, -(2 ** 53), 2 ** 52 + 1, -(2 ** 32)]) {
    t.strictSame(widenPackedIntegers(packr.pack(n)), packr.pack(BigInt(n)), String(n))
  }
  for (const x of [2 ** 53 + 2, 5e9 + 0.5, 1.5, -0.5, 1e300, NaN, -Infinity]) {
    t.same(widenPackedIntegers(packr.pack(x)), packr.pack(x), `${x} stays a float64`)
  }
})

// The reference: what msgpackr writes when every wide integer is a BigInt beforehand.
function asBigInts (value: unknown): unknown {
  if (typeof value === 'number') return isWideInteger(value) ? BigInt(value) : value
  if (Array.isArray(value)) return value.map(asBigInts)
  if (typeof value === 'object' && value !== null && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, asBigInts(v)]))
  }
  return value
}

t.test('the scan steps over every kind of value msgpackr writes, at any depth', async (t) => {
  const long = 'x'.repeat(70_000) // str32, and bin32 below: lengths in 4 bytes
  const kinds: unknown[] = [
    0, 1, 127, 128, 255, 256, 65_535, 65_536, -1, -32, -33, -128, -129, -32_768, -32_769, 0xffffffff, -0x80000000,
    true, false, null, 1.5, -2.25, 3e300, 5e9 + 0.5,
    // A float64 byte (0xcb) inside a string or bytes must be skipped, not read as a value.
    '', 'a', '\u00cb'.repeat(40), 'é'.repeat(200), long,
    Buffer.from([0xcb, 0, 0, 0, 0, 0, 0, 0, 0]), Buffer.alloc(300, 0xcb), Buffer.alloc(70_000, 0xcb),
    18_446_744_073_709_551_615n, -9_007_199_254_740_993n, // BigInts: uint64, int64
    { deeper: [[[-5e9]]] }, [],
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, 6e9 + i])), // map16
    Array.from({ length: 20 }, (_, i) => -(6e9 + i)), // array16
    Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i])), // map32
    Array.from({ length: 70_000 }, (_, i) => i % 2 === 0 ? 7e9 : i) // array32
  ]
  // Each kind followed by a wide integer: a scan that steps one byte too far or too
  // short misses it (or rewrites bytes that are not one), and the bytes differ.
  const value = kinds.flatMap((kind, i) => [kind, 1764400000000 + i])
  t.strictSame(widenPackedIntegers(packr.pack(value)), packr.pack(asBigInts(value)), 'the bytes of the same value with BigInts')
  const decoded = unpackr.unpack(widenPackedIntegers(packr.pack({ ts: 1764400000000, floats: [5e9 + 0.5] })))
  t.strictSame(decoded, { ts: 1764400000000n, floats: [5e9 + 0.5] }, 'a wide float stays a float')
})

t.test('every msgpack format is stepped over by its exact length', async (t) => {
  const bytes = (...parts: Array<number | number[] | Buffer>): Buffer => Buffer.concat(parts.map((p) => Buffer.from(typeof p === 'number' ? [p] : p)))
  const step = (packed: Uint8Array): number => nextValue(packed, new DataView(packed.buffer, packed.byteOffset, packed.byteLength), 0)
  // [what, its bytes, where the next value starts: the end for a scalar, after the header for a container]
  const samples: Array<[string, Buffer, number?]> = [
    ['positive fixint', bytes(0x7f)], ['negative fixint', bytes(0xe0)],
    ['fixmap', bytes(0x81, 0xa1, 0x61, 0x01), 1], ['fixarray', bytes(0x92, 0x01, 0x02), 1],
    ['fixstr', bytes(0xa3, [0x61, 0x62, 0x63])], ['empty fixstr', bytes(0xa0)],
    ['nil', bytes(0xc0)], ['false', bytes(0xc2)], ['true', bytes(0xc3)],
    ['bin8', bytes(0xc4, 2, [0xcb, 0xcb])], ['bin16', bytes(0xc5, [1, 0], Buffer.alloc(256, 0xcb))],
    ['bin32', bytes(0xc6, [0, 1, 0, 0], Buffer.alloc(65_536, 0xcb))],
    ['ext8', bytes(0xc7, 3, 0x05, [1, 2, 3])], ['ext16', bytes(0xc8, [1, 0], 0x05, Buffer.alloc(256))],
    ['ext32', bytes(0xc9, [0, 1, 0, 0], 0x05, Buffer.alloc(65_536))],
    ['float32', bytes(0xca, [0, 0, 0, 0])], ['float64', bytes(0xcb, Buffer.alloc(8))],
    ['uint8', bytes(0xcc, 1)], ['uint16', bytes(0xcd, [1, 2])], ['uint32', bytes(0xce, [1, 2, 3, 4])],
    ['uint64', bytes(0xcf, Buffer.alloc(8, 1))], ['int8', bytes(0xd0, 1)], ['int16', bytes(0xd1, [1, 2])],
    ['int32', bytes(0xd2, [1, 2, 3, 4])], ['int64', bytes(0xd3, Buffer.alloc(8, 1))],
    ['fixext1', bytes(0xd4, 0x05, 1)], ['fixext2', bytes(0xd5, 0x05, [1, 2])], ['fixext4', bytes(0xd6, 0x05, [1, 2, 3, 4])],
    ['fixext8', bytes(0xd7, 0x05, Buffer.alloc(8))], ['fixext16', bytes(0xd8, 0x05, Buffer.alloc(16))],
    ['str8', bytes(0xd9, 2, [0x61, 0x62])], ['str16', bytes(0xda, [1, 0], Buffer.alloc(256, 0x61))],
    ['str32', bytes(0xdb, [0, 1, 0, 0], Buffer.alloc(65_536, 0x61))],
    ['array16', bytes(0xdc, [0, 1], 0x01), 3], ['array32', bytes(0xdd, [0, 0, 0, 1], 0x01), 5],
    ['map16', bytes(0xde, [0, 1], 0xa1, 0x61, 0x01), 3], ['map32', bytes(0xdf, [0, 0, 0, 1], 0xa1, 0x61, 0x01), 5]
  ]
  for (const [what, packed, next] of samples) t.equal(step(packed), next ?? packed.length, what)
  const types = new Set(samples.map(([, packed]) => packed[0]))
  t.equal(types.size, samples.length, 'one sample per type byte')
  t.equal(samples.length, 37, 'every format but the fix ranges\' other members and 0xc1')
})

t.test('only the bytes from `start` on are scanned, in place', async (t) => {
  const body = packr.pack([5e9])
  const frame = Buffer.concat([Buffer.from([0xcb, 0xcb, 0xcb, 0xcb]), body]) // a header that looks like a float64
  t.equal(widenPackedIntegers(frame, 4), frame, 'the same buffer')
  t.same(frame.subarray(0, 4), [0xcb, 0xcb, 0xcb, 0xcb], 'the header is not read as msgpack')
  t.strictSame(unpackr.unpack(frame.subarray(4)), [5000000000n])
})

t.test('a byte that msgpack never uses is an error, not a silent skip', async (t) => {
  t.throws(() => widenPackedIntegers(Buffer.from([0x91, 0xc1])), /type byte 0xc1 at offset 1/)
})

t.test('a 64-bit integer past ±2^53 is found wherever it is; ±2^53 and everything within is not', async (t) => {
  const int64 = (n: bigint): Buffer => { const b = Buffer.alloc(9); b[0] = 0xd3; b.writeBigInt64BE(n, 1); return b }
  const uint64 = (n: bigint): Buffer => { const b = Buffer.alloc(9); b[0] = 0xcf; b.writeBigUInt64BE(n, 1); return b }
  const two53 = 2n ** 53n
  const inArray = (...values: Buffer[]): Buffer => Buffer.concat([Buffer.from([0x90 + values.length]), ...values])
  for (const n of [0n, 5n, two53, -two53, two53 - 1n, -two53 + 5n, -two53 + (2n ** 32n - 1n), 2n ** 52n + 1n, -1n]) {
    t.notOk(holdsIntegersPastDoubles(inArray(int64(n))), `int64 ${n}`)
  }
  for (const n of [two53 + 1n, -two53 - 1n, two53 + 2n ** 32n, 2n ** 63n - 1n, -(2n ** 63n), -(2n ** 54n)]) {
    t.ok(holdsIntegersPastDoubles(inArray(int64(n))), `int64 ${n}`)
  }
  t.notOk(holdsIntegersPastDoubles(inArray(uint64(two53))), 'uint64 2^53')
  t.ok(holdsIntegersPastDoubles(inArray(uint64(two53 + 1n))), 'uint64 2^53 + 1')
  t.ok(holdsIntegersPastDoubles(inArray(uint64(2n ** 64n - 1n))), 'uint64 2^64 - 1')
  t.ok(holdsIntegersPastDoubles(packr.pack({ a: 'x', b: [1, { c: 2n ** 60n }] })), 'deep in a map')
  t.notOk(holdsIntegersPastDoubles(packr.pack(['\u00d3'.repeat(20), Buffer.from(int64(2n ** 60n)), 1.5])), 'the bytes of one inside a string or bytes are not one')
  t.notOk(holdsIntegersPastDoubles(packr.pack({ none: [1, 'two', 3.5] })))
})
