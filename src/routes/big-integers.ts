// Integers beyond ±2^53 in request bodies, delivered exactly. JSON.parse rounds
// them (a 64-bit id, 1790000000000000001, becomes 1790000000000000000: silently
// wrong data), and msgpackr decodes msgpack's as BigInt, which Ajv cannot check
// ("must be integer"). So: a JSON body holding such an integer literal is read
// again with each one as a BigInt; schemas are checked against the nearest
// numbers, and the task receives the exact integers (Python ints, up to 64 bits).
// Only bodies whose walk met a number past 2^53 get here: the common case costs nothing.

import { randomBytes } from 'node:crypto'
import { InvalidInputError, withExtras } from '../errors.js'

const INT64_MIN = -(2n ** 63n)
const UINT64_MAX = 2n ** 64n - 1n

// A JSON string that marks a literal to be read as BigInt. The NUL and a nonce
// drawn at start-up mean no client string can pass for one.
const MARK = `\u0000${randomBytes(12).toString('hex')}:`
const MARK_JSON = `\\u0000${MARK.slice(1)}`

/** Line and column (1-based) of a character offset in a text. */
export function lineAndColumn (text: string, position: number): { line: number, column: number } {
  let line = 1
  let lineStart = 0
  for (let i = text.indexOf('\n'); i !== -1 && i < position; i = text.indexOf('\n', i + 1)) {
    line++
    lineStart = i + 1
  }
  return { line, column: position - lineStart + 1 }
}

function outside64Bits (exact: bigint): boolean {
  return exact < INT64_MIN || exact > UINT64_MAX
}

function tooWide (literal: string): Error {
  const shown = literal.length > 40 ? `${literal.slice(0, 40)}…` : literal
  return new InvalidInputError(`the integer ${shown} does not fit 64 bits, the most a task can receive; send it as a string`)
}

/**
 * A query-string value that is an integer past ±2^53, exactly, or undefined for any
 * other text. (Ajv's coercion would round it.) Past 64 bits, a 400 naming the field.
 */
export function exactQueryInteger (text: string, field: string): bigint | undefined {
  if (text.length < 16 || !/^-?\d+$/.test(text) || Number.isSafeInteger(Number(text))) return undefined
  const exact = BigInt(text)
  if (outside64Bits(exact)) throw withExtras(tooWide(text), { details: { field } })
  return exact
}

/**
 * Start and end offsets of every integer literal outside strings in (valid) JSON
 * `text` that a double cannot hold exactly, checked to fit 64 bits (else a 400).
 */
function wideLiterals (text: string): number[] {
  const spans: number[] = []
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
      continue
    }
    if (c === 0x22) { inString = true; continue }
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue // a number starts with - or a digit
    let end = i + 1
    let integer = true
    for (; end < text.length; end++) {
      const d = text.charCodeAt(end)
      if (d >= 0x30 && d <= 0x39) continue
      if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) { integer = false; continue } // . e E + -
      break
    }
    const literal = text.slice(i, end)
    if (integer && end - i >= 16 && !Number.isSafeInteger(Number(literal))) {
      if (outside64Bits(BigInt(literal))) throw withExtras(tooWide(literal), { details: lineAndColumn(text, i) })
      spans.push(i, end)
    }
    i = end - 1
  }
  return spans
}

/**
 * The JSON body parsed again (with the same `parse`) with every integer literal
 * beyond ±2^53 as an exact BigInt, or undefined if it holds none (a large float,
 * 1e300, also sends a body here, and finds nothing).
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
  marked += text.slice(from)
  const value = parse(marked)
  if (typeof value === 'string') return fromMark(value) ?? value
  forEachScalar(value, (child, set) => {
    if (typeof child === 'string') {
      const exact = fromMark(child)
      if (exact !== undefined) set(exact)
    }
  })
  return value
}

function fromMark (text: string): bigint | undefined {
  return text.startsWith(MARK) ? BigInt(text.slice(MARK.length)) : undefined
}

/**
 * Runs `validate` (an Ajv function) on `value` with each BigInt in it replaced by
 * the nearest number, then puts the BigInts back. In place: `value` belongs to
 * the request, and is whole again when this returns or throws.
 */
export function validateWithBigInts (value: unknown, validate: (value: unknown) => boolean): boolean {
  if (typeof value === 'bigint') return validate(Number(value))
  const restore: Array<() => void> = []
  forEachScalar(value, (child, set) => {
    if (typeof child === 'bigint') {
      set(Number(child))
      restore.push(() => set(child))
    }
  })
  try {
    return validate(value)
  } finally {
    for (const put of restore) put()
  }
}

/** Calls `visit` for every scalar under `value` with a setter for its place. Iterative; bytes are scalars. */
function forEachScalar (value: unknown, visit: (child: unknown, set: (replacement: unknown) => void) => void): void {
  if (typeof value !== 'object' || value === null) return
  const stack: object[] = [value]
  while (stack.length > 0) {
    const node = stack.pop() as Record<string, unknown>
    for (const key of Array.isArray(node) ? node.keys() : Object.keys(node)) {
      const child = node[key]
      if (typeof child === 'object' && child !== null && !ArrayBuffer.isView(child)) stack.push(child)
      else visit(child, (replacement) => { node[key] = replacement })
    }
  }
}
