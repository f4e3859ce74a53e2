// JavaScript has one number type; msgpack, like Python, tells integers from floats.
// msgpackr writes a number as a msgpack integer only when it fits 32 bits, and
// every other number as a float64. So an integer from a client (a millisecond
// timestamp, 1764400000000, as JSON or as a msgpack int64 that decoded to a
// number) would reach a task as the float 1764400000000.0, and a task's int come
// back to a msgpack client as a float. Integers between 2^32 and 2^53 (all that a
// double holds without rounding) are rewritten as int64 in the packed bytes: a
// call's frame when the route saw such a number in its input (routes/body.ts, which
// walks every body anyway), a re-encoded msgpack answer always (protocol.ts).
//
// Rewriting the bytes after packing, rather than making BigInts before it, costs a
// scan of the bytes and no allocation: a body of a million timestamps packs about a
// third faster this way. A float64 and an int64 are both 9 bytes, so nothing moves.

import { HEADER_SIZE } from '../value-shape.js'

const INT32_MIN = -0x80000000
const UINT32_MAX = 0xffffffff
const TWO_TO_32 = 0x100000000
const TWO_TO_53 = 2 ** 53

const FLOAT64 = 0xcb
const INT64 = 0xd3 // what msgpackr writes for a BigInt within int64, negative or not
const UINT64 = 0xcf
const HIGH_WORD_LIMIT = 0x200000 // 2^53 / 2^32

/**
 * True for an integer that msgpackr writes as a float64 but that is surely an
 * integer: up to ±2^53 inclusive (msgpackr decodes an int64 of ±2^53 as a number, and
 * JSON's 2^53 reaches here as one; past it, a number may be a rounded one).
 */
export function isWideInteger (value: number): boolean {
  return isPast32Bits(value) && (Number.isSafeInteger(value) || value === TWO_TO_53 || value === -TWO_TO_53)
}

/**
 * Past what msgpackr writes as a 32-bit integer: the numbers widenPackedIntegers may have to
 * rewrite (sendable.ts notes a body holding one, and only then is it run).
 */
export function isPast32Bits (value: number): boolean {
  return value > UINT32_MAX || value < INT32_MIN
}

/**
 * Rewrites, in place, every float64 in the msgpack `bytes` (from `start`) that
 * holds a wide integer as an int64 of the same value, and returns `bytes`.
 * `bytes` must be whole msgpack values, as msgpackr writes them.
 */
export function widenPackedIntegers<T extends Uint8Array> (bytes: T, start = 0): T {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const end = bytes.length
  let at = start
  while (at < end) {
    if (bytes[at] !== FLOAT64) { at = nextValue(bytes, view, at); continue }
    const value = view.getFloat64(at + 1)
    if (isWideInteger(value)) {
      // Two's complement in two halves: Math.floor keeps the high word right for negatives.
      const high = Math.floor(value / TWO_TO_32)
      bytes[at] = INT64
      view.setInt32(at + 1, high)
      view.setUint32(at + 5, value - high * TWO_TO_32)
    }
    at += 9
  }
  return bytes
}

/**
 * Whether the msgpack `bytes` (from `start`) hold a 64-bit integer past ±2^53, which
 * only a BigInt holds exactly: a frame without one can be decoded with every integer
 * a number, which for int64s is several times faster than msgpackr's 'auto' (a BigInt
 * made, compared and converted for each).
 */
export function holdsIntegersPastDoubles (bytes: Uint8Array, start = 0): boolean {
  // Native searches first: most frames hold neither type byte anywhere, even in strings.
  if (bytes.indexOf(INT64, start) === -1 && bytes.indexOf(UINT64, start) === -1) return false
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const end = bytes.length
  let at = start
  while (at < end) {
    const type = bytes[at]
    if (type === INT64 || type === UINT64) {
      // value = high · 2^32 + low, low unsigned: past 2^53 when high is past 2^21, or is 2^21
      // with a low word; below −2^53 when high is below −2^21 (−2^21 with a low word is above it).
      const high = type === INT64 ? view.getInt32(at + 1) : view.getUint32(at + 1)
      if (high > HIGH_WORD_LIMIT || high < -HIGH_WORD_LIMIT || (high === HIGH_WORD_LIMIT && view.getUint32(at + 5) !== 0)) return true
    }
    at = nextValue(bytes, view, at)
  }
  return false
}

/**
 * The offset of the value after the one that starts at `at`; for a container,
 * of its first member (its members follow as values of their own, so a flat
 * scan meets every value without tracking nesting).
 */
export function nextValue (bytes: Uint8Array, view: DataView, at: number): number {
  const type = bytes[at]
  // positive fixint, fixmap, fixarray, negative fixint: the type byte is all
  if (type < 0xa0 || type >= 0xe0) return at + 1
  if (type < 0xc0) return at + 1 + (type & 0x1f) // fixstr
  const header = HEADER_SIZE[type - 0xc0]
  // 0xc1 is never used: msgpackr cannot have written it, nor a worker whose frame decoded.
  if (header === undefined) throw new Error(`not msgpack: type byte 0x${type.toString(16)} at offset ${at}`)
  switch (type) {
    case 0xc4: case 0xc7: case 0xd9: return at + header + bytes[at + 1] // bin8, ext8, str8
    case 0xc5: case 0xc8: case 0xda: return at + header + view.getUint16(at + 1) // bin16, ext16, str16
    case 0xc6: case 0xc9: case 0xdb: return at + header + view.getUint32(at + 1) // bin32, ext32, str32
    default: return at + header
  }
}
