// Integers beyond ±2^53 in request bodies, delivered exactly. JSON.parse rounds
// them (a 64-bit id, 1790000000000000001, becomes 1790000000000000000: silently
// wrong data), and msgpackr decodes msgpack's as BigInt, which Ajv cannot check
// ("must be integer"). So a JSON body holding such an integer literal is read
// again with each one as a BigInt after its schema has checked the first reading;
// a msgpack body's schema is checked with its BigInts as the nearest numbers. The
// task receives the exact integers (Python ints, up to 64 bits). Only bodies whose
// walk met a number past 2^53 get here: the common case costs nothing.

import { randomBytes } from 'node:crypto'
import { InvalidInputError } from '../errors.js'
import { replaceInPlace } from '../replace-in-place.js'

/**
 * The most integer literals past 2^53 one JSON body may hold. Reading them exactly
 * means parsing the body a second time, and ~0.7 µs each (~70 ms at the limit);
 * 16 MB of them would block the event loop for seconds. Past it, a 400: such data
 * travels better as msgpack.
 */
export const MAX_WIDE_LITERALS = 100_000

// A JSON string that marks a literal to be read as BigInt. The NUL and a nonce
// drawn at start-up mean no client string can pass for one.
const MARK = `\u0000${randomBytes(6).toString('hex')}:`
const MARK_JSON = `\\u0000${MARK.slice(1)}`

/**
 * Whether digits[from..end) (a decimal integer, `negative` if a minus sign came before)
 * is past ±2^53 and fits 64 bits. By length, then by comparison with the bounds as
 * text (same length: text order is numeric order), so no number or BigInt is made.
 * Past 64 bits no task could receive it as an int: it stays the number it parsed to.
 */
function isWide (text: string, from: number, end: number, negative: boolean): boolean {
  const length = end - from
  if (length < 16 || (length === 16 && text.slice(from, end) <= '9007199254740991')) return false
  const max = negative ? '9223372036854775808' : '18446744073709551615'
  return length < max.length || (length === max.length && text.slice(from, end) <= max)
}

/** A query-string value that is an integer past ±2^53 (that fits 64 bits), exactly; else undefined. Ajv's coercion would round it. */
export function exactQueryInteger (text: string): bigint | undefined {
  // The forms Ajv's coercion takes as an integer: a sign, leading zeros.
  const match = /^([+-]?)0*(\d+)$/.exec(text)
  if (match === null) return undefined
  const [, sign, digits] = match
  return isWide(digits, 0, digits.length, sign === '-') ? BigInt(sign === '-' ? `-${digits}` : digits) : undefined
}

/** Start and end offsets of every integer literal outside strings in (valid) JSON `text` that isWide keeps. */
function wideLiterals (text: string): number[] {
  const spans: number[] = []
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) { i = endOfString(text, i); continue }
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue // a number starts with - or a digit
    let end = i + 1
    let integer = true
    for (; end < text.length; end++) {
      const d = text.charCodeAt(end)
      if (d >= 0x30 && d <= 0x39) continue
      if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) { integer = false; continue } // . e E + -
      break
    }
    const negative = c === 0x2d
    if (integer && isWide(text, negative ? i + 1 : i, end, negative)) {
      if (spans.length === 2 * MAX_WIDE_LITERALS) {
        throw new InvalidInputError(`the body holds more than ${MAX_WIDE_LITERALS} integers past 2^53; send it as msgpack, or such numbers as strings`)
      }
      spans.push(i, end)
    }
    i = end - 1
  }
  return spans
}

/** Where the string opened by the quote at `start` closes: found by indexOf, past escaped quotes. */
function endOfString (text: string, start: number): number {
  for (let quote = text.indexOf('"', start + 1); ; quote = text.indexOf('"', quote + 1)) {
    if (quote === -1) return text.length // not reached for JSON that parsed; no endless loop if it is
    let backslashes = 0
    while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes++
    if (backslashes % 2 === 0) return quote
  }
}

/**
 * The JSON body read again (with the same `parse`) with every integer literal past
 * ±2^53 that fits 64 bits as an exact BigInt, or undefined if it holds none (a large
 * float, 1e300, also sends a body here, and finds nothing).
 */
export function parseWithExactIntegers (text: string, parse: (text: string) => unknown): unknown {
  const spans = wideLiterals(text)
  if (spans.length === 0) return undefined
  let marked = ''
  let from = 0
  for (let k = 0; k < spans.length; k += 2) {
    marked += `${text.slice(from, spans[k])}"${MARK_JSON}${text.slice(spans[k], spans[k + 1])}"`
    from = spans[k + 1]
  }
  return replaceInPlace(parse(marked + text.slice(from)), (child) => typeof child === 'string' ? fromMark(child) : undefined)
}

function fromMark (text: string): bigint | undefined {
  return text.charCodeAt(0) === 0 && text.startsWith(MARK) ? BigInt(text.slice(MARK.length)) : undefined
}

/**
 * Runs `validate` (an Ajv function) on a decoded msgpack `value` with each BigInt in
 * it replaced by the nearest number, then puts the BigInts back. In place: `value`
 * belongs to the request, and is whole again when this returns or throws.
 */
export function validateWithBigInts (value: unknown, validate: (value: unknown) => boolean): boolean {
  return validateSwapped(value, validate, bigIntAsNumber)
}

function bigIntAsNumber (child: unknown): unknown {
  return typeof child === 'bigint' ? Number(child) : undefined
}

/**
 * Runs `validate` on `value` with each value for which `swap` returns something other
 * than undefined replaced by that, then puts the originals back. In place: `value` belongs
 * to the caller, and is whole again when this returns or throws.
 */
export function validateSwapped (value: unknown, validate: (value: unknown) => boolean, swap: (child: unknown) => unknown): boolean {
  const top = swap(value)
  if (top !== undefined) return validate(top)
  // Where each swapped value was: parallel arrays, so a body of many costs no object per one.
  const nodes: Array<Record<string | number, unknown>> = []
  const keys: Array<string | number> = []
  const originals: unknown[] = []
  replaceInPlace(value, (child, node, key) => {
    if (node === undefined || key === undefined) return undefined
    const swapped = swap(child)
    if (swapped === undefined) return undefined
    nodes.push(node)
    keys.push(key)
    originals.push(child)
    return swapped
  })
  try {
    return validate(value)
  } finally {
    for (let i = 0; i < nodes.length; i++) nodes[i][keys[i]] = originals[i]
  }
}
