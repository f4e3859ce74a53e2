// A task schema's `default` values, checked against the schema they annotate.
//
// GET /api/tasks lists them, clients read them as the value a missing field gets,
// and a task registered with fill_defaults=True has the worker put them into its
// input after the schema check: a default its own schema refuses ("limit":
// {"type": "integer", "default": "10"}) would then reach the task unchecked, and is
// a bug in the task that would otherwise only show as a confused client. Ajv's strict
// mode does not look at `default`, so this does, at start and at each reload.

import { Ajv } from 'ajv'
import { pointerSegment } from './json-pointer.js'

/** The subschema keywords a default can hide under: a schema, an array of them, or a map of them. */
const ONE = ['additionalProperties', 'additionalItems', 'contains', 'propertyNames', 'if', 'then', 'else', 'items']
const MANY = ['allOf', 'anyOf', 'oneOf', 'items']
const MAP = ['properties', 'patternProperties', 'definitions', '$defs', 'dependencies']

/** Every `default` in a schema: where it is (a JSON pointer from the root) and its value. */
function defaultsIn (schema: unknown): Array<{ pointer: string, value: unknown }> {
  const found: Array<{ pointer: string, value: unknown }> = []
  const seen = new Set<unknown>()
  const visit = (node: unknown, pointer: string): void => {
    if (typeof node !== 'object' || node === null || Array.isArray(node) || seen.has(node)) return
    seen.add(node)
    const s = node as Record<string, unknown>
    if ('default' in s) found.push({ pointer, value: s.default })
    for (const key of ONE) visit(s[key], `${pointer}/${key}`)
    for (const key of MANY) if (Array.isArray(s[key])) (s[key] as unknown[]).forEach((sub, i) => visit(sub, `${pointer}/${key}/${i}`))
    for (const key of MAP) {
      const map = s[key]
      if (typeof map !== 'object' || map === null || Array.isArray(map)) continue
      for (const [name, sub] of Object.entries(map)) visit(sub, `${pointer}/${key}/${pointerSegment(name)}`)
    }
    // `not` is left out: a default there would describe a value the schema refuses.
  }
  visit(schema, '')
  return found
}

/** JSON pointers (from the schema's root) of every subschema that declares a `default`. */
export function defaultPointers (schema: unknown): string[] {
  return defaultsIn(schema).map((d) => d.pointer)
}


/**
 * Checks the defaults of many schemas (a task table's) with one Ajv, made on first
 * use: one per schema cost ~15 ms each at start-up and at every reload.
 */
export class DefaultsChecker {
  readonly #addKeywords: (ajv: Ajv) => void
  #ajv: Ajv | undefined
  #added = 0

  /** `addKeywords` adds pyfleet's own keywords to the Ajv used here. */
  constructor (addKeywords: (ajv: Ajv) => void) {
    this.#addKeywords = addKeywords
  }

  /**
   * Throws, naming the place and the reason, if a `default` in `schema` fails the
   * subschema it annotates. `schema` must already have compiled (the task registry
   * compiles it first).
   */
  check (schema: unknown): void {
    const defaults = defaultsIn(schema)
    if (defaults.length === 0) return
    if (this.#ajv === undefined) {
      this.#ajv = new Ajv({ strict: false, validateFormats: false })
      this.#addKeywords(this.#ajv)
    }
    // The schema is added under a key so that each subschema can be looked up by
    // pointer with the root's definitions in reach of its $refs.
    const id = (schema as { $id?: unknown }).$id
    const key = typeof id === 'string' ? id.replace(/#$/, '') : `pyfleet:task-schema:${++this.#added}`
    this.#ajv.addSchema(schema as object, typeof id === 'string' ? undefined : key)
    for (const { pointer, value } of defaults) {
      let validate
      try {
        // A URI fragment: Ajv decodes %-escapes in it, so each segment is encoded ("per%cent").
        validate = this.#ajv.getSchema(`${key}#${pointer.split('/').map(encodeURIComponent).join('/')}`)
      } catch {
        continue // a subschema Ajv cannot resolve on its own (under a nested $id): not checked
      }
      if (validate === undefined || validate(value) === true) continue
      const error = validate.errors?.[0]
      const where = error?.instancePath ?? ''
      const shown = JSON.stringify(value) ?? String(value)
      throw new Error(`the default at ${pointer === '' ? 'its root' : pointer} (${shown.length > 80 ? `${shown.slice(0, 80)}...` : shown}) fails its own schema: ${where === '' ? '' : `${where} `}${error?.message ?? 'is invalid'}`)
    }
  }
}

/** DefaultsChecker's check for a single schema. */
export function checkDefaults (schema: unknown, addKeywords: (ajv: Ajv) => void): void {
  new DefaultsChecker(addKeywords).check(schema)
}
