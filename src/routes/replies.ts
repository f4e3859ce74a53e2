// Writes a task's return value as JSON or msgpack. JSON cannot hold bytes or
// BigInt: bytes become base64 strings, integers beyond 2^53 decimal strings.

import type { FastifyReply, FastifyRequest } from 'fastify'
import { encodeValue } from '../pool/protocol.js'
import { replaceInPlace } from '../replace-in-place.js'
import { holdsProtoKey } from '../value-shape.js'
import { EncodedAnswer } from '../offload/encoded.js'
import { MSGPACK_TYPES } from './body.js'

/**
 * Makes a task's value JSON-safe in place: bytes become base64 strings, BigInts
 * decimal strings. Changing it is safe: it was decoded from the worker's reply
 * and belongs to this response alone (and holds no shared references: the
 * decoder refuses msgpack's reference extensions). Converting before
 * JSON.stringify, rather than in a replacer, matters: Buffer's toJSON would run
 * first and turn every byte into an array element (seconds for a 60 MB result),
 * and a replacer cannot tell the result of that from a task's own
 * {type: 'Buffer', data: [...]} object.
 */
export function jsonSafe (value: unknown): unknown {
  return replaceInPlace(value, jsonReplacement)
}

/** The string that replaces a BigInt or bytes; undefined for anything else. */
function jsonReplacement (child: unknown): string | undefined {
  if (typeof child === 'bigint') return child.toString()
  if (ArrayBuffer.isView(child)) return Buffer.from(child.buffer, child.byteOffset, child.byteLength).toString('base64')
  return undefined
}

/** The value as JSON text, with bytes as base64 and big integers as strings. */
export function toJson (value: unknown): string {
  // JSON.stringify(undefined) is undefined; a task returning None gives null, so this is a safety net.
  return JSON.stringify(jsonSafe(value)) ?? 'null'
}

const PROTO = Buffer.from('__proto__')

const MSGPACK_MEDIA = new Set(MSGPACK_TYPES)
/** Whether an Accept header names msgpack at all: without it, and without parameters, the answer is JSON unparsed. */
const MSGPACK_IN = /msgpack/i

/** A range's quality: its q parameter (0 to 1), 1 without one; undefined if q is not a number in 0..1 (the range is ignored). */
export function qualityOf (params: string[]): number | undefined {
  const q = params.map((p) => /^\s*q\s*=\s*(\S*)\s*$/i.exec(p)?.[1]).find((v) => v !== undefined)
  if (q === undefined) return 1
  if (!/^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(q)) return undefined
  return Number(q)
}

/**
 * True if the client's Accept prefers msgpack. Each type's quality is that of the
 * most specific range covering it (the type itself, then application/*, then *\/*;
 * 0 if none does; `;q=0` means "not this"). Named, msgpack wins when its quality is
 * at least JSON's. Not named, it is chosen only when JSON is refused:
 * `application/json;q=0, *\/*` means anything but JSON, `*\/*` alone or
 * `application/json;q=0.9, *\/*` still JSON. When neither is acceptable the answer
 * is JSON, not a 406.
 */
export function wantsMsgpack (request: FastifyRequest): boolean {
  const accept = request.headers.accept
  // The common cases, without parsing: msgpack not named, and no parameter that could refuse JSON.
  if (accept === undefined || (!MSGPACK_IN.test(accept) && !accept.includes(';'))) return false
  let msgpack: number | undefined
  let json: number | undefined
  let anyApplication: number | undefined
  let any: number | undefined
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';')
    const media = type.trim().toLowerCase()
    const quality = qualityOf(params)
    if (quality === undefined) continue
    if (MSGPACK_MEDIA.has(media)) msgpack = Math.max(msgpack ?? 0, quality)
    else if (media === 'application/json') json = Math.max(json ?? 0, quality)
    else if (media === 'application/*') anyApplication = Math.max(anyApplication ?? 0, quality)
    else if (media === '*/*') any = Math.max(any ?? 0, quality)
  }
  const jsonQuality = json ?? anyApplication ?? any ?? 0
  const msgpackQuality = msgpack ?? anyApplication ?? any ?? 0
  // Not named, msgpack only stands in for a JSON the client refused: a client that never
  // asked for msgpack and merely prefers "anything" to JSON (json;q=0.9, */*) still reads JSON.
  return msgpack !== undefined ? msgpackQuality > 0 && msgpackQuality >= jsonQuality : jsonQuality === 0 && msgpackQuality > 0
}

/**
 * Answers with a task's value: as JSON, or as msgpack (`asMsgpack`, from wantsMsgpack),
 * where the worker's own bytes (`msgpack`) go as they are when the pool has them, so a
 * float stays a float and an int an int (a JavaScript number cannot tell 2.0 from 2).
 */
export function sendValue (reply: FastifyReply, value: unknown, asMsgpack: boolean, msgpack?: Uint8Array): FastifyReply {
  // Vary: the same call answers msgpack to another Accept, and a cache must not mix them up.
  reply.header('vary', 'accept')
  // Written already, off the event loop (offload/jobs.ts), in the format asked for.
  if (value instanceof EncodedAnswer) return reply.type(value.format === 'msgpack' ? MSGPACK_TYPE : JSON_TYPE).send(value.bytes)
  if (asMsgpack) return reply.type(MSGPACK_TYPE).send(msgpackAnswer(value, msgpack))
  return reply.type(JSON_TYPE).send(toJson(value))
}

const MSGPACK_TYPE = 'application/msgpack'
const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * A value's msgpack answer: the worker's own bytes (`msgpack`) when the pool has them,
 * so a float stays a float and an int an int, or else the value encoded again.
 */
export function msgpackAnswer (value: unknown, msgpack: Uint8Array | undefined): Buffer {
  const own = msgpack === undefined ? undefined : Buffer.from(msgpack.buffer, msgpack.byteOffset, msgpack.byteLength)
  // A __proto__ key (xml.import makes keys of element names) could replace the prototype
  // of an object in a JavaScript client's decoder: such a value is encoded again from what
  // msgpackr decoded, which renamed the key __proto_, as JSON answers have it. The byte
  // search is the cheap test; the walk tells a key from the same bytes in a value.
  return own === undefined || (own.includes(PROTO) && holdsProtoKey(own)) ? encodeValue(value) : own
}
