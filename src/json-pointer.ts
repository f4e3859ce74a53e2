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
