// Turns an HTTP body into a task's input: the content-type parsers (JSON's is
// json-body.ts), the checks of a parsed body (sendable.ts walks it); raw bodies with
// their query-string options are raw-body.ts's.

import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ValidateFunction } from 'ajv'
import { InvalidInputError, UnsupportedMediaTypeError, ValidationError, withExtras } from '../errors.js'
import { decodeValue } from '../pool/protocol.js'
import { msgpackProblem, type MsgpackShape } from '../value-shape.js'
import { parseJsonBody, parseText, takeJsonText } from './json-body.js'
import type { Task } from '../task-registry.js'
import { MAX_DETAILS, validationError } from '../schema-compile.js'
import { pointerSegment } from '../json-pointer.js'
import { parseWithExactIntegers, validateWithBigInts } from './big-integers.js'
import { rawInput, rawTextInput, type RawText } from './raw-body.js'
import { byteOrderMark, isXmlType, xmlCharset } from './xml-charset.js'
import { PendingBody } from '../offload/encoded.js'
import { budgetMs, budgetOrNaN } from './budget.js'
import { unsendable, type Found } from './sendable.js'
import { readBody } from './body-reader.js'
import type { InputOptions, OffloadedInput } from '../offload/offloader.js'
import { shorten } from '../short-text.js'
import { queryStart } from '../request-log.js'

/** Deeper input is refused in Node: the worker's msgpack decoder has its own, lower, recursion limit. */
const MAX_NESTING = 200
export const MSGPACK_TYPES = ['application/msgpack', 'application/x-msgpack', 'application/vnd.msgpack']
const JSON_TYPE = 'application/json'
/** Fastify's own bodyLimit default, for an app built without one. */
const DEFAULT_BODY_LIMIT = 1024 * 1024

/** The size of a chunked body as received (one without content-length), for bodyBytes. */
const chunkedSizes = new WeakMap<FastifyRequest, number>()

/** The size in bytes of the request's body, for QUEUE_LIMIT_BYTES: its content-length, or what a parser read of a chunked one. */
export function bodyBytes (request: FastifyRequest): number {
  const length = request.headers['content-length']
  if (length === undefined) return chunkedSizes.get(request) ?? 0
  const bytes = Number(length) // Node's parser lets only digits through; a NaN must still not reach the count
  return Number.isSafeInteger(bytes) ? bytes : 0
}

/** Notes a chunked body's size (bodies with a content-length need no note: bodyBytes reads it). */
function noteSize (request: FastifyRequest, body: Buffer): void {
  if (request.headers['content-length'] === undefined) chunkedSizes.set(request, body.length)
}

/**
 * A body sent compressed (content-encoding gzip, br, ...) would be parsed, or handed
 * to a task, as its compressed bytes: a wrong answer, not an error. pyfleet does not
 * decompress (a 1 KB gzip bomb can inflate to gigabytes past BODY_LIMIT_BYTES), so
 * anything but identity is refused, as RFC 9110 §8.4.1 says, with 415.
 */
export function encodingProblem (request: FastifyRequest): Error | undefined {
  const coding = request.headers['content-encoding']
  if (coding === undefined) return undefined
  // A list (RFC 9110 §8.4): empty members and identity are no coding at all.
  const applied = coding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity')
  if (applied.length === 0) return undefined
  return new UnsupportedMediaTypeError(`content-encoding ${JSON.stringify(applied.join(', ').slice(0, 50))} is not supported; send the body uncompressed`)
}

/**
 * Registers the parsers. A route using them checks encodingProblem() before the body
 * is read (preParsing). Bodies that are neither JSON nor msgpack stay bytes until the
 * route knows the task.
 */
