// Property-based tests over generated inputs, against one real server with real
// Python workers over real pipes. Hand-written tests check the cases someone
// thought of; these check that the documented conversions (README "Request
// bodies", "Responses"; docs/writing-tasks.md "Errors and results") hold for
// inputs nobody wrote down, and that no client input gets a 500 or hurts a worker.
//
// Deterministic for CI: a fixed seed, overridable with FUZZ_SEED (fast-check
// prints the seed and the path of a failure, so FUZZ_SEED=<seed> replays it);
// FUZZ_RUNS sets the cases per property (more for a local soak).

import t from 'tap'
import fc from 'fast-check'
import { Unpackr } from 'msgpackr'
import { startServer, workerPids, type TestServer } from '../helpers/server.js'
import { errorShape, fuzzParameters, fuzzSender, type Answer } from '../helpers/fuzz-client.js'

const params = fuzzParameters(20260421, 300)
const RUNS = params.numRuns

let server: TestServer
let pidsAtStart: number[]
// at most 8 requests at once (2 shared cores)
const send = fuzzSender(t, () => server.url, 8)

t.before(async () => {
  // DIAG_TASKS=0: the hostile property sends random bodies to random task names, and
  // diag.work would do what they ask (exit, sleep, allocate); that is not client input going wrong.
  server = await startServer(t, { POOL_SIZE: '4', DIAG_TASKS: '0' })
  pidsAtStart = workerPids(server)
})

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as unknown as 'number' })

/** A body refused as README's "What a body may hold" says: 400 INVALID_INPUT, for `why`. */
function expectInvalidInput (answer: Answer, why: string): void {
  if (answer.status !== 400) throw new Error(`expected a 400 (${why}), got ${answer.status}: ${answer.body.toString().slice(0, 300)}`)
  const error = errorShape(answer)
  if (error.code !== 'INVALID_INPUT') throw new Error(`expected INVALID_INPUT (${why}), got ${error.code}: ${error.message}`)
}

// ---------------------------------------------------------------------------
// 1. JSON echo. Values are generated as trees whose numbers are literals (so the
// body can hold 64-bit integers, -0, 1.0, 1e400 as a client writes them), then
// written as JSON text, and the answer is compared with expected(): the
// documented conversions, spelled out.

type JNode =
  | { k: 'null' } | { k: 'bool', v: boolean } | { k: 'num', lit: string } | { k: 'str', v: string }
  | { k: 'arr', items: JNode[] } | { k: 'obj', entries: Array<[string, JNode]> }

const TWO53 = 2n ** 53n
const INT64_MIN = -(2n ** 63n)
const UINT64_MAX = 2n ** 64n - 1n

/** What a JSON answer holds for a number literal of the body (README "Numbers" and "Responses"). */
function expectedNumber (lit: string): number | string | null {
  if (/^-?\d+$/.test(lit)) {
    const n = BigInt(lit)
    // past ±2^53 (and within 64 bits) read again exactly, and answered as a decimal string;
    // ±2^53 itself is a double exactly, and answered as a number
    if ((n > TWO53 || n < -TWO53) && n >= INT64_MIN && n <= UINT64_MAX) return n.toString()
  }
  const v = Number(lit)
  if (!Number.isFinite(v)) return null // 1e400 arrives as inf; JSON answers write null
  if (Object.is(v, -0)) return 0
  return v
}

const isLoneSurrogate = (s: string): boolean => !(s as any).isWellFormed()

/** Why the server must refuse this tree with 400 INVALID_INPUT, or undefined. */
function refusal (node: JNode): string | undefined {
  return tooDeep(node) ?? unsafe(node)
}

/** Nesting is the parser's: every value of the text counts, an overwritten one too. */
function tooDeep (node: JNode, depth = 1): string | undefined {
  if (node.k !== 'arr' && node.k !== 'obj') return undefined
  if (depth > 200) return 'nesting'
  for (const child of node.k === 'arr' ? node.items : node.entries.map(([, v]) => v)) {
    const why = tooDeep(child, depth + 1)
    if (why !== undefined) return why
  }
  return undefined
}

/**
 * __proto__ keys and lone surrogates are refused wherever the text has them (README "What a
 * body may hold"): in every value of a repeated key, not only the last one, which is kept.
 */
function unsafe (node: JNode): string | undefined {
  if (node.k === 'str') return isLoneSurrogate(node.v) ? 'lone surrogate' : undefined
  if (node.k !== 'arr' && node.k !== 'obj') return undefined
  if (node.k === 'obj') {
    for (const [key] of node.entries) {
      if (key === '__proto__') return '__proto__ key'
      if (isLoneSurrogate(key)) return 'lone surrogate'
    }
  }
  const children = node.k === 'arr' ? node.items : node.entries.map(([, value]) => value)
  for (const child of children) {
    const why = unsafe(child)
    if (why !== undefined) return why
  }
  return undefined
}

