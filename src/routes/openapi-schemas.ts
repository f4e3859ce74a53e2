// A task's draft-07 schema as OpenAPI 3.1 components (JSON Schema 2020-12), in the view
// of each content type: what a JSON body can carry, what a JSON answer writes, what
// msgpack carries. openapi.ts puts them in the document.

import { isSchemaObject, mapSubschemas, walkSchemas } from '../schema-walk.js'
import { segmentName } from '../json-pointer.js'

type Json = Record<string, unknown>

/**
 * How a component is read: a JSON body, which cannot carry binary values (a `bytes` schema
 * matches nothing there); a JSON answer, which writes them as base64 strings; or msgpack,
 * where they are bins, which JSON Schema has no type for (the `x-pyfleet-bytes` extension).
 */
export type View = 'jsonBody' | 'jsonAnswer' | 'msgpack'

/** One task schema's references, resolved inside it: `#/...` pointers, `$id`s and `#anchor`s. */
class LocalRefs {
  readonly #root: unknown
  /** Each `$id` (and `$id` without a trailing `#`) and draft-07 anchor (`$id: "#name"`) -> its pointer in the schema. */
  readonly #places = new Map<string, string>()
  /**
   * Each subschema -> the pointer of the resource it is in: the nearest subschema with an
   * `$id` of its own (not an anchor) around it, or the root. A `#/...` reference resolves
   * from there, as Ajv resolves it.
   */
  readonly #resourceOf = new Map<object, string>()

  constructor (root: unknown) {
    this.#root = root
    const resources = ['']
    walkSchemas(root, (schema, pointer) => {
      if (typeof schema.$id === 'string') {
        this.#places.set(schema.$id, pointer)
        if (schema.$id.endsWith('#')) this.#places.set(schema.$id.slice(0, -1), pointer)
        if (!schema.$id.startsWith('#')) resources.push(pointer)
      }
      // Parents come before children: the longest resource pointer this one is under.
      const resource = resources.filter((at) => pointer === at || pointer.startsWith(`${at}/`)).reduce((a, b) => (b.length > a.length ? b : a))
      this.#resourceOf.set(schema, resource)
    })
  }

  /**
   * Where `ref`, written in `from`, points inside the schema ('' for its root), or undefined
   * for a reference outside it.
   */
  pointerOf (ref: string, from: object): string | undefined {
    const resource = this.#resourceOf.get(from) ?? ''
    if (ref === '#' || ref === '') return resource
    if (ref.startsWith('#/')) return `${resource}${ref.slice(1)}`
    const place = this.#places.get(ref)
    if (place !== undefined) return place
    const hash = ref.indexOf('#/')
    const base = hash > 0 ? this.#places.get(ref.slice(0, hash)) : undefined
    return base === undefined ? undefined : `${base}${ref.slice(hash + 1)}`
  }

  /** The subschema at a pointer pointerOf gave, if there is one. */
  at (pointer: string): unknown {
    let node: unknown = this.#root
    for (const segment of pointer.split('/').slice(1)) {
      if (node === null || typeof node !== 'object') return undefined
      node = (node as Json)[segmentName(segment)]
    }
    return node
  }

  /**
   * Whether `schema` says anything of binary values (the `bytes` keyword, true or false),
   * itself, in a subschema or in what its references point to.
   */
  mentionsBytes (schema: unknown, seen = new Set<string>()): boolean {
    let found = false
    walkSchemas(schema, (sub) => {
      if (found) return
      if ('bytes' in sub) found = true
      else if (typeof sub.$ref === 'string') {
        const pointer = this.pointerOf(sub.$ref, sub)
        if (pointer !== undefined && !seen.has(pointer)) {
          seen.add(pointer)
          found = this.mentionsBytes(this.at(pointer), seen)
        }
      }
    })
    return found
  }
}

/**
 * What schemaComponent carries down a schema: `hoisted` maps the place of each definition
 * given a component of its own (`/$defs/where`) to that component's name.
 */
interface Context { base: string, view: View, refs: LocalRefs, hoisted: ReadonlyMap<string, string> }