export function addBodyParsers (fastify: FastifyInstance): void {
  // Fastify's own text/plain parser would hand text bodies over already decoded, ignoring charset.
  fastify.removeAllContentTypeParsers()
  // Read by body-reader.ts rather than Fastify's parseAs: 'buffer', which copies a large body in one turn.
  const limit = fastify.initialConfig.bodyLimit ?? DEFAULT_BODY_LIMIT
  const asBuffer = (parse: (request: FastifyRequest, body: Buffer) => unknown) =>
    (request: FastifyRequest, payload: Readable, done: (error: Error | null, body?: unknown) => void): void => {
      readBody(request, payload, limit, (error, body) => {
        if (error !== null) { done(error, undefined); return }
        const bytes = body as Buffer
        noteSize(request, bytes)
        let parsed
        try {
          parsed = parse(request, bytes)
        } catch (error) {
          done(error as Error, undefined)
          return
        }
        done(null, parsed)
      })
    }
  fastify.addContentTypeParser(JSON_TYPE, asBuffer((request, body) => {
    // JSON is UTF-8 (RFC 8259), whatever else the charset says.
    const { charset } = mediaType(request)
    if (charset !== undefined && !/^(utf-?8|us-ascii)$/i.test(charset)) { // ASCII is UTF-8's subset
      throw new UnsupportedMediaTypeError(`JSON must be UTF-8; charset ${JSON.stringify(shorten(charset, 100))} is not accepted`)
    }
    return jsonBody(fastify, request, body)
  }))
  fastify.addContentTypeParser(MSGPACK_TYPES, asBuffer((_request, body) => {
    if (fastify.offloader.takes(body.length)) return new PendingBody(body, 'msgpack')
    const shape = { objects: 0 }
    checkMsgpack(body, shape)
    // Many small maps, arrays or bins (one byte each) cost far more than their bytes say:
    // 256 KiB of empty maps held the event loop ~150 ms. Those go to the thread too.
    return fastify.offloader.takesObjects(shape.objects) ? new PendingBody(body, 'msgpack') : decodeMsgpack(body)
  }))
  fastify.addContentTypeParser('*', asBuffer((request, body) =>
    // No content-type at all: JSON, the default (SPEC §1). Any other stays bytes until the route knows the task.
    (request.headers['content-type'] ?? '') === '' ? jsonBody(fastify, request, body) : body))
}

/** A JSON body parsed now, or, when it is large, left as bytes for the offload thread (PendingBody). */
function jsonBody (fastify: FastifyInstance, request: FastifyRequest, bytes: Buffer): unknown {
  return fastify.offloader.takes(bytes.length) ? new PendingBody(bytes, 'json') : parseJsonBody(request, bytes)
}

/**
 * A msgpack body's value; throws a 400 INVALID_INPUT saying what is wrong. Its shape is
 * checked first (value-shape.ts), because msgpackr trusts the counts in the bytes.
 */
export function parseMsgpackBytes (bytes: Buffer): unknown {
  checkMsgpack(bytes)
  return decodeMsgpack(bytes)
}

/** Throws the 400 for bytes that are not one plain msgpack value safe to decode (value-shape.ts). */
function checkMsgpack (bytes: Buffer, shape?: MsgpackShape): void {
  // Said as the other empty bodies are (value-shape.ts would say it ends in the middle of a value).
  if (bytes.length === 0) throw new InvalidInputError('the body is empty; send a msgpack value')
  const problem = msgpackProblem(bytes, MAX_NESTING, undefined, false, shape)
  if (problem !== undefined) throw new InvalidInputError(problem)
}

/** Bytes checkMsgpack passed, decoded; msgpackr's own refusals as 400s. */
function decodeMsgpack (bytes: Buffer): unknown {
  try {
    return decodeValue(bytes)
  } catch (error) {
    const message = (error as Error).message
    // msgpackr's words for a bin, array or map used as a map key, which a JSON object cannot have.
    const why = /^Invalid property type for record/.test(message) ? 'a map key is bytes, an array or a map; keys must be strings, numbers, booleans or nil' : message
    throw new InvalidInputError(`body is not valid msgpack: ${why}`)
  }
}

const JSON_MEDIA = Object.freeze({ type: JSON_TYPE, charset: undefined })

function mediaType (request: FastifyRequest): { type: string, charset: string | undefined } {
  const header = request.headers['content-type'] ?? ''
  if (header === JSON_TYPE) return JSON_MEDIA // the common case, without parsing
  const [type, ...params] = header.split(';')
  const charset = params.map((p) => /^\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(p)?.[1]).find((c) => c !== undefined)
  return { type: type.trim().toLowerCase(), charset }
}

/** A JSON or msgpack body (no content-type is read as JSON: addBodyParsers), not a raw one. */
function isStructured (type: string): boolean {
  return type === JSON_TYPE || type === '' || MSGPACK_TYPES.includes(type)
}

