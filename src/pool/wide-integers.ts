// JavaScript has one number type; msgpack, like Python, tells integers from floats.
// msgpackr writes a number as a msgpack integer only when it fits 32 bits, and
// every other number as a float64. So an integer from a client (a millisecond
// timestamp, 1764400000000, as JSON or as a msgpack int64 that decoded to a
// number) would reach a task as the float 1764400000000.0, and a task's int come
// back to a msgpack client as a float. Integers between 2^32 and 2^53 (all that a
// double holds without rounding) become BigInt before packing, which msgpackr writes as int64:
// a call's input in the route (routes/body.ts, which walks every body anyway and
// so knows when one holds such a number), a msgpack answer in protocol.ts.

import { replaceInPlace } from '../replace-in-place.js'

const INT32_MIN = -0x80000000
const UINT32_MAX = 0xffffffff

const TWO_TO_53 = 2 ** 53

/**
 * True for an integer that msgpackr would write as a float64 but that is surely an
 * integer: up to ±2^53 inclusive (msgpackr decodes an int64 of ±2^53 as a number, and
 * JSON's 2^53 reaches here as one; past it, a number may be a rounded one).
 */
function isWideInteger (value: number): boolean {
  return (value > UINT32_MAX || value < INT32_MIN) && (Number.isSafeInteger(value) || value === TWO_TO_53 || value === -TWO_TO_53)
}

/** The BigInt that replaces a wide integer; undefined for anything else. */
function widened (child: unknown): bigint | undefined {
  return typeof child === 'number' && isWideInteger(child) ? BigInt(child) : undefined
}

/**
 * `value` with every wide integer (beyond 32 bits, within ±2^53) as a BigInt, changed
 * in place: callers own the value (a call's input, a task's result). Bytes are left as they are.
 */
export function wideIntegersAsBigInt (value: unknown): unknown {
  return replaceInPlace(value, widened)
}