/** The value a 200 answer holds, as JSON.parse reads the answer. */
function expected (node: JNode): unknown {
  switch (node.k) {
    case 'null': return null
    case 'bool': return node.v
    case 'num': return expectedNumber(node.lit)
    case 'str': return node.v
    case 'arr': return node.items.map(expected)
    case 'obj': {
      // assignment as JSON.parse does it: the last of repeated keys wins, at the first one's place
      const out: Record<string, unknown> = {}
      for (const [key, value] of node.entries) out[key] = expected(value)
      return out
    }
  }
}

/** A JSON string literal; `escapeAll` writes every non-ASCII UTF-16 unit as \uXXXX (also valid JSON). */
function quote (s: string, escapeAll: boolean): string {
  const text = JSON.stringify(s)
  return escapeAll ? text.replace(/[^\x20-\x7e]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')) : text
}

function write (node: JNode, style: { escapeAll: boolean, space: string }): string {
  const sp = style.space
  switch (node.k) {
    case 'null': return 'null'
    case 'bool': return String(node.v)
    case 'num': return node.lit
    case 'str': return quote(node.v, style.escapeAll)
    case 'arr': return `[${sp}${node.items.map((i) => write(i, style)).join(`${sp},${sp}`)}${sp}]`
    case 'obj': return `{${sp}${node.entries.map(([k, v]) => `${quote(k, style.escapeAll)}${sp}:${sp}${write(v, style)}`).join(`${sp},${sp}`)}${sp}}`
  }
}

// Strings: astral characters, lone surrogates (JSON.stringify escapes them, so the body is valid
// UTF-8 and the JSON text holds \udXXX), NUL and control characters, long runs.
const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 10 }),
  fc.string({ unit: fc.constantFrom('a', '\u0000', '\u2028', '"', '\\', '\ud83d\ude00', '\ud800', '\udfff', 'é', '\ufeff'), maxLength: 8 }),
  fc.constantFrom('', '__proto__', 'constructor', 'prototype', 'toString', '__proto_', 'hasOwnProperty', '0', '10', '-1', '01', '4294967295', '4294967294', '9007199254740993'),
  fc.integer({ min: 1000, max: 70000 }).map((n) => 'x'.repeat(n))
)
// Keys that JSON.parse would treat specially are among the plain strings.
const anyKey = fc.oneof({ weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) }, { weight: 2, arbitrary: anyString.filter((s) => s.length < 100) })

const bigLiteral = fc.oneof(
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  fc.constantFrom(TWO53 - 1n, TWO53, TWO53 + 1n, -TWO53 - 1n, -TWO53, INT64_MIN, INT64_MIN - 1n, 2n ** 63n - 1n, 2n ** 63n, UINT64_MAX, UINT64_MAX + 1n, 2n ** 32n, -(2n ** 31n) - 1n),
  fc.bigInt({ min: TWO53 - 5n, max: TWO53 + 5n }),
  fc.bigInt({ min: UINT64_MAX - 5n, max: UINT64_MAX + 5n })
).map(String)
const numberLiteral = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((v) => Object.is(v, -0) ? '-0' : String(v).replace('+', '')),
  fc.integer().map(String),
  bigLiteral,
  fc.constantFrom('-0', '-0.0', '0.0', '1.0', '1e2', '1E+2', '2.5e-3', '1e400', '-1e400', '1e-400', '-1e-400', '9007199254740993.0', '9007199254740992.0', '9007199254740994.0',
    '1e16', '4.9e-324', '1.7976931348623157e308', '12345678901234567890.5', '1790000000000000001e0', '1790000000000000001.0', '123456789012345678901234567890'),
  fc.tuple(fc.bigInt({ min: -(2n ** 66n), max: 2n ** 66n }), fc.constantFrom('.0', '.5', 'e0', 'E1', 'e-1', '.0e0', '.25E+2')).map(([n, s]) => `${n}${s}`)
)

const jsonTree = fc.letrec<{ node: JNode }>((tie) => ({
  node: fc.oneof({ depthSize: 'small', maxDepth: 6, withCrossShrink: true },
    fc.constant<JNode>({ k: 'null' }),
    fc.boolean().map<JNode>((v) => ({ k: 'bool', v })),
    numberLiteral.map<JNode>((lit) => ({ k: 'num', lit })),
    anyString.map<JNode>((v) => ({ k: 'str', v })),
    fc.array(tie('node'), { maxLength: 6 }).map<JNode>((items) => ({ k: 'arr', items })),
    fc.array(fc.tuple(anyKey, tie('node')), { maxLength: 6 }).map<JNode>((entries) => ({ k: 'obj', entries })),
    // A key repeated, its first value replaced by its last: only the last is parsed, all are checked.
    fc.tuple(fc.array(fc.tuple(anyKey, tie('node')), { minLength: 1, maxLength: 4 }), tie('node')).map<JNode>(([entries, last]) => ({ k: 'obj', entries: [...entries, [entries[0][0], last]] }))
  )
}))