/** type/subtype, each an RFC 9110 token. */
const MEDIA_TYPE = /^[!#$%&'*+.^_`|~0-9a-z-]+\/[!#$%&'*+.^_`|~0-9a-z-]+$/

/**
 * A 415 for a content type `task` does not take, found from the headers alone: the task
 * route asks before the body is read (preParsing), so that a client is not made to upload
 * a body that is refused for its type (with Expect: 100-continue, not even asked for it).
 */
export function mediaTypeProblem (task: Task, request: FastifyRequest): Error | undefined {
  const { type } = mediaType(request)
  if (isStructured(type)) return undefined
  // Not a media type at all ("json"): Fastify refuses it before any parser, saying so (error-handler.ts).
  if (!MEDIA_TYPE.test(type)) return undefined
  return rawTypeRefusal(task, type)
}

/**
 * With `Expect: 100-continue` the client waits to be asked for its body: what its headers
 * and query already refuse (an x-request-timeout-ms that is no budget, a query parameter
 * that belongs in a JSON or msgpack body) is answered now, instead of after an upload
 * whose answer was known. Without the expectation the body is on its way, and its own
 * errors are answered first, as they always are.
 */
export function refusedBeforeContinue (task: Task, request: FastifyRequest): Error | undefined {
  try {
    budgetMs(request)
    const { type } = mediaType(request)
    if (isStructured(type) && queryStart(request.url) !== -1) refuseQuery(task, request)
  } catch (error) {
    return error as Error
  }
  return undefined
}

/** The 415 for a raw content type `task` does not declare, or undefined. */
function rawTypeRefusal (task: Task, type: string): Error | undefined {
  if (task.rawField !== null && task.raw.includes(type)) return undefined
  const accepted = [JSON_TYPE, MSGPACK_TYPES[0], ...task.raw].join(', ')
  return new UnsupportedMediaTypeError(`task ${task.name} does not accept content-type ${JSON.stringify(shorten(type, 100))}; it accepts ${accepted}`)
}

/** A call's input, and whether it holds numbers past 32 bits (for the pool: wide-integers.ts). */
export interface TaskInput {
  input: unknown
  holdsWideNumbers: boolean
}

/**
 * The task's input from the request, validated; throws 400/415 errors. A promise for a
 * large JSON, msgpack or text body, which the offload thread parses (or decodes), checks
 * and encodes.
 */
export function inputFor (task: Task, request: FastifyRequest, onClientGone?: InputOptions['onClientGone']): TaskInput | Promise<OffloadedInput> {
  const body = request.body
  const { type, charset } = mediaType(request)
  if (body === undefined && type === '') throw new InvalidInputError('the body is empty; send JSON (content-type: application/json) or msgpack')
  // type '': no content-type, parsed as JSON (see addBodyParsers)
  if (isStructured(type)) return structuredInput(task, request, body, onClientGone)
  // Checked before the body was read too (preParsing); again here, as a reload may have changed the task meanwhile.
  const refused = rawTypeRefusal(task, type)
  if (refused !== undefined) throw refused
  // Passed: the task declares this raw type, so it has a raw field and a validator for it.
  const rawField = task.rawField as string
  const validateRaw = task.validateRaw as ValidateFunction
  const bytes = (body ?? Buffer.alloc(0)) as Buffer
  const query = request.query as Record<string, unknown>
  // Bytes go to their field as they are: nothing to convert, so never worth the thread.
  if (type === 'application/octet-stream') return rawInput(validateRaw, rawField, query, bytes)
  // XML says its own encoding (xml-charset.ts): a byte order mark wins over the charset. Other
  // text without a charset is read as its UTF-16 byte order mark says (Windows tools write
  // UTF-16 with one), UTF-8 otherwise.
  const own = isXmlType(type) ? (charset === undefined ? xmlCharset(bytes) : byteOrderMark(bytes)) : undefined
  const marked = own === undefined && charset === undefined ? utf16Mark(bytes) : undefined
  const raw: RawText = own !== undefined
    ? { charset: own, charsetNamedBy: 'the XML declaration\'s encoding', rawField, query }
    : marked !== undefined
      ? { charset: marked, charsetNamedBy: 'its byte order mark', rawField, query }
      : { charset, charsetNamedBy: 'charset', rawField, query }
  // Decoding 16 MiB of UTF-8 text, and checking its length against a schema, held the event loop for
  // 60-150 ms (Latin-1 and windows-1252 go through their table at about the same cost per byte).
  if (request.server.offloader.takesText(bytes.length)) return offloadedInput(task, request, new PendingBody(bytes, 'text', raw), onClientGone)
  return rawTextInput(bytes, raw, validateRaw)
}

/** 'utf-16le' or 'utf-16be' for bytes that open with that byte order mark, else undefined. */
function utf16Mark (bytes: Buffer): string | undefined {
  const mark = byteOrderMark(bytes)
  return mark === 'utf-16le' || mark === 'utf-16be' ? mark : undefined
}

/** A JSON or msgpack body: checked it can be sent, and against the schema as it is. */
function structuredInput (task: Task, request: FastifyRequest, body: unknown, onClientGone: InputOptions['onClientGone']): TaskInput | Promise<OffloadedInput> {
  if (body instanceof PendingBody) return offloadedInput(task, request, body, onClientGone)
  // A query after `#` too: the router reads one there (a client's request target keeps what a browser would not send).
  if (queryStart(request.url) !== -1) refuseQuery(task, request)
  return checkedInput(body, takeJsonText(request), task.validateBody)
}

/**
 * A large body, made into the input on the offload thread. Its errors come in the same
 * order as on the event loop, where the body is parsed before the query string is
 * looked at: a misplaced query parameter is only reported for a body that parses.
 */
async function offloadedInput (task: Task, request: FastifyRequest, body: PendingBody, onClientGone: InputOptions['onClientGone']): Promise<OffloadedInput> {
  let misplaced: Error | undefined
  try {
    // A raw text body's query parameters are its options, read on the thread.
    if (body.kind !== 'text' && queryStart(request.url) !== -1) refuseQuery(task, request)
  } catch (error) {
    misplaced = error as Error
  }
  // A header that is not a budget is answered 400 later, after the body's own errors: no budget here.
  const budget = budgetOrNaN(request)
  const input = await request.server.offloader.input(task, body, {
    parseOnly: misplaced !== undefined,
    onClientGone,
    budgetMs: Number.isNaN(budget) ? undefined : budget,
    request: request.raw,
    timeLimitMs: task.timeoutMs
  })
  if (misplaced !== undefined) throw misplaced
  return input
}

/**
 * A parsed JSON or msgpack body as a task's input: checked it can be sent, and against
 * the schema as it is. `text`: a JSON body's text (undefined for msgpack), read again
 * when it holds integers JSON.parse rounded.
 */
export function checkedInput (body: unknown, text: string | undefined, validate: ValidateFunction): TaskInput {
  const found: Found = { wideNumbers: false, beyondSafeIntegers: false }
  const problem = unsendable(body, MAX_NESTING, found)
  if (problem !== undefined) throw new InvalidInputError(problem)
  // A BigInt (msgpack's int64 past 2^53) is seen by the schema as the nearest number.
  const valid = found.beyondSafeIntegers && text === undefined ? validateWithBigInts(body, validate) : validate(body)
  if (!valid) throw validationError(validate.errors, 'body', validate.schema, body)
  if (!found.wideNumbers) return { input: body, holdsWideNumbers: false }
  // JSON integers past 2^53, which JSON.parse rounded, are read again exactly (rare: big-integers.ts).
  const exact = found.beyondSafeIntegers && text !== undefined ? parseWithExactIntegers(text, parseText) ?? body : body
  return { input: exact, holdsWideNumbers: true }
}

/**
 * Query parameters are a raw body's options. Beside a JSON or msgpack body nothing reads
 * them: one named like a field of the task's input (?algorithms=md5) was meant as that
 * field, and the answer would be computed without it, so it is a 400. Other names
 * (a gateway's ?code=, a cache-buster) are left alone, as before.
 */
function refuseQuery (task: Task, request: FastifyRequest): void {
  if (task.inputFields.size === 0) return
  const fields = Object.keys(request.query as Record<string, unknown>).filter((name) => task.inputFields.has(name))
  if (fields.length === 0) return
  const listed = fields.slice(0, 5).map((name) => JSON.stringify(name)).join(', ') + (fields.length > 5 ? ', ...' : '')
  const [them, are] = fields.length === 1 ? ['it', 'is a field'] : ['them', 'are fields']
  const raw = task.raw.length > 0 ? ` (task ${task.name} reads ${them} beside a raw body: ${task.raw.join(', ')})` : ''
  // A validation error, as an unknown query option of a raw body is: INVALID_INPUT is for bodies that do not parse.
  // With details, as every FST_ERR_VALIDATION has: one per parameter, at the body field it was meant for.
  throw withExtras(new ValidationError(`query parameter${fields.length === 1 ? '' : 's'} ${listed} ${are} of task ${task.name}'s input: with a JSON or msgpack body, put ${them} in the body${raw}`), {
    details: fields.slice(0, MAX_DETAILS).map((name) => ({ instancePath: `/${pointerSegment(name)}`, keyword: 'queryBesideBody', params: { parameter: name.slice(0, 200) }, message: 'is a query parameter; put it in the body' }))
  })
}
