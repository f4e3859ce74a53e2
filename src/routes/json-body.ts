// JSON bodies: bytes checked as UTF-8, parsed, refused with __proto__ keys or lone
// surrogates anywhere in the text, errors with line and column, and the text kept for
// the rare body whose integers must be read again exactly (big-integers.ts).

import { isUtf8 } from 'node:buffer'
import type { FastifyRequest } from 'fastify'
import { InvalidInputError, withExtras } from '../errors.js'
import { jsonProblem } from '../value-shape.js'
import { hasLoneSurrogate, hasProtoKey } from './json-strings.js'
import { LONE_SURROGATE } from './sendable.js'

/** The text of each JSON body, until the route takes it (takeJsonText). */
const jsonTexts = new WeakMap<FastifyRequest, string>()

/** A JSON body's value; throws a 400 INVALID_INPUT saying what is wrong and, when V8 knows, where. */
export function parseJsonBody (request: FastifyRequest, bytes: Buffer): unknown {
  const { value, text } = parseJsonBytes(bytes)
  jsonTexts.set(request, text)
  return value
}

/**
 * A JSON body's value and its text (for big-integers.ts), from its bytes; throws as
 * parseJsonBody does. Needs no request: the offload thread runs it too (offload/jobs.ts).
 */
export function parseJsonBytes (bytes: Buffer): { value: unknown, text: string } {
  const text = jsonText(bytes)
  return { value: parseJson(text), text }
}

/** The text parseJsonBody read, once: it is not kept while the call waits for a worker. */
export function takeJsonText (request: FastifyRequest): string | undefined {
  const text = jsonTexts.get(request)
  jsonTexts.delete(request)
  return text
}

/**
 * A JSON body's text. Bytes that are not UTF-8 (a Latin-1 é, say) are a 400: decoded
 * as they come, they would reach the task as U+FFFD, and the client would never know.
 * isUtf8 is one SIMD pass; the bytes are read as a Buffer for it, not as a string.
 */
function jsonText (bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8')
  const at = firstInvalidUtf8(bytes)
  throw withExtras(new InvalidInputError(`body is not valid UTF-8: byte 0x${bytes[at].toString(16).padStart(2, '0')} at offset ${at} (counting from 0); JSON must be UTF-8: was it sent as Latin-1 or another charset?`), { details: { offset: at } })
}

/** The offset of the first byte that is not part of valid UTF-8 (bytes holds at least one). */
export function firstInvalidUtf8 (bytes: Buffer): number {
  // Decoding replaces each bad sequence with U+FFFD; one that stands for a real U+FFFD
  // (EF BF BD in the bytes) is skipped. One pass: the byte offset is carried along.
  const text = bytes.toString('utf8')
  let offset = 0
  let last = 0
  for (let at = text.indexOf('\uFFFD'); at !== -1; at = text.indexOf('\uFFFD', at + 1)) {
    offset += Buffer.byteLength(text.slice(last, at))
    last = at + 1
    if (bytes[offset] !== 0xef || bytes[offset + 1] !== 0xbf || bytes[offset + 2] !== 0xbd) return offset
    offset += 3
  }
  return offset // not reached for bytes isUtf8 refused
}

function parseJson (text: string): unknown {
  if (text.length === 0) throw new InvalidInputError('the body is empty; send a JSON value')
  const problem = jsonProblem(text)
  if (problem !== undefined) throw new InvalidInputError(problem)
  let value: unknown
  try {
    value = parseText(text)
  } catch (error) {
    const message = (error as Error).message
    const position = /at position (\d+)/.exec(message)
    // V8 gives no position when the text ends too soon: that is where it ends.
    const at = position !== null ? Number(position[1]) : /Unexpected end of JSON input/.test(message) ? text.length : undefined
    const details = at !== undefined ? lineAndColumn(text, at) : undefined
    throw withExtras(new InvalidInputError(`body is not valid JSON: ${message}`), { details })
  }
  // On the text, not the value: a key repeated in an object drops its earlier values unseen.
  if (typeof value === 'object' && value !== null && hasProtoKey(text)) throw new InvalidInputError(PROTO_KEY)
  if (hasLoneSurrogate(text)) throw new InvalidInputError(LONE_SURROGATE)
  return value
}

function lineAndColumn (text: string, position: number): { line: number, column: number } {
  let line = 1
  let lineStart = 0
  for (let i = text.indexOf('\n'); i !== -1 && i < position; i = text.indexOf('\n', i + 1)) {
    line++
    lineStart = i + 1
  }
  return { line, column: position - lineStart + 1 }
}

// A `__proto__` key is refused, as msgpack bodies refuse it (msgpackr renames it in answers).
// `constructor: {prototype: ...}` is data like any other here: nothing in pyfleet merges a
// body into another object, and msgpack bodies never refused it.
const PROTO_KEY = 'the body holds a __proto__ key, which is refused (as in msgpack bodies): valid JSON, but in JavaScript it would set an object\'s prototype'

/** JSON.parse, past a leading byte order mark (which Fastify's own JSON parser skips too). */
export function parseText (text: string): unknown {
  return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text)
}
