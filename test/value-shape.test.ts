// The shape checks that run before a body is parsed: they must pass every plain
// value, and refuse what would make the parser allocate or recurse far beyond
// the body's size.

import t from 'tap'
import { Packr } from 'msgpackr'
import { jsonProblem, MAX_CONTAINERS, msgpackObjects, msgpackProblem, type MsgpackShape } from '../src/value-shape.js'

const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true })
const bytes = (...list: number[]): Buffer => Buffer.from(list)

t.test('passes plain values of every msgpack format', async (t) => {
  const values = [
    null, true, false, 0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31) - 1,
    0.5, 1e300, 'a', 'x'.repeat(31), 'x'.repeat(32), 'x'.repeat(255), 'x'.repeat(256), 'x'.repeat(70_000), 'ünïcode 🐍',
    Buffer.alloc(0), Buffer.alloc(255, 1), Buffer.alloc(256, 2), Buffer.alloc(70_000, 3),
    [], [[]], Array.from({ length: 15 }, (_, i) => i), Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 70_000 }, (_, i) => i),
    {}, { a: { b: { c: [1, { d: null }] } } }, Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
    Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, [i]]))
  ]
  for (const value of values) {
    const encoded = packr.pack(value)
    t.equal(msgpackProblem(encoded, 200), undefined, `${JSON.stringify(value)?.slice(0, 40)} (0x${encoded[0].toString(16)})`)
  }
  t.equal(msgpackProblem(bytes(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 200), undefined, 'uint64')
  t.equal(msgpackProblem(bytes(0xca, 0, 0, 0, 0), 200), undefined, 'float32')
})

t.test('msgpackObjects counts maps, arrays and bins as the checking walk does, for every format, and stops at its bound', async (t) => {
  const values = [
    null, true, 0, 255, 65_536, 2 ** 53 - 1, -33, -129, -32_769, 0.5, 'a', 'x'.repeat(32), 'x'.repeat(256), 'x'.repeat(70_000),
    Buffer.alloc(0), Buffer.alloc(256, 2), Buffer.alloc(70_000, 3), [], [[]], Array.from({ length: 16 }, () => ({})),
    Array.from({ length: 70_000 }, (_, i) => (i % 3 === 0 ? {} : i % 3 === 1 ? [] : Buffer.alloc(1))),
    { t: 'result', id: 2 ** 40, value: { a: { b: [1, { d: null, e: Buffer.alloc(300) }] }, s: 'ü'.repeat(40_000) } },
    Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, [i]]))
  ]
  for (const value of values) {
    const encoded = packr.pack(value)
    const shape: MsgpackShape = { objects: -1 }
    t.equal(msgpackProblem(encoded, 200, MAX_CONTAINERS, false, shape), undefined)
    t.equal(msgpackObjects(encoded, Infinity), shape.objects, `${JSON.stringify(value)?.slice(0, 40)} (0x${encoded[0].toString(16)})`)
  }
  // Extension types of every size are stepped over, bins inside them not counted.
  t.equal(msgpackObjects(bytes(0x93, 0xd4, 1, 0x90, 0xd8, 1, ...Array(16).fill(0x90), 0x90), Infinity), 2, 'fixext 1 and 16 holding the bytes of arrays')
  t.equal(msgpackObjects(bytes(0x95, 0xd4, 1, 0x90, 0xc7, 2, 1, 0x90, 0x90, 0xc8, 0, 1, 1, 0x90, 0xc9, 0, 0, 0, 1, 1, 0x90, 0x90), Infinity), 2, 'ext 8/16/32: the outer array and the last one')
  const many = packr.pack(Array.from({ length: 1000 }, () => ({})))
  t.equal(msgpackObjects(many, 10), 10, 'stops at its bound')
  t.equal(msgpackObjects(many.subarray(0, 500), Infinity), 1 + 497, 'truncated: what was there (the array16 header is 3 bytes)')
  t.equal(msgpackObjects(bytes(0xdd, 0xff), Infinity), 1, 'a header cut short ends the count')
})

