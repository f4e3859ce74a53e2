// A raw body (a content type the task declares beside JSON and msgpack) as a task's
// input: its text decoded from its charset (bytes for octet-stream), put in the field
// the task names, beside the query string's options coerced to the schema's types.
// The offload thread runs the same functions for a large text body (offload/jobs.ts).

import type { ErrorObject, ValidateFunction } from 'ajv'
import { localTarget, pointerSegment, segmentName } from '../json-pointer.js'
import { InvalidInputError, UnsupportedMediaTypeError, ValidationError, withExtras } from '../errors.js'
import { mostSpecific, validationError } from '../schema-compile.js'
import { exactQueryInteger } from './big-integers.js'
import { firstInvalidUtf8 } from './json-body.js'
import { decodeWindows1252, NATIVE_WINDOWS_1252_IS_LATIN_1 } from './windows-1252.js'
import type { TaskInput } from './body.js'
import { shorten } from '../short-text.js'

/**
 * What a raw text body needs, besides its bytes, to become its task's input: the
 * charset to decode it with (undefined: UTF-8) and what declared it (for the 415),
 * the field it fills, and the query string's options beside it.
 */
export interface RawText {
  charset: string | undefined
  charsetNamedBy: string
  rawField: string
  query: Record<string, unknown>
}

/** A raw text body decoded and put in its field beside the query string's options; throws 400/415 errors. The offload thread runs it too (offload/jobs.ts). */
export function rawTextInput (bytes: Buffer, raw: RawText, validateRaw: ValidateFunction): TaskInput {
  return rawInput(validateRaw, raw.rawField, raw.query, decodeText(bytes, raw.charset, raw.charsetNamedBy))
}

/** Where in a raw call a schema error is: the body itself (its field), or a query-string option. */
function rawInputPlace (instancePath: string, rawField: string): string {
  const field = `/${pointerSegment(rawField)}`
  if (instancePath === field || instancePath.startsWith(`${field}/`)) return `body${instancePath.slice(field.length)}`
  return `querystring${instancePath}`
}

const ARRAY_OPTIONS = new WeakMap<object, ReadonlySet<string>>()

/**
 * The input's top-level properties whose schema is an array and nothing else (`"type":
 * "array"`, or with `"null"`), for each compiled schema once. Not Ajv's `coerceTypes:
 * "array"`, which wraps a value wherever a schema allows an array, so that a `oneOf` of an
 * integer and an array of integers matched `?id=5` twice and refused it.
 */
function arrayOptions (schema: unknown): ReadonlySet<string> {
  if (schema === null || typeof schema !== 'object') return new Set()
  let names = ARRAY_OPTIONS.get(schema)
  if (names === undefined) {
    const properties = (schema as { properties?: unknown }).properties
    const entries = properties !== null && typeof properties === 'object' ? Object.entries(properties) : []
    names = new Set(entries.filter(([, property]) => {
      // Through a local $ref too (`"tags": {"$ref": "#/definitions/tags"}`), as the OpenAPI parameter's schema is.
      const type = (localTarget(property, schema) as { type?: unknown } | null | undefined)?.type
      return type === 'array' || (Array.isArray(type) && type.includes('array') && type.every((t) => t === 'array' || t === 'null'))
    }).map(([name]) => name))
    ARRAY_OPTIONS.set(schema, names)
  }
  return names
}

/**
 * A refusal of an option given more than once where one value is wanted (`?top=2&top=3`):
 * Ajv's "must be integer" for what was two integers. Only when the schema's first error is
 * at that option (a schema may take one or many).
 */
function repeatedOptionError (errors: ErrorObject[] | null | undefined, query: Record<string, unknown>, arrays: ReadonlySet<string>): Error | undefined {
  const first = mostSpecific(errors ?? [])
  if (first === undefined) return undefined
  const name = segmentName(first.instancePath.split('/')[1] ?? '')
  const given = Object.hasOwn(query, name) ? query[name] : undefined
  if (!Array.isArray(given) || arrays.has(name)) return undefined
  const values = given.slice(0, 5).map((v) => JSON.stringify(String(v).slice(0, 40))).join(', ')
  return withExtras(new ValidationError(`querystring/${name} is given ${given.length} times (${values}${given.length > 5 ? ', ...' : ''}); give it once`), {
    details: [{ instancePath: `/${pointerSegment(name)}`, keyword: 'repeated', params: { count: given.length }, message: `is given ${given.length} times` }]
  })
}