// Nesting around the limit of 200 levels, wrapped around a small tree.
const deepTree = fc.tuple(fc.integer({ min: 195, max: 205 }), fc.boolean(), jsonTree.node).map(([depth, arrays, inner]) => {
  let node: JNode = inner.k === 'arr' || inner.k === 'obj' ? { k: 'null' } : inner
  for (let i = 0; i < depth; i++) node = arrays ? { k: 'arr', items: [node] } : { k: 'obj', entries: [['a', node]] }
  return node
})

const jsonCase = fc.record({
  tree: fc.oneof({ weight: 9, arbitrary: jsonTree.node }, { weight: 1, arbitrary: deepTree }),
  escapeAll: fc.boolean(),
  space: fc.constantFrom('', ' ', '\n\t ', '\r\n')
})

t.test('echo gives back any JSON value as sent, with only the documented conversions, or a documented 400', async (t) => {
  let ok = 0
  let refused = 0
  await fc.assert(fc.asyncProperty(jsonCase, async ({ tree, escapeAll, space }) => {
    const text = space + write(tree, { escapeAll, space }) + space
    const answer = await send('POST', '/api/tasks/echo', { 'content-type': 'application/json' }, text)
    const why = refusal(tree)
    if (why !== undefined) {
      expectInvalidInput(answer, why)
      refused++
      return
    }
    if (answer.status !== 200) throw new Error(`expected 200, got ${answer.status}: ${answer.body.toString().slice(0, 500)}`)
    // The answer's text, compared as text: key order (whole-number keys first) and -0 written as 0 included.
    const want = JSON.stringify(expected(tree))
    const got = answer.body.toString('utf8')
    if (got !== want) throw new Error(`echo changed the value\n  sent: ${text.slice(0, 400)}\n  want: ${want.slice(0, 400)}\n  got:  ${got.slice(0, 400)}`)
    ok++
  }), params)
  t.ok(ok > RUNS / 2, `${ok} values came back, ${refused} were refused as documented`)
})

// ---------------------------------------------------------------------------
// 2. msgpack echo. Bodies are encoded here, byte by byte, so that they can hold what
// msgpackr's Packr would not write: floats with integral values (1.0 as float 64
// and float 32), NaN and ±Infinity, integers in wider encodings than needed,
// non-string map keys, repeated keys, invalid UTF-8, extension types.

type MNode =
  | { k: 'nil' } | { k: 'bool', v: boolean } | { k: 'int', v: bigint, wide: boolean } | { k: 'f64', v: number } | { k: 'f32', v: number }
  | { k: 'str', bytes: Uint8Array } | { k: 'bin', bytes: Uint8Array } | { k: 'arr', items: MNode[] } | { k: 'map', entries: Array<[MNode, MNode]> }
  | { k: 'ext', type: number, bytes: Uint8Array }

function encodeInt (v: bigint, wide: boolean): Buffer {
  if (!wide && v >= 0n && v < 128n) return Buffer.from([Number(v)])
  if (!wide && v < 0n && v >= -32n) return Buffer.from([Number(v) & 0xff])
  const b = Buffer.alloc(9)
  if (v >= 0n) { b[0] = 0xcf; b.writeBigUInt64BE(v, 1) } else { b[0] = 0xd3; b.writeBigInt64BE(v, 1) }
  if (!wide && v >= 0n && v <= 0xffffffffn) { const s = Buffer.alloc(5); s[0] = 0xce; s.writeUInt32BE(Number(v), 1); return s }
  if (!wide && v < 0n && v >= -(2n ** 31n)) { const s = Buffer.alloc(5); s[0] = 0xd2; s.writeInt32BE(Number(v), 1); return s }
  return b
}

function header (small: number, smallMax: number, codes: [number, number, number], n: number): Buffer {
  if (n <= smallMax && small >= 0) return Buffer.from([small + n])
  if (n < 0x10000) { const b = Buffer.alloc(3); b[0] = codes[1]; b.writeUInt16BE(n, 1); return b }
  const b = Buffer.alloc(5); b[0] = codes[2]; b.writeUInt32BE(n, 1); return b
}

