// A task schema's `default` and `examples` values, checked against the schema they
// annotate.
//
// GET /api/tasks lists them and the OpenAPI document publishes them: clients read a
// default as the value a missing field gets, and copy an example as a call that works
// (Swagger UI fills "Try it out" with the first). A task registered with
// fill_defaults=True also has the worker put its defaults into its input after the
// schema check: a default its own schema refuses ("limit": {"type": "integer",
// "default": "10"}) would then reach the task unchecked. Either is a bug in the task
// that would otherwise only show as a confused client. Ajv's strict mode looks at
// neither, so this does, at start and at each reload.

import { Ajv } from 'ajv'
import { pointerSegment } from './json-pointer.js'
import { patternEngine } from './pattern-engine.js'
import { someSubschema } from './schema-walk.js'

/** The subschema keywords a value can hide under: a schema, an array of them, or a map of them. */
const ONE = ['additionalProperties', 'additionalItems', 'contains', 'propertyNames', 'if', 'then', 'else', 'items']
const MANY = ['allOf', 'anyOf', 'oneOf', 'items']
const MAP = ['properties', 'patternProperties', 'definitions', '$defs', 'dependencies']

/** One value a schema states for itself: where (a JSON pointer from the root), which (`default`, `examples/0`...), and what. */
interface StatedValue {
  pointer: string
  keyword: string
  value: unknown
}

/** Every `default` and every item of `examples` in a schema. */
function valuesIn (schema: unknown): StatedValue[] {
  const found: StatedValue[] = []
  const seen = new Set<unknown>()
  const visit = (node: unknown, pointer: string): void => {
    if (typeof node !== 'object' || node === null || Array.isArray(node) || seen.has(node)) return
    seen.add(node)
    const s = node as Record<string, unknown>
    if ('default' in s) found.push({ pointer, keyword: 'default', value: s.default })
    // Not an array: Ajv's strict mode has already refused the schema.
    if (Array.isArray(s.examples)) s.examples.forEach((value, i) => found.push({ pointer, keyword: `examples/${i}`, value }))
    for (const key of ONE) visit(s[key], `${pointer}/${key}`)
    for (const key of MANY) if (Array.isArray(s[key])) (s[key] as unknown[]).forEach((sub, i) => visit(sub, `${pointer}/${key}/${i}`))
    for (const key of MAP) {
      const map = s[key]
      if (typeof map !== 'object' || map === null || Array.isArray(map)) continue
      for (const [name, sub] of Object.entries(map)) visit(sub, `${pointer}/${key}/${pointerSegment(name)}`)
    }
    // `not` is left out: a value there describes one the schema refuses.
  }
  visit(schema, '')
  return found
}

/** JSON pointers (from the schema's root) of every subschema that declares a `default`. */
export function defaultPointers (schema: unknown): string[] {
  return valuesIn(schema).filter((v) => v.keyword === 'default').map((v) => v.pointer)
}

/** JSON pointers, each with its keyword (`/properties/a/examples/0`), of every example a schema gives. */
export function examplePointers (schema: unknown): string[] {
  return valuesIn(schema).filter((v) => v.keyword !== 'default').map((v) => `${v.pointer}/${v.keyword}`)
}

/**
 * Checks the defaults and examples of many schemas (a task table's) with one Ajv, made
 * on first use: one per schema cost ~15 ms each at start-up and at every reload.
 */
export class AnnotationChecker {
  readonly #addKeywords: (ajv: Ajv) => void
  #ajv: Ajv | undefined
  #added = 0

  /** `addKeywords` adds pyfleet's own keywords to the Ajv used here. */
  constructor (addKeywords: (ajv: Ajv) => void) {
    this.#addKeywords = addKeywords
  }

  /**
   * Throws, naming the place and the reason, if a `default` or an example in `schema`
   * fails the subschema it annotates. `schema` must already have compiled (the task
   * registry compiles it first).
   */
  check (schema: unknown): void {
    const values = valuesIn(schema)
    if (values.length === 0) return
    const id = (schema as { $id?: unknown }).$id
    // The schema is added under a key so that each subschema can be looked up by
    // pointer with the root's definitions in reach of its $refs. A schema that names an
    // $id anywhere gets an Ajv of its own: two with one $id (a task's input and output
    // sharing a part, or two tasks') cannot be added to one.
    const key = typeof id === 'string' ? id.replace(/#$/, '') : `pyfleet:task-schema:${++this.#added}`
    const ajv = someSubschema(schema, (sub) => Object.hasOwn(sub, '$id')) ? this.#newAjv() : (this.#ajv ??= this.#newAjv())
    ajv.addSchema(schema as object, typeof id === 'string' ? undefined : key)
    for (const { pointer, keyword, value } of values) {
      let validate
      try {
        // A URI fragment: Ajv decodes %-escapes in it, so each segment is encoded ("per%cent").
        validate = ajv.getSchema(`${key}#${pointer.split('/').map(encodeURIComponent).join('/')}`)
      } catch {
        continue // a subschema Ajv cannot resolve on its own (under a nested $id): not checked
      }
      if (validate === undefined || validate(value) === true) continue
      const error = validate.errors?.[0]
      const where = error?.instancePath ?? ''
      const shown = JSON.stringify(value) ?? String(value)
      const what = keyword === 'default' ? 'the default' : `example ${keyword.slice('examples/'.length)}`
      throw new Error(`${what} at ${pointer === '' ? 'its root' : pointer} (${shown.length > 80 ? `${shown.slice(0, 80)}...` : shown}) fails its own schema: ${where === '' ? '' : `${where} `}${error?.message ?? 'is invalid'}`)
    }
  }

  #newAjv (): Ajv {
    // The same engine for patterns as the checks of clients' values, so that both read a pattern alike.
    const ajv = new Ajv({ strict: false, validateFormats: false, code: { regExp: patternEngine } })
    this.#addKeywords(ajv)
    return ajv
  }
}

/** AnnotationChecker's check for a single schema. */
export function checkAnnotations (schema: unknown, addKeywords: (ajv: Ajv) => void): void {
  new AnnotationChecker(addKeywords).check(schema)
}
