// JSON Pointer segments (RFC 6901), as Ajv's instancePath and schemaPath and `$ref`s write
// them: `~` is `~0` and `/` is `~1` inside a segment.

/** A name (a property, a field) as one segment of a JSON Pointer. */
export function pointerSegment (name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1')
}

/** A JSON Pointer segment back as the name it stands for. */
export function segmentName (segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~')
}

/**
 * `schema`, or where its local `$ref` (`#/...`, each segment percent-decoded as Ajv reads it)
 * leads in `root`, followed again if that is a reference too; undefined where a reference
 * leads nowhere. References of other forms are left as they are.
 */
export function localTarget (schema: unknown, root: unknown): unknown {
  let resolved = schema
  for (let hops = 0; hops < 32; hops++) {
    const ref = (resolved as { $ref?: unknown } | null)?.$ref
    if (typeof ref !== 'string' || !ref.startsWith('#/')) return resolved
    let node = root
    for (const segment of ref.slice(2).split('/')) {
      let name: string
      try {
        name = segmentName(decodeURIComponent(segment))
      } catch {
        return undefined // not a pointer Ajv would have compiled
      }
      node = node !== null && typeof node === 'object' && Object.hasOwn(node, name) ? (node as Record<string, unknown>)[name] : undefined
    }
    resolved = node
  }
  return undefined
}

/** The value `pointer` (an Ajv instancePath) leads to in `data`, or undefined where it leads nowhere. */
export function valueAt (data: unknown, pointer: string): unknown {
  if (pointer === '') return data
  let node = data
  for (const segment of pointer.slice(1).split('/')) {
    if (node === null || typeof node !== 'object') return undefined
    const name = segmentName(segment)
    if (!Object.hasOwn(node, name)) return undefined
    node = (node as Record<string, unknown>)[name]
  }
  return node
}