function encode (node: MNode): Buffer {
  switch (node.k) {
    case 'nil': return Buffer.from([0xc0])
    case 'bool': return Buffer.from([node.v ? 0xc3 : 0xc2])
    case 'int': return encodeInt(node.v, node.wide)
    case 'f64': { const b = Buffer.alloc(9); b[0] = 0xcb; b.writeDoubleBE(node.v, 1); return b }
    case 'f32': { const b = Buffer.alloc(5); b[0] = 0xca; b.writeFloatBE(node.v, 1); return b }
    case 'str': {
      const n = node.bytes.length
      const head = n < 32 ? Buffer.from([0xa0 + n]) : n < 256 ? Buffer.from([0xd9, n]) : header(-1, -1, [0, 0xda, 0xdb], n)
      return Buffer.concat([head, node.bytes])
    }
    case 'bin': {
      const n = node.bytes.length
      const head = n < 256 ? Buffer.from([0xc4, n]) : header(-1, -1, [0, 0xc5, 0xc6], n)
      return Buffer.concat([head, node.bytes])
    }
    case 'arr': return Buffer.concat([header(0x90, 15, [0, 0xdc, 0xdd], node.items.length), ...node.items.map(encode)])
    case 'map': return Buffer.concat([header(0x80, 15, [0, 0xde, 0xdf], node.entries.length), ...node.entries.flatMap(([k, v]) => [encode(k), encode(v)])])
    case 'ext': return Buffer.concat([Buffer.from([0xc7, node.bytes.length, node.type & 0xff]), node.bytes])
  }
}

const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8')
const isUtf8 = (bytes: Uint8Array): boolean => { try { new TextDecoder('utf-8', { fatal: true }).decode(bytes); return true } catch { return false } }

/** Why the server must refuse this body with 400 INVALID_INPUT (README: what a body may hold), or undefined. */
function msgpackRefusal (node: MNode, depth = 1): string | undefined {
  switch (node.k) {
    case 'str': return isUtf8(node.bytes) ? undefined : 'not UTF-8'
    case 'ext': return 'extension type'
    case 'arr': case 'map': {
      if (depth > 200) return 'nesting'
      const children = node.k === 'arr' ? node.items : node.entries.flat()
      if (node.k === 'map') {
        for (const [key] of node.entries) if (key.k === 'str' && Buffer.from(key.bytes).toString('latin1') === '__proto__') return '__proto__ key'
      }
      for (const child of children) {
        const why = msgpackRefusal(child, depth + 1)
        if (why !== undefined) return why
      }
      return undefined
    }
    default: return undefined
  }
}

/** The number the task receives for a float (README: integral floats up to 2^53 arrive as ints). */
const floatToValue = (v: number): number => Object.is(v, -0) ? 0 : v

/** A map key as the task receives it: non-string keys as strings ("1", "null"). */
function keyOf (node: MNode): string | undefined {
  switch (node.k) {
    case 'str': return Buffer.from(node.bytes).toString('utf8')
    case 'nil': return 'null'
    case 'bool': return String(node.v)
    case 'int': return node.v.toString()
    case 'f64': case 'f32': { const v = floatToValue(node.v); return String(v) }
    default: return undefined
  }
}

/** What the msgpack answer decodes to (with int64AsType 'auto'), or undefined where the docs do not say. */
function expectedMsgpack (node: MNode): unknown {
  switch (node.k) {
    case 'nil': return null
    case 'bool': return node.v
    case 'int': return node.v >= -TWO53 && node.v <= TWO53 ? Number(node.v) : node.v
    case 'f64': case 'f32': return floatToValue(node.v)
    case 'str': return Buffer.from(node.bytes).toString('utf8')
    case 'bin': return Buffer.from(node.bytes)
    case 'arr': return node.items.map(expectedMsgpack)
    case 'map': {
      const out: Record<string, unknown> = {}
      for (const [k, v] of node.entries) out[keyOf(k) as string] = expectedMsgpack(v)
      return out
    }
    case 'ext': return undefined
  }
}

/** Deep equality that tells bytes from strings, BigInt from number, and holds NaN equal to itself. */
function sameValue (a: unknown, b: unknown, path = '$'): string | undefined {
  if (typeof a === 'number' && typeof b === 'number') return (a === b || (Number.isNaN(a) && Number.isNaN(b))) ? undefined : `${path}: ${a} != ${b}`
  if (typeof a === 'bigint' || typeof b === 'bigint') return typeof a === typeof b && a === b ? undefined : `${path}: ${String(a)} (${typeof a}) != ${String(b)} (${typeof b})`
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.from(a).equals(Buffer.from(b)) ? undefined : `${path}: bytes differ (${typeof a} vs ${typeof b})`
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return `${path}: arrays differ`
    for (let i = 0; i < a.length; i++) { const d = sameValue(a[i], b[i], `${path}[${i}]`); if (d !== undefined) return d }
    return undefined
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a)
    const kb = Object.keys(b)
    if (ka.join('\u0001') !== kb.join('\u0001')) return `${path}: keys ${JSON.stringify(ka)} != ${JSON.stringify(kb)}`
    for (const k of ka) { const d = sameValue((a as any)[k], (b as any)[k], `${path}.${k}`); if (d !== undefined) return d }
    return undefined
  }
  return Object.is(a, b) || (a === 0 && b === 0) ? undefined : `${path}: ${String(a)} != ${String(b)}`
}