t.test('refuses containers that claim more values than the bytes left', async (t) => {
  t.match(msgpackProblem(bytes(0xdd, 0x01, 0xff, 0xff, 0xff), 200), /claims 33554431 values but only 0 bytes follow/, 'array32 of 33 M in 5 bytes')
  t.match(msgpackProblem(bytes(0xdf, 0xff, 0xff, 0xff, 0xff, 0x01), 200), /claims 8589934590 values/, 'map32')
  t.match(msgpackProblem(bytes(0xdc, 0x00, 0x03, 0x01, 0x02), 200), /claims 3 values but only 2 bytes/, 'array16 one short')
  t.match(msgpackProblem(bytes(0x82, 0xa1, 0x61, 0x01), 200), /claims 4 values but only 3 bytes/, 'fixmap')
})

t.test('refuses truncated values and trailing bytes', async (t) => {
  const cut = /ends in the middle of a value/
  t.match(msgpackProblem(bytes(), 200), cut, 'empty')
  t.match(msgpackProblem(bytes(0xdb, 0xff, 0xff, 0xff, 0xff, 0x61), 200), cut, 'str32 claiming 4 GB')
  t.match(msgpackProblem(bytes(0xc6, 0x00, 0x00, 0x00, 0x05, 1, 2), 200), cut, 'bin32 short')
  t.match(msgpackProblem(bytes(0xcb, 0, 0), 200), cut, 'float64 short')
  t.match(msgpackProblem(bytes(0xdd, 0x00), 200), cut, 'array32 header short')
  t.match(msgpackProblem(bytes(0x92, 0x01), 200), /claims 2 values but only 1 bytes/, 'array missing an element')
  t.match(msgpackProblem(bytes(0x01, 0x02), 200), /^the msgpack body holds 1 more byte after its value: a body is one msgpack value$/)
})

t.test('refuses strings that are not UTF-8, keys included', async (t) => {
  const bad = /string that is not valid UTF-8/
  t.match(msgpackProblem(bytes(0xa2, 0xc3, 0x28), 200), bad, 'fixstr with a broken sequence')
  t.match(msgpackProblem(bytes(0xa3, 0xed, 0xa0, 0x80), 200), bad, 'CESU-8 surrogate')
  t.match(msgpackProblem(bytes(0x81, 0xd9, 0x01, 0xff, 0x01), 200), bad, 'str8 map key')
  t.match(msgpackProblem(Buffer.concat([bytes(0xda, 0x01, 0x00), Buffer.alloc(255, 0x61), bytes(0xfe)]), 200), bad, 'str16, bad last byte')
  t.match(msgpackProblem(bytes(0xa5, 0x61, 0x61, 0x61, 0x61, 0xff), 200), bad, 'short string, bad last byte')
  t.match(msgpackProblem(Buffer.concat([bytes(0xd9, 100), Buffer.alloc(99, 0x61), bytes(0xff)]), 200), bad, 'long string, bad last byte')
  t.equal(msgpackProblem(bytes(0xc4, 0x02, 0xff, 0xfe), 200), undefined, 'bin may hold any bytes')
  t.equal(msgpackProblem(packr.pack({ 'ключ': '🐍 ✓ é' }), 200), undefined, 'real UTF-8')
})

t.test('with skipExtensions, steps over extension types of every size and still checks the rest', async (t) => {
  const exts = [
    bytes(0xd4, 0x05, 0x01), bytes(0xd5, 0x05, 1, 2), bytes(0xd6, 0x05, 1, 2, 3, 4), bytes(0xd7, 0x05, ...Array(8).fill(1)), bytes(0xd8, 0x05, ...Array(16).fill(1)),
    bytes(0xc7, 0x02, 0x05, 1, 2), bytes(0xc8, 0x00, 0x02, 0x05, 1, 2), bytes(0xc9, 0x00, 0x00, 0x00, 0x02, 0x05, 1, 2)
  ]
  for (const ext of exts) {
    const inMap = Buffer.concat([bytes(0x82, 0xa1, 0x61), ext, bytes(0xa1, 0x62, 0x01)])
    t.equal(msgpackProblem(inMap, 200, 100, true), undefined, `0x${ext[0].toString(16)} in a map`)
    t.match(msgpackProblem(inMap, 200), /extension type/, 'refused without the option')
    t.match(msgpackProblem(Buffer.concat([inMap, bytes(0xc1)]), 200, 100, true), /holds 1 more byte after its value/, 'trailing bytes still count')
    t.match(msgpackProblem(ext.subarray(0, ext.length - 1), 200, 100, true), /ends in the middle/, 'a cut extension')
  }
})

