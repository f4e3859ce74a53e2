// What a decoded body holds that a worker cannot receive: nesting past the limit,
// strings that are not Unicode, values of types msgpack has no place for. Also
// notes, on the way, numbers the pool must send as integers (wide-integers.ts).

import { isPast32Bits } from '../pool/wide-integers.js'

/**
 * Why a decoded body cannot be sent to a worker, or undefined if it can: nesting
 * deeper than `limit`, or strings that are not Unicode. (msgpack extension types
 * never get this far: value-shape.ts refuses them before decoding.) Iterative,
 * so a hostile body cannot overflow the stack.
 */
export function unsendable (value: unknown, limit: number, found: Found = { wideNumbers: false, beyondSafeIntegers: false }): string | undefined {
  // Two parallel stacks of containers only: scalars are checked where they are
  // found, so a large body costs no allocation per value.
  const nodes: object[] = []
  const depths: number[] = []
  let problem = checkValue(value, nodes, depths, 0, found)
  while (problem === undefined && nodes.length > 0) {
    const node = nodes.pop() as object
    const depth = depths.pop() as number
    if (depth >= limit) return `the body nests deeper than ${limit} levels`
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length && problem === undefined; i++) problem = checkValue(node[i], nodes, depths, depth + 1, found)
      continue
    }
    for (const key in node) {
      if (!isWellFormed(key)) return LONE_SURROGATE
      problem = checkValue((node as Record<string, unknown>)[key], nodes, depths, depth + 1, found)
      if (problem !== undefined) break
    }
  }
  return problem
}

// JSON's \ud800 escapes (and msgpack's CESU-8 bytes) give strings that are not
// Unicode. They cannot be encoded as UTF-8 for the worker, whose decoder would
// refuse the whole frame and take the worker down with it: refuse them here.
export const LONE_SURROGATE = 'the body holds a string with a lone UTF-16 surrogate (such as "\\ud800"), which is not valid Unicode; tasks receive UTF-8 text'

// String.prototype.isWellFormed (Node 20) is not in the ES2022 library types.
const isWellFormed = (text: string): boolean => (text as unknown as { isWellFormed: () => boolean }).isWellFormed()

/** What unsendable's walk saw besides problems. */
export interface Found {
  /** A number beyond 32 bits, which may be an integer the pool is to send as one (wide-integers.ts). */
  wideNumbers: boolean
  /** A number beyond ±2^53 (JSON may have rounded an integer) or a BigInt (msgpack's int64). */
  beyondSafeIntegers: boolean
}

/** Checks a scalar, or queues a container for unsendable's walk. */
function checkValue (value: unknown, nodes: object[], depths: number[], depth: number, found: Found): string | undefined {
  switch (typeof value) {
    case 'string': return isWellFormed(value) ? undefined : LONE_SURROGATE
    case 'number':
      if (isPast32Bits(value)) {
        found.wideNumbers = true
        if (value > Number.MAX_SAFE_INTEGER || value < -Number.MAX_SAFE_INTEGER) found.beyondSafeIntegers = true
      }
      return undefined
    case 'bigint':
      found.beyondSafeIntegers = true
      return undefined
    case 'boolean': return undefined
    case 'object':
      if (value === null || value instanceof Uint8Array) return undefined
      nodes.push(value)
      depths.push(depth)
      return undefined
    default: return `the body holds a value of type ${typeof value}, which tasks cannot receive`
  }
}