const mString = fc.oneof(
  { weight: 6, arbitrary: anyString.filter((s) => (s as any).isWellFormed()).map(utf8) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }) } // often not UTF-8: a 400
)
const mKey = fc.oneof<fc.Arbitrary<MNode>[]>(
  mString.map((bytes) => ({ k: 'str', bytes }) as MNode),
  anyKey.filter((s) => (s as any).isWellFormed()).map((s) => ({ k: 'str', bytes: utf8(s) }) as MNode),
  fc.constant({ k: 'nil' }),
  fc.boolean().map((v) => ({ k: 'bool', v })),
  fc.bigInt({ min: -1000n, max: 5000000000n }).map((v) => ({ k: 'int', v, wide: false }))
)
const mInt = fc.oneof(
  fc.bigInt({ min: INT64_MIN, max: UINT64_MAX }),
  fc.constantFrom(0n, -1n, 127n, 128n, -32n, -33n, 255n, 256n, 65535n, 65536n, 2n ** 31n - 1n, -(2n ** 31n), 2n ** 32n - 1n, 2n ** 32n,
    TWO53 - 1n, TWO53, TWO53 + 1n, -TWO53 + 1n, -TWO53, -TWO53 - 1n, 2n ** 63n - 1n, 2n ** 63n, INT64_MIN, UINT64_MAX),
  fc.bigInt({ min: -TWO53 - 3n, max: TWO53 + 3n })
)
const mFloat = fc.oneof(fc.double(), fc.constantFrom(0, -0, 1, -1, 2 ** 53, -(2 ** 53), 2 ** 53 + 2, 1e16, NaN, Infinity, -Infinity, 5e-324, 0.1))

const msgpackTree = fc.letrec<{ node: MNode }>((tie) => ({
  node: fc.oneof({ depthSize: 'small', maxDepth: 5, withCrossShrink: true },
    fc.constant<MNode>({ k: 'nil' }),
    fc.boolean().map<MNode>((v) => ({ k: 'bool', v })),
    fc.tuple(mInt, fc.boolean()).map<MNode>(([v, wide]) => ({ k: 'int', v, wide })),
    mFloat.map<MNode>((v) => ({ k: 'f64', v })),
    fc.float({ noDefaultInfinity: false }).map<MNode>((v) => ({ k: 'f32', v: Math.fround(v) })),
    mString.map<MNode>((bytes) => ({ k: 'str', bytes })),
    fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 256, max: 70000 }).map((n) => new Uint8Array(n).fill(7))).map<MNode>((bytes) => ({ k: 'bin', bytes })),
    fc.array(tie('node'), { maxLength: 5 }).map<MNode>((items) => ({ k: 'arr', items })),
    fc.array(fc.tuple(mKey, tie('node')), { maxLength: 5 }).map<MNode>((entries) => ({ k: 'map', entries })),
    { arbitrary: fc.tuple(fc.integer({ min: -128, max: 127 }), fc.uint8Array({ maxLength: 8 })).map<MNode>(([type, bytes]) => ({ k: 'ext', type, bytes })), weight: 1 }
  )
}))

t.test('echo gives back any msgpack value as sent, with only the documented conversions, or a documented 400', async (t) => {
  let ok = 0
  let refused = 0
  await fc.assert(fc.asyncProperty(msgpackTree.node, fc.constantFrom('application/msgpack', 'application/x-msgpack', 'application/vnd.msgpack'), async (tree, type) => {
    const body = encode(tree)
    const answer = await send('POST', '/api/tasks/echo', { 'content-type': type, accept: 'application/msgpack' }, body)
    const why = msgpackRefusal(tree)
    if (why !== undefined) {
      expectInvalidInput(answer, why)
      refused++
      return
    }
    if (answer.status !== 200) throw new Error(`expected 200, got ${answer.status} for ${body.toString('hex').slice(0, 200)}: ${answer.body.toString().slice(0, 500)}`)
    if (!String(answer.headers['content-type']).startsWith('application/msgpack')) throw new Error(`content-type ${String(answer.headers['content-type'])}`)
    const got = unpackr.unpack(answer.body)
    const difference = sameValue(got, expectedMsgpack(tree))
    if (difference !== undefined) throw new Error(`echo changed the value: ${difference}\n  sent: ${body.toString('hex').slice(0, 300)}\n  got:  ${answer.body.toString('hex').slice(0, 300)}`)
    ok++
  }), params)
  t.ok(ok > RUNS / 3, `${ok} values came back, ${refused} were refused as documented`)
})

