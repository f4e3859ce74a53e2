// One walk for the places that change some values of a decoded body or result in
// place: bytes and BigInts made JSON-safe (routes/replies.ts), marked strings made
// exact integers and BigInts swapped for numbers while a schema checks them
// (routes/big-integers.ts).

/** A map or an array to walk into; bytes are values, not containers. */
function isContainer (value: unknown): value is object {
  return typeof value === 'object' && value !== null && !ArrayBuffer.isView(value)
}

/**
 * Replaces, in place, every value under `value` (itself included) for which
 * `replacement` returns something other than undefined, and returns the result
 * (`value`, or the top value's replacement). `replacement` also gets where the
 * child is (its container and key; none for the top value). Callers own the value.
 * Iterative, with only containers on the stack, so a deep or large value costs no
 * recursion and no allocation per value. A replaced value is not walked into.
 */
export function replaceInPlace (value: unknown, replacement: (child: unknown, node?: Record<string | number, unknown>, key?: string | number) => unknown): unknown {
  const top = replacement(value)
  if (top !== undefined) return top
  if (!isContainer(value)) return value
  const stack: object[] = [value]
  while (stack.length > 0) {
    const node = stack.pop() as Record<string, unknown>
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const child: unknown = node[i]
        const replaced = replacement(child, node, i)
        if (replaced !== undefined) node[i] = replaced
        else if (isContainer(child)) stack.push(child)
      }
    } else {
      for (const key in node) {
        const child = node[key]
        const replaced = replacement(child, node, key)
        if (replaced !== undefined) node[key] = replaced
        else if (isContainer(child)) stack.push(child)
      }
    }
  }
  return value
}