/** A definition at the top of a task's schema (`$defs` or draft-07's `definitions`), given a component of its own. */
interface Hoisted { container: '$defs' | 'definitions', key: string, schema: unknown }

/**
 * The definitions at the top of a task's schema that become components of their own. Kept
 * inside the task's component, openapi-typescript 7 typed `$defs` as a required property of
 * the input (so no body a client wrote compiled) and a reference into `definitions` as a
 * type that does not exist. A name a component cannot have stays where it is.
 */
function hoistable (schema: unknown): Hoisted[] {
  if (!isSchemaObject(schema)) return []
  const found: Hoisted[] = []
  const taken = new Set<string>()
  for (const container of ['$defs', 'definitions'] as const) {
    const held = schema[container]
    if (!isSchemaObject(held)) continue
    for (const [key, definition] of Object.entries(held)) {
      if (!/^[A-Za-z0-9._-]+$/.test(key) || taken.has(key)) continue
      taken.add(key)
      found.push({ container, key, schema: definition })
    }
  }
  return found
}

/** A `$ref` to `pointer` (a place in the task's schema) in the document: into a hoisted definition's component, or the task's. */
function refTo (pointer: string, context: Context): string {
  const [, container, key, ...rest] = pointer.split('/')
  const hoisted = key === undefined ? undefined : context.hoisted.get(`/${segmentName(container)}/${segmentName(key)}`)
  if (hoisted === undefined) return `${context.base}${pointer}`
  return `#/components/schemas/${hoisted}${rest.map((segment) => `/${segment}`).join('')}`
}

/**
 * A task's schema as a component of its own, in OpenAPI 3.1's dialect (JSON Schema
 * 2020-12) rather than Ajv's draft-07, which most OpenAPI tools would not read:
 * - local references (`#/definitions/...`, an `$id`'s URI, a `#anchor`) point into the
 *   component instead, and every `$id` goes: a document holds each once, and the output
 *   schema is in it twice (JSON and msgpack answers);
 * - draft-07's tuples (`items` as an array, `additionalItems`) become `prefixItems` and
 *   `items`, and its `dependencies` `dependentRequired` and `dependentSchemas`;
 * - pyfleet's own `bytes` keyword (a msgpack binary value) becomes `x-pyfleet-bytes`, with
 *   what it means in the component's view.
 */
function schemaComponent (schema: unknown, context: Context): unknown {
  if (!isSchemaObject(schema)) return schema
  const { view } = context
  const inner = (value: unknown): unknown => schemaComponent(value, context)
  if (schema.bytes === true && view === 'jsonBody') {
    // Nothing: `false` (generators type it `never`, so `anyOf: [string, bytes]` is a string
    // there), unless it holds definitions that references elsewhere point into.
    const held = Object.fromEntries(Object.entries(schema).filter(([key]) => key === 'definitions' || key === '$defs'))
    return Object.keys(held).length === 0 ? false : { not: {}, ...mapSubschemas(held, inner) }
  }
  const tuple = Array.isArray(schema.items)
  const out: Json = {}
  for (const [key, value] of Object.entries(mapSubschemas(schema, inner))) {
    // No $id (the document may hold each once), and no $schema: a draft-07 one beside the 2020-12
    // words made here (items: false for additionalItems) told a tool that honours it another schema.
    if (key === '$id' || key === '$schema') continue
    if (key === '$ref' && typeof value === 'string') {
      const pointer = context.refs.pointerOf(value, schema)
      out.$ref = pointer === undefined ? value : refTo(pointer, context)
    } else if (key === 'bytes' && typeof value === 'boolean') out['x-pyfleet-bytes'] = value
    else if (tuple && key === 'items') out.prefixItems = value
    else if (tuple && key === 'additionalItems') out.items = value
    else if (key === 'dependencies' && isSchemaObject(value)) {
      for (const [name, dependency] of Object.entries(value)) {
        const into = Array.isArray(dependency) ? 'dependentRequired' : 'dependentSchemas'
        out[into] = { ...(out[into] as Json | undefined), [name]: dependency }
      }
    } else out[key] = value
  }
  if (schema.bytes === true && view === 'jsonAnswer') Object.assign(out, { type: 'string', contentEncoding: 'base64' })
  if (view !== 'jsonBody') loosenOverBytes(schema, out, context.refs, view)
  else withoutFalseBranches(out)
  return out
}