// ---------------------------------------------------------------------------
// 3. Hostile requests: bodies, content types, task names and headers nobody should
// send. Every answer must be one of the README's errors for client input (or a
// 200 when the input happens to be fine), in the error shape, and never a 500.

/** The codes each status may carry for client input (README "Errors"). 5xx: only the budget's. */
const CODES: Record<number, RegExp> = {
  400: /^(INVALID_INPUT|FST_ERR_VALIDATION|FST_ERR_BAD_URL|HPE_[A-Z_]+|MISSING_HOST_HEADER|DUPLICATE_HOST_HEADER|DUPLICATE_HEADER)$/,
  404: /^(TASK_NOT_FOUND|FST_ERR_NOT_FOUND)$/,
  405: /^METHOD_NOT_ALLOWED$/,
  413: /^FST_ERR_CTP_BODY_TOO_LARGE$/,
  414: /^FST_ERR_MAX_PARAM_LENGTH$/,
  415: /^FST_ERR_CTP_INVALID_MEDIA_TYPE$/,
  417: /^EXPECTATION_FAILED$/,
  422: /^TASK_REJECTED_INPUT$/,
  503: /^QUEUE_TIMEOUT$/, // a tiny x-request-timeout-ms may run out while queued
  504: /^TASK_TIMEOUT$/ // ... or while running
}

