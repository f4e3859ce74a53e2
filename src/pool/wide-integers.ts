// JavaScript has one number type; msgpack, like Python, tells integers from floats.
// msgpackr writes a number as a msgpack integer only when it fits 32 bits, and
// every other number as a float64. So an integer from a client (a millisecond
// timestamp, 1764400000000, as JSON or as a msgpack int64 that decoded to a
// number) would reach a task as the float 1764400000000.0, and a task's int come
// back to a msgpack client as a float. Integers between 2^32 and 2^53 (all that a
// double holds without rounding) become BigInt before packing, which msgpackr writes as int64:
// a call's input in the route (routes/body.ts, which walks every body anyway and
// so knows when one holds such a number), a msgpack answer in protocol.ts.

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

/** The BigInt that replaces a wide integer; undefined for anything else (containers are queued on `stack`). */
function widened (child: unknown, stack: object[]): bigint | undefined {
  if (typeof child === 'number') return isWideInteger(child) ? BigInt(child) : undefined
  if (typeof child === 'object' && child !== null && !ArrayBuffer.isView(child)) stack.push(child)
  return undefined
}

/**
 * `value` with every wide integer (beyond 32 bits, within ±2^53) as a BigInt, changed
 * in place: callers own the value (a call's input, a task's result). Iterative, with
 * only containers on the stack, so a deep or large value costs no recursion and no
 * allocation per number. Bytes are left as they are.
 */
export function wideIntegersAsBigInt (value: unknown): unknown {
  const stack: object[] = []
  const top = widened(value, stack)
  if (top !== undefined) return top
  while (stack.length > 0) {
    const node = stack.pop() as Record<string, unknown>
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const replacement = widened(node[i], stack)
        if (replacement !== undefined) node[i] = replacement
      }
    } else {
      for (const key in node) {
        const replacement = widened(node[key], stack)
        if (replacement !== undefined) node[key] = replacement
      }
    }
  }
  return value
}