t.test('refuses a __proto__ key at any depth, as JSON bodies do, but not such a value', async (t) => {
  const proto = /__proto__ key/
  t.match(msgpackProblem(packr.pack(JSON.parse('{"__proto__": 1}')), 200), proto, 'top-level key')
  t.match(msgpackProblem(packr.pack([{ a: 1 }, JSON.parse('{"b": {"__proto__": {}}}')]), 200), proto, 'nested key')
  t.equal(msgpackProblem(packr.pack({ key: '__proto__', list: ['__proto__'] }), 200), undefined, 'a value that says __proto__ is fine')
  t.equal(msgpackProblem(packr.pack({ __proto_: 1, ___proto__: 2 }), 200), undefined, 'near misses are fine')
})

t.test('refuses extension types, timestamps and 0xc1', async (t) => {
  const ext = /extension type or timestamp/
  t.match(msgpackProblem(packr.pack(new Date(0)), 200), ext, 'timestamp')
  t.match(msgpackProblem(bytes(0xd4, 0x00, 0x00), 200), ext, 'fixext1 (msgpackr: undefined)')
  t.match(msgpackProblem(bytes(0xd6, 0x69, 0, 0, 0, 0, 0x91, 0x01), 200), ext, 'structured-clone reference')
  t.match(msgpackProblem(bytes(0xc7, 0x01, 0x05, 0x00), 200), ext, 'ext8')
  t.match(msgpackProblem(bytes(0x91, 0xc9, 0, 0, 0, 1, 5, 0), 200), ext, 'ext32 inside an array')
  t.match(msgpackProblem(bytes(0xc1), 200), /0xc1/)
})

t.test('refuses nesting past the limit, and allows it up to the limit', async (t) => {
  const nested = (levels: number): Buffer => Buffer.concat([Buffer.alloc(levels, 0x91), bytes(0x01)])
  t.equal(msgpackProblem(nested(200), 200), undefined, '200 levels')
  t.match(msgpackProblem(nested(201), 200), /nests deeper than 200 levels/, '201 levels')
  t.match(msgpackProblem(nested(1_000_000), 200), /nests deeper/, 'a million levels, without recursion')
})

t.test('counts maps and arrays against the limit, empty ones included', async (t) => {
  const arrayOf = (n: number, item: number): Buffer => Buffer.concat([bytes(0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff), Buffer.alloc(n, item)])
  t.equal(msgpackProblem(arrayOf(99, 0x80), 200, 100), undefined, 'the outer array and 99 empty maps: 100')
  t.match(msgpackProblem(arrayOf(100, 0x80), 200, 100), /more than 100 maps and arrays/, '101')
  t.match(msgpackProblem(arrayOf(100, 0x90), 200, 100), /more than 100 maps and arrays/, 'empty arrays count too')
  t.equal(msgpackProblem(arrayOf(1000, 0x01), 200, 100), undefined, 'numbers do not count')
  t.match(msgpackProblem(arrayOf(MAX_CONTAINERS, 0x80), 200), /more than 1,000,000 maps and arrays/, 'the default limit')
})

t.test('counts JSON objects and arrays outside strings', async (t) => {
  const objects = (n: number): string => '[' + Array(n).fill('{}').join(',') + ']'
  t.equal(jsonProblem(objects(99), 100), undefined, '100 containers')
  t.match(jsonProblem(objects(100), 100), /more than 100 maps and arrays/, '101')
  t.equal(jsonProblem(JSON.stringify(['{['.repeat(200)]), 100), undefined, 'brackets inside a string do not count')
  const pad = ' '.repeat(300)
  t.equal(jsonProblem(JSON.stringify(['a"{[{[', '\\', '\\{']) + pad, 1), undefined, 'escaped quotes and backslashes are followed: only the outer array counts')
  t.match(jsonProblem(JSON.stringify(['\\', ['x']]) + pad, 1), /more than 1 maps/, 'a string ending in a backslash does not swallow what follows')
  t.match(jsonProblem(objects(MAX_CONTAINERS)), /more than 1,000,000/, 'the default limit')
  t.equal(jsonProblem('[' + '1,'.repeat(MAX_CONTAINERS) + '1]'), undefined, 'a long array of numbers is fine')
})