/**
 * A JSON body's `anyOf` or `oneOf` without its `false` branches (bytes, which JSON cannot
 * carry): no value matches them, so the rest mean the same. Left in, some generators typed
 * `anyOf: [string, false]` as `unknown` (hey-api) and Redocly's linter refused the boolean
 * schema (a client developer's review). With every branch false, nothing matches at all.
 */
function withoutFalseBranches (out: Json): void {
  for (const key of ['anyOf', 'oneOf']) {
    const branches = out[key]
    if (!Array.isArray(branches) || !branches.includes(false)) continue
    const kept = branches.filter((branch) => branch !== false)
    if (kept.length > 0) out[key] = kept
    else {
      delete out[key]
      out.not = {}
    }
  }
}

/**
 * In a JSON answer a binary value is a base64 string, which no schema can tell from a
 * string; in msgpack it is a bin, which no JSON Schema type matches, and which a validator
 * that does not know `x-pyfleet-bytes` takes for anything (`{}`). Where a keyword would
 * have to tell bytes apart, those schemas say less, so that every answer still matches
 * them: a `not` or an `if`/`then`/`else` that speaks of bytes is left out, and a `oneOf`
 * with such a branch becomes an `anyOf` (`{"oneOf": [{"bytes": true}, {"type": "string"}]}`
 * would otherwise match no JSON answer at all, and `[{"bytes": true}, {"type": "integer"}]`
 * no msgpack integer). In JSON answers, `uniqueItems` over items that may be bytes goes
 * too (`b"a"` and `"YQ=="` are one string in JSON). A schema that lets binary values
 * through without saying `bytes` (`{"not": {"type": "string"}}`) is not loosened: declare them.
 */
function loosenOverBytes (schema: Json, out: Json, refs: LocalRefs, view: View): void {
  if (refs.mentionsBytes(schema.not)) delete out.not
  if (['if', 'then', 'else'].some((key) => refs.mentionsBytes(schema[key]))) for (const key of ['if', 'then', 'else']) delete out[key]
  if (view === 'jsonAnswer' && schema.uniqueItems === true && (refs.mentionsBytes(schema.items) || refs.mentionsBytes(schema.additionalItems))) delete out.uniqueItems
  if (Array.isArray(schema.oneOf) && schema.oneOf.some((branch) => refs.mentionsBytes(branch))) {
    const branches = out.oneOf
    delete out.oneOf
    if (out.anyOf === undefined) out.anyOf = branches
    else out.allOf = [...(Array.isArray(out.allOf) ? out.allOf : []), { anyOf: branches }]
  }
}

/**
 * A schema as components: `name` in the JSON view and, when the schema speaks of binary
 * values (which JSON reads otherwise), `<name>_msgpack` for msgpack bodies and answers.
 */
export function viewComponents (schema: unknown, name: string, jsonView: View): Json {
  const refs = new LocalRefs(schema)
  const definitions = hoistable(schema)
  // The task's component, then one per definition at its top (`<name>.<definition>`).
  const components = (componentName: string, view: View): Json => {
    const hoisted = new Map(definitions.map(({ container, key }) => [`/${container}/${key}`, `${componentName}.${key}`]))
    const context: Context = { base: `#/components/schemas/${componentName}`, view, refs, hoisted }
    const root = schemaComponent(schema, context)
    if (isSchemaObject(root)) {
      for (const { container, key } of definitions) delete (root[container] as Json)[key]
      for (const container of ['$defs', 'definitions']) if (isSchemaObject(root[container]) && Object.keys(root[container]).length === 0) delete root[container]
    }
    const out: Json = { [componentName]: root }
    for (const { key, schema: definition } of definitions) out[`${componentName}.${key}`] = schemaComponent(definition, context)
    return out
  }
  if (!refs.mentionsBytes(schema)) return components(name, jsonView)
  return { ...components(name, jsonView), ...components(`${name}_msgpack`, 'msgpack') }
}