const TASKS = ['echo', 'xml.import', 'csv.profile', 'text.stats', 'stats.describe', 'stats.regression', 'hash.digest']
const taskName = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...TASKS) },
  { weight: 1, arbitrary: fc.constantFrom(...TASKS).map(encodeURIComponent).map((n) => n.replace('.', '%2E').replace('e', '%65')) },
  { weight: 2, arbitrary: fc.constantFrom('ECHO', 'echo/', 'echo%2F..', '..', '.', '%2e%2e', 'echo%00', 'echo%', '%zz', '%E9', 'x'.repeat(65), 'x'.repeat(64), '%F0%9F%98%80', 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'echo;a=1', 'echo?', 'echo#x', '', 'diag.work', 'stats', 'stats.', '%20echo') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 12 }).map(encodeURIComponent) }
)
const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom('?record=item', '?limit=-1', '?limit=abc', '?limit=99999999999999999999', '?delimiter=;', '?delimiter=', '?delimiter=%00', '?header=maybe', '?top=0', '?top=1e3',
    '?algorithms=md5&algorithms=sha1', '?algorithms=nope', '?__proto__=1', '?constructor=x', '?xml=1', '?data=1', '?text=1', '?csv=1', '?a=%zz', '?%E9=1', '?a[b]=1', '?&&=&', '?limit=1&limit=2')
)
const contentType = fc.oneof(
  fc.constantFrom('application/json', 'application/msgpack', 'application/x-msgpack', 'application/vnd.msgpack', 'application/xml', 'text/xml', 'text/csv', 'text/plain',
    'application/octet-stream', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/html', '*/*', 'application/*', 'application', '', ';', 'a/b/c',
    'APPLICATION/JSON', 'application/json ; charset=utf-8', 'application/json; charset=UTF-16', 'application/json; charset=latin1', 'application/json; charset="utf-8"',
    'application/json; charset=', 'application/json; charset=nope', 'application/json;;', 'application/json; a="unterminated', 'text/plain; charset=utf-16le',
    'text/plain; charset=windows-1252', 'text/plain; charset=x-user-defined', 'text/plain; charset=replacement', 'text/plain; charset=utf-7', 'text/plain; charset=iso-2022-jp',
    'text/csv; charset=shift_jis', 'application/xml; charset=utf-16', 'application/xml; charset=ebcdic', 'text/plain; charset=utf-8; charset=latin1', 'application/msgpack; charset=utf-8',
    'application/json, text/plain', 'text/plain;charset=UTF-8', 'application/jsonx', 'application/json+xml', 'application/problem+json'),
  fc.string({ unit: 'binary-ascii', maxLength: 30 })
)
const accept = fc.constantFrom(undefined, '*/*', 'application/msgpack', 'application/msgpack;q=0', 'application/json;q=0, */*', 'application/json;q=2', 'application/json;q=abc',
  'text/html', ',,,', ';q=1', 'application/msgpack; q=0.5, application/json; q=0.5', 'application/x-msgpack', 'application/vnd.msgpack;q=1.0000')
const timeoutHeader = fc.oneof(
  fc.constant(undefined),
  fc.constantFrom('0', '1', '-1', '1.5', 'abc', '', ' 100 ', '1e3', '0x10', '99999999999999999999', 'Infinity', 'NaN', '2147483648', '100, 200', '+5', '00010'),
  fc.integer({ min: 0, max: 100000 }).map(String)
)
const requestId = fc.oneof(
  fc.constant(undefined),
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 140 }),
  fc.stringMatching(/^[A-Za-z0-9._-]{1,130}$/),
  fc.constantFrom('', ' ', 'a'.repeat(128), 'a'.repeat(129), 'é', '../../etc', '\t')
)

function bodyFor (kind: string, bytes: Uint8Array, json: unknown): Uint8Array {
  switch (kind) {
    case 'bytes': return bytes
    case 'json': return Buffer.from(JSON.stringify(json) ?? 'null')
    case 'truncated-json': { const text = Buffer.from(JSON.stringify(json) ?? 'null'); return text.subarray(0, Math.max(0, text.length - 1 - (bytes[0] ?? 0) % 4)) }
    case 'mutated-json': {
      const text = Buffer.from(JSON.stringify(json) ?? 'null')
      for (let i = 0; i + 1 < bytes.length; i += 2) if (text.length > 0) text[bytes[i] % text.length] = bytes[i + 1]
      return text
    }
    case 'truncated-msgpack': { const packed = encode(jsonToM(json)); return packed.subarray(0, Math.max(0, packed.length - 1 - (bytes[0] ?? 0) % 4)) }
    case 'msgpack': return encode(jsonToM(json))
    case 'mutated-msgpack': {
      const packed = Buffer.from(encode(jsonToM(json)))
      for (let i = 0; i + 1 < bytes.length; i += 2) if (packed.length > 0) packed[bytes[i] % packed.length] = bytes[i + 1]
      return packed
    }
    case 'empty': return new Uint8Array(0)
    default: return bytes
  }
}

function jsonToM (v: unknown): MNode {
  if (v === null || v === undefined) return { k: 'nil' }
  if (typeof v === 'boolean') return { k: 'bool', v }
  if (typeof v === 'number') return Number.isSafeInteger(v) ? { k: 'int', v: BigInt(v), wide: false } : { k: 'f64', v }
  if (typeof v === 'string') return { k: 'str', bytes: utf8(v) }
  if (Array.isArray(v)) return { k: 'arr', items: v.map(jsonToM) }
  return { k: 'map', entries: Object.entries(v as object).filter(([, x]) => x !== undefined).map(([k, x]) => [{ k: 'str', bytes: utf8(k) }, jsonToM(x)]) }
}

// Inputs near the built-in tasks' schemas, so the fuzz gets past validation into the tasks.
const taskish = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.record({ values: fc.array(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer()), { maxLength: 30 }), bins: fc.option(fc.integer({ min: -2, max: 1000 }), { nil: undefined }) }, { requiredKeys: ['values'] }),
  fc.record({ x: fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 8 }), y: fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { maxLength: 8 }), degree: fc.integer({ min: 0, max: 6 }) }),
  fc.record({ text: fc.string({ unit: 'binary', maxLength: 200 }), top: fc.integer({ min: -1, max: 100 }) }),
  fc.record({ csv: fc.array(fc.array(fc.constantFrom('1', '2.5', 'x', '', '"q"', 'true', '2024-01-01', '1e309', 'nan', '-0', ' '), { maxLength: 4 }), { maxLength: 6 }).map((rows) => rows.map((r) => r.join(',')).join('\n')), delimiter: fc.constantFrom(',', ';', '\t', '|', 'ab', '', '"', '\n') }),
  fc.record({ xml: fc.constantFrom('<a/>', '<a><b x="1">t</b><b>u</b></a>', '<a><__proto__>1</__proto__></a>', '<a><constructor/></a>', '<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', '<a', '', '<a>\u0000</a>', '<?xml version="1.0" encoding="latin1"?><a>é</a>', '<a xmlns:p="u"><p:b p:c="1"/></a>', '<a><b/><b/><b>x<c/>y</b></a>'), record: fc.option(fc.constantFrom('b', '*', '', 'p:b', '__proto__'), { nil: undefined }), limit: fc.option(fc.integer({ min: -1, max: 3 }), { nil: undefined }) }),
  fc.record({ data: fc.base64String({ maxLength: 40 }), algorithms: fc.array(fc.constantFrom('sha256', 'sha1', 'md5', 'blake2b', 'sha3_256', 'SHA256', 'nope', ''), { maxLength: 3 }) })
)

const hostileCase = fc.record({
  method: fc.constantFrom('POST', 'POST', 'POST', 'POST', 'POST', 'POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'HEAD'),
  task: taskName,
  query,
  type: fc.option(contentType, { freq: 8, nil: undefined }),
  bodyKind: fc.constantFrom('bytes', 'json', 'truncated-json', 'mutated-json', 'msgpack', 'truncated-msgpack', 'mutated-msgpack', 'empty'),
  bytes: fc.uint8Array({ maxLength: 64 }),
  input: taskish,
  accept,
  timeout: timeoutHeader,
  id: requestId,
  encoding: fc.option(fc.constantFrom('identity', 'gzip', 'identity, identity', '', 'br', 'IDENTITY'), { freq: 6, nil: undefined }),
  // Mostly none: any other expectation than 100-continue is a 417 before anything else is looked at.
  expect: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('100-continue', '100-Continue', 'nothing', '') })
})

const VALID_ID = /^[A-Za-z0-9._-]{1,128}$/

t.test('hostile requests get a documented client error (or a 200), in the error shape, never a 500', async (t) => {
  const seen = new Map<string, number>()
  await fc.assert(fc.asyncProperty(hostileCase, async (c) => {
    const headers: Record<string, string> = {}
    if (c.type !== undefined) headers['content-type'] = c.type
    if (c.accept !== undefined) headers.accept = c.accept
    if (c.timeout !== undefined) headers['x-request-timeout-ms'] = c.timeout
    if (c.id !== undefined) headers['x-request-id'] = c.id
    if (c.encoding !== undefined) headers['content-encoding'] = c.encoding
    if (c.expect !== undefined) headers.expect = c.expect
    const body = c.method === 'GET' || c.method === 'HEAD' ? undefined : bodyFor(c.bodyKind, c.bytes, c.input)
    let answer: Answer
    try {
      answer = await send(c.method, `/api/tasks/${c.task}${c.query}`, headers, body)
    } catch (error) {
      // Node's client refuses some header values itself (control characters): nothing was sent.
      if ((error as NodeJS.ErrnoException).code === 'ERR_INVALID_CHAR' || (error as NodeJS.ErrnoException).code === 'ERR_INVALID_HTTP_TOKEN') return
      throw error
    }
    const key = `${answer.status}`
    seen.set(key, (seen.get(key) ?? 0) + 1)
    const id = answer.headers['x-request-id']
    if (typeof id !== 'string' || id === '') throw new Error(`no x-request-id in a ${answer.status}`)
    if (c.id !== undefined && VALID_ID.test(c.id) && id !== c.id) throw new Error(`x-request-id ${JSON.stringify(c.id)} came back as ${id}`)
    if (c.id !== undefined && !VALID_ID.test(c.id) && id === c.id) throw new Error(`invalid x-request-id ${JSON.stringify(c.id)} was echoed`)
    if (answer.status === 200 || answer.status === 204) return
    if (c.method === 'HEAD') return // no body to check
    const allowed = CODES[answer.status]
    const error = errorShape(answer)
    if (c.method !== 'POST' && answer.status === 404 && error.code === 'FST_ERR_NOT_FOUND') return
    if (allowed === undefined || !allowed.test(error.code)) {
      throw new Error(`${answer.status} ${error.code} is not a documented answer to client input: ${error.message}`)
    }
  }), params)
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(seen))}`)
  t.pass('every answer was documented')
})

// ---------------------------------------------------------------------------
// After all that: the same workers, no restarts, and the service routes answer.

t.test('after the fuzzing, every worker is the one it started with and the server still serves', async (t) => {
  t.same(workerPids(server).sort(), [...pidsAtStart].sort(), 'no worker was replaced')
  const stats = await send('GET', '/api/queue-stats', {})
  t.equal(stats.status, 200)
  const snapshot = JSON.parse(stats.body.toString())
  t.same(snapshot.restarts, { crash: 0, timeout: 0, maxCalls: 0, maxRss: 0, protocol: 0, reload: 0 }, 'no restart of any kind')
  t.equal(snapshot.tasks.workerDied, 0)
  const metrics = await send('GET', '/metrics', {})
  t.equal(metrics.status, 200)
  t.match(metrics.body.toString(), /pyworker_calls_total/)
  const echo = await send('POST', '/api/tasks/echo', { 'content-type': 'application/json' }, '{"still":"here"}')
  t.equal(echo.status, 200)
  t.equal(echo.body.toString(), '{"still":"here"}')
  // The log's errors (level 50 and up): a client's input must never be logged as the server's fault.
  const errors = server.logs.filter((line) => line.level >= 50)
  t.same(errors.map((line) => line.msg), [], 'no error in the log')
})
