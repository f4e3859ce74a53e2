// Writes a task's return value as JSON or msgpack. JSON cannot hold bytes or
// BigInt: bytes become base64 strings, integers beyond 2^53 decimal strings.

import type { FastifyReply, FastifyRequest } from 'fastify'
import { encodeValue } from '../pool/protocol.js'

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
function jsonSafe (value: unknown): unknown {
  const top = converted(value, undefined)
  if (top !== undefined) return top
  if (typeof value !== 'object' || value === null) return value
  // Containers only on the stack, and for-in rather than Object.entries: no allocation per value.
  const stack: object[] = [value]
  while (stack.length > 0) {
    const node = stack.pop() as Record<string, unknown>
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const replacement = converted(node[i], stack)
        if (replacement !== undefined) node[i] = replacement
      }
    } else {
      for (const key in node) {
        const replacement = converted(node[key], stack)
        if (replacement !== undefined) node[key] = replacement
      }
    }
  }
  return value
}

/** The string that replaces a BigInt or bytes; undefined for anything else (objects are queued on `stack` for jsonSafe's walk). */
function converted (child: unknown, stack: object[] | undefined): string | undefined {
  if (typeof child === 'bigint') return child.toString()
  if (typeof child !== 'object' || child === null) return undefined
  if (ArrayBuffer.isView(child)) return Buffer.from(child.buffer, child.byteOffset, child.byteLength).toString('base64')
  stack?.push(child)
  return undefined
}

/** The value as JSON text, with bytes as base64 and big integers as strings. */
export function toJson (value: unknown): string {
  // JSON.stringify(undefined) is undefined; a task returning None gives null, so this is a safety net.
  return JSON.stringify(jsonSafe(value)) ?? 'null'
}

const MSGPACK_MEDIA = new Set(['application/msgpack', 'application/x-msgpack', 'application/vnd.msgpack'])
/** What an Accept range must be to cover JSON, the default answer. */
const JSON_MEDIA = new Set(['application/json', 'application/*', '*/*'])
const MSGPACK_IN = /msgpack/i

/**
 * True if the client's Accept prefers msgpack: a msgpack type with a quality
 * above 0 (`;q=0` means "not this") and above that of any range covering JSON
 * (`*\/*` and `application/*` do). A tie goes to msgpack, the type named outright.
 */
export function wantsMsgpack (request: FastifyRequest): boolean {
  const accept = request.headers.accept
  if (accept === undefined || !MSGPACK_IN.test(accept)) return false // the common case, without parsing
  let msgpack = 0
  let json = 0
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';')
    const media = type.trim().toLowerCase()
    const q = params.map((p) => /^\s*q\s*=\s*([\d.]+)\s*$/i.exec(p)?.[1]).find((v) => v !== undefined)
    const quality = q === undefined ? 1 : Number(q)
    if (MSGPACK_MEDIA.has(media)) msgpack = Math.max(msgpack, quality)
    else if (JSON_MEDIA.has(media)) json = Math.max(json, quality)
  }
  return msgpack > 0 && msgpack >= json
}

export function sendValue (request: FastifyRequest, reply: FastifyReply, value: unknown): FastifyReply {
  if (wantsMsgpack(request)) return reply.type('application/msgpack').send(encodeValue(value))
  return reply.type('application/json; charset=utf-8').send(toJson(value))
}
