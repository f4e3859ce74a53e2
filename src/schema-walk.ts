// One level of a JSON Schema's structure, for code that rewrites schemas (the checked
// form of task-registry.ts, the OpenAPI document's forms): which keywords hold schemas,
// which hold data (an `enum` value shaped like a schema is not one), and which map names
// to schemas (a property may be called "bytes", "type" or "$ref").

import { pointerSegment } from './json-pointer.js'

type Schema = Record<string, unknown>

/** Keywords whose values are data, never schemas. */
export const DATA_KEYWORDS: ReadonlySet<string> = new Set(['enum', 'const', 'default', 'examples'])
/** Keywords whose values map names to schemas. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs'])

function mapValues (map: object, each: (value: unknown) => unknown): Schema {
  return Object.fromEntries(Object.entries(map).map(([name, value]) => [name, each(value)]))
}

/**
 * A copy of `schema` (an object schema) whose every direct subschema is `each(subschema,
 * keyword)`: under `allOf`, `items`, `not`, `properties`' values, draft-07's
 * `dependencies` (the schemas among its values; lists of names are kept)... Data keywords
 * and scalar values are copied as they are.
 */
export function mapSubschemas (schema: Schema, each: (subschema: unknown, keyword: string) => unknown): Schema {
  const out: Schema = {}
  for (const [key, value] of Object.entries(schema)) {
    if (DATA_KEYWORDS.has(key) || value === null || typeof value !== 'object') out[key] = value
    else if (Array.isArray(value)) out[key] = value.map((inner) => each(inner, key))
    else if (SCHEMA_MAPS.has(key)) out[key] = mapValues(value, (inner) => each(inner, key))
    else if (key === 'dependencies') out[key] = mapValues(value, (inner) => Array.isArray(inner) ? inner : each(inner, key))
    else out[key] = each(value, key)
  }
  return out
}

/** The schema is an object with keywords (not `true`, `false` or a non-schema). */
export function isSchemaObject (schema: unknown): schema is Schema {
  return schema !== null && typeof schema === 'object' && !Array.isArray(schema)
}

/** Whether `test` holds for `schema` or any subschema in it. */
export function someSubschema (schema: unknown, test: (schema: Schema) => boolean): boolean {
  let found = false
  walkSchemas(schema, (sub) => { found ||= test(sub) })
  return found
}

/**
 * Calls `visit` with `schema` and every subschema in it, each with its JSON Pointer from
 * `schema` (the root's is ''), parents before children.
 */
export function walkSchemas (schema: unknown, visit: (schema: Schema, pointer: string) => void, pointer = ''): void {
  if (!isSchemaObject(schema)) return
  visit(schema, pointer)
  for (const [key, value] of Object.entries(schema)) {
    if (DATA_KEYWORDS.has(key) || value === null || typeof value !== 'object') continue
    if (Array.isArray(value)) value.forEach((inner, index) => { walkSchemas(inner, visit, `${pointer}/${key}/${index}`) })
    else if (SCHEMA_MAPS.has(key) || key === 'dependencies') {
      for (const [name, inner] of Object.entries(value)) walkSchemas(inner, visit, `${pointer}/${key}/${pointerSegment(name)}`)
    } else walkSchemas(value, visit, `${pointer}/${key}`)
  }
}
