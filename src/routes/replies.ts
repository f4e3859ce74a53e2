// Writes a task's return value as JSON or msgpack. JSON cannot hold bytes or
// BigInt: bytes become base64 strings, integers beyond 2^53 decimal strings.

import type { FastifyReply, FastifyRequest } from 'fastify'
import { encodeValue } from '../pool/protocol.js'

/** True if the value holds bytes or a BigInt anywhere, so plain JSON.stringify would get it wrong. */
function needsConversion (value: unknown): boolean {
  if (typeof value === 'bigint') return true
  if (typeof value !== 'object' || value === null) return false
  if (ArrayBuffer.isView(value)) return true
  // Containers only on the stack, and for-in rather than Object.values: no allocation per value.
  const stack: object[] = [value]
  while (stack.length > 0) {
    const node = stack.pop() as Record<string, unknown>
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) if (needsWork(node[i], stack)) return true
    } else {
      for (const key in node) if (needsWork(node[key], stack)) return true
    }
  }
  return false
}

/** True for a BigInt or bytes; queues any other object for needsConversion's walk. */
function needsWork (child: unknown, stack: object[]): boolean {
  if (typeof child === 'bigint') return true
  if (typeof child !== 'object' || child === null) return false
  if (ArrayBuffer.isView(child)) return true
  stack.push(child)
  return false
}

function jsonReplacer (this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  // Buffer's own toJSON has already run by now and produced {type: 'Buffer', data}.
  if (typeof value === 'object' && value !== null) {
    if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')
    const v = value as { type?: unknown, data?: unknown }
    if (v.type === 'Buffer' && Array.isArray(v.data) && Object.keys(v).length === 2) return Buffer.from(v.data as number[]).toString('base64')
  }
  return value
}

/** The value as JSON text, with bytes as base64 and big integers as strings. */
export function toJson (value: unknown): string {
  const text = needsConversion(value) ? JSON.stringify(value, jsonReplacer) : JSON.stringify(value)
  // JSON.stringify(undefined) is undefined; a task returning None gives null, so this is a safety net.
  return text ?? 'null'
}

/** True if the client asked for msgpack in Accept. */
export function wantsMsgpack (request: FastifyRequest): boolean {
  const accept = request.headers.accept
  return accept !== undefined && accept.includes('msgpack')
}

export function sendValue (request: FastifyRequest, reply: FastifyReply, value: unknown): FastifyReply {
  if (wantsMsgpack(request)) return reply.type('application/msgpack').send(encodeValue(value))
  return reply.type('application/json; charset=utf-8').send(toJson(value))
}