/** A raw body in its field (text, or bytes for octet-stream), with the query string's options coerced to the schema's types. */
export function rawInput (validateRaw: ValidateFunction, rawField: string, query: Record<string, unknown>, raw: string | Buffer): TaskInput {
  const input: Record<string, unknown> = { ...query }
  const arrays = arrayOptions(validateRaw.schema)
  // Arrays copied too: Ajv's coercion changes them in place, and the text of each item is needed below.
  // An array option sent once is an array of one (OpenAPI's default style sends [5] as ?ids=5).
  // (Defined, not assigned: a parameter named __proto__ is an own property here, and stays one.)
  for (const [key, value] of Object.entries(input)) {
    const array = Array.isArray(value) ? [...value] : typeof value === 'string' && arrays.has(key) ? [value] : undefined
    if (array !== undefined) Object.defineProperty(input, key, { value: array, enumerable: true, writable: true, configurable: true })
  }
  // The body fills its field: a parameter of that name would be silently overwritten.
  if (Object.hasOwn(query, rawField)) {
    throw withExtras(new ValidationError(`querystring/${rawField} is the field the raw body fills; leave it out of the query string`), {
      details: [{ instancePath: `/${rawField}`, keyword: 'rawField', params: { rawField }, message: 'is the field the raw body fills' }]
    })
  }
  input[rawField] = raw
  if (!validateRaw(input)) throw repeatedOptionError(validateRaw.errors, query, arrays) ?? validationError(validateRaw.errors, (path) => rawInputPlace(path, rawField), validateRaw.schema)
  // Ajv has made numbers of the schema's numeric fields, rounding any past 2^53
  // (a repeated parameter is an array of them, and so is one sent once where the schema
  // wants an array).
  for (const key in query) {
    if (key === rawField) continue
    const texts = query[key]
    const text = Array.isArray(texts) ? texts : [texts]
    const coerced = input[key]
    if (typeof coerced === 'number' && text.length === 1 && typeof text[0] === 'string') input[key] = numberOf(key, undefined, text[0], coerced)
    else if (Array.isArray(coerced) && text.length === coerced.length) {
      input[key] = coerced.map((item: unknown, i) => typeof item === 'number' && typeof text[i] === 'string' ? numberOf(key, i, text[i] as string, item) : item)
    }
  }
  // A query-string integer may be past 32 bits. Checking costs more than the pool's scan
  // of the frame, which skips the raw body's bytes in one step.
  return { input, holdsWideNumbers: true }
}

/** Decimal digits, perhaps signed, with a fraction or an exponent: what a number option may be written as. */
const NUMBER_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

/**
 * The number Ajv made of an option's `text`, exact when it is an integer past 2^53. Ajv takes
 * any text JavaScript's `+text` makes a number of: blanks were 0 (`?limit=%20` returned no
 * records, where `?limit=` is refused), `0x3` was 3. Those are refused.
 */
function numberOf (name: string, index: number | undefined, text: string, coerced: number): number | bigint {
  if (!NUMBER_TEXT.test(text)) {
    const place = index === undefined ? name : `${name}/${index}`
    throw withExtras(new ValidationError(`querystring/${place} must be a number written in decimal digits (got ${JSON.stringify(text.slice(0, 40))})`), {
      details: [{ instancePath: `/${pointerSegment(name)}${index === undefined ? '' : `/${index}`}`, keyword: 'numberText', params: { text: text.slice(0, 40) }, message: 'must be a number written in decimal digits' }]
    })
  }
  return exactQueryInteger(text) ?? coerced
}

function decodeText (bytes: Buffer, charset: string | undefined, named = 'charset'): string {
  let decoder: TextDecoder
  try {
    decoder = new TextDecoder(charset ?? 'utf-8', { fatal: true })
  } catch {
    throw new UnsupportedMediaTypeError(`${named} ${JSON.stringify(shorten(charset as string, 100))} is not supported; send UTF-8`)
  }
  if (decoder.encoding === 'windows-1252' && NATIVE_WINDOWS_1252_IS_LATIN_1) return decodeWindows1252(bytes)
  try {
    return decoder.decode(bytes)
  } catch {
    if (decoder.encoding !== 'utf-8') throw new InvalidInputError(`body is not valid ${charset ?? 'UTF-8'} text`)
    // Where, as for JSON: a client can find the byte its encoder got wrong.
    const at = firstInvalidUtf8(bytes)
    throw withExtras(new InvalidInputError(`body is not valid ${charset ?? 'UTF-8'} text: byte 0x${bytes[at].toString(16).padStart(2, '0')} at offset ${at} (counting from 0); was it sent as Latin-1 (say charset=iso-8859-1) or another charset?`), { details: { offset: at } })
  }
}
