// Task schemas as Node checks them: Ajv set up for pyfleet (strict, the `bytes` keyword,
// a msgpack bin that is no object), the validators the table, the offload thread and
// VALIDATE_RESULTS compile, and Ajv's errors worded for clients (the deepest problem,
// what the schema allows). Also the input's top-level field names, for raw bodies.

import { _, Ajv, type CodeKeywordDefinition, type ErrorObject, type KeywordCxt, type ValidateFunction } from 'ajv'
import { patternEngine } from './pattern-engine.js'
import { ValidationError, withExtras } from './errors.js'
import { segmentName, valueAt } from './json-pointer.js'
import { shorten } from './short-text.js'
import { useLinearUniqueItems } from './unique-items.js'
import { useSetEnum } from './enum-keyword.js'
import { addStepKeyword, countingReferences, referencesToCount, refuseReferencesIntoData, withStepBudget } from './schema-cost.js'
import type { TaskInfo } from './pool/ready-message.js'
import { isSchemaObject, mapSubschemas, someSubschema, walkSchemas } from './schema-walk.js'

/** `coerceTypes`: false for bodies, which carry their own types; true for query-string options, which are strings. */
export function makeAjv (coerceTypes: boolean, allErrors = false): Ajv {
  // strict: a typo in a task's schema fails at start instead of silently accepting anything.
  // validateFormats off: no format plugin is bundled, so "format" is an annotation only.
  const ajv = new Ajv({ strict: true, coerceTypes, allErrors, validateFormats: false, useDefaults: false, code: { regExp: patternEngine } })
  addKeywords(ajv)
  return ajv
}


/**
 * The `bytes` keyword: a test written into the validator's own code, with words of its own
 * for the error (Ajv's would be "must pass "bytes" keyword validation"). As a function Ajv
 * calls, it made a 60-variant union 8 times slower to check: binaryIsNoObject puts
 * `"bytes": false` beside every object type.
 */
const bytesKeyword: CodeKeywordDefinition = {
  keyword: 'bytes',
  schemaType: 'boolean',
  code (cxt: KeywordCxt) {
    const { data, schema } = cxt
    cxt.fail(schema === true ? _`!(${data} instanceof Uint8Array)` : _`${data} instanceof Uint8Array`)
  },
  error: {
    message: ({ schema }) => schema === true ? 'must be binary (msgpack bin)' : 'must not be binary (msgpack bin)',
    params: ({ schema }) => _`{bytes: ${schema === true}}`
  }
}

export function addKeywords (ajv: Ajv): void {
  // {"bytes": true} matches binary values (msgpack bin, raw octet-stream bodies).
  ajv.addKeyword(bytesKeyword)
  // Ajv's own is quadratic over objects and arrays: a client's 229 KB body took 9 s.
  useLinearUniqueItems(ajv)
  // Ajv's own compares a value with every allowed one in turn.
  useSetEnum(ajv)
  addStepKeyword(ajv)
}

/**
 * `schema` as compiled for checking values: `"bytes": false` beside every `type` that allows
 * "object" and says nothing of bytes, because Ajv takes a binary value (a Buffer) for an
 * object: a msgpack bin where a task expects a map would pass an open object schema and
 * reach the task as bytes, and a result's bytes would pass an output schema's object. The
 * schema served (GET /api/tasks, OpenAPI) stays the task's own. Left as they are: `not` and
 * `if`, whose schemas are tests, where "no object" would turn into its opposite
 * (`not: {"type": "object"}` would let a bin through, which Ajv alone refuses, and `if`
 * would send one to `else`).
 */
export function binaryIsNoObject (schema: unknown): unknown {
  if (!isSchemaObject(schema)) return schema
  const out = mapSubschemas(schema, (inner, keyword) => keyword === 'not' || keyword === 'if' ? inner : binaryIsNoObject(inner))
  const { type } = out
  if ((type === 'object' || (Array.isArray(type) && type.includes('object'))) && !('bytes' in out)) out.bytes = false
  return out
}

export function compileChecking (ajv: Ajv, schema: TaskInfo['schema']): ValidateFunction {
  refuseAsync(schema)
  refuseReferencesIntoData(schema)
  const checked = binaryIsNoObject(schema) as TaskInfo['schema']
  // A schema that can recurse gets a budget per check (schema-cost.ts); the others need none.
  const { all, counted, manyPaths } = referencesToCount(schema)
  if (counted.size === 0) return ajv.compile(checked)
  return withStepBudget(ajv.compile(countingReferences(checked, counted) as TaskInfo['schema']), all, manyPaths)
}

/**
 * Refuses `$async`, which makes Ajv's validator return a promise: every check here is
 * synchronous, so an invalid body would pass and its rejection, with nobody waiting for it,
 * end the process. Here, where every validator is compiled (the table, the offload thread,
 * a worker's own output schema), so that none can be made.
 */
function refuseAsync (schema: unknown): void {
  walkSchemas(schema, (sub, pointer) => {
    if (Object.hasOwn(sub, '$async')) throw new Error(`"$async" at ${pointer === '' ? 'its root' : pointer} is not supported: pyfleet checks inputs and results synchronously; remove it`)
  })
}

/**
 * A validator for JSON and msgpack bodies of `schema`, as the table's validateBody, on
 * an Ajv of its own: the offload thread compiles the schemas it meets with it.
 */
export function compileBodyValidator (schema: TaskInfo['schema']): ValidateFunction {
  return compileChecking(makeAjv(false), schema)
}

/**
 * A validator of results for `schema` (a task's output schema), as the table's validateResult:
 * the offload thread's. All errors, not the first: VALIDATE_RESULTS is for a task's author,
 * who would otherwise mend one field per call.
 */
export function compileResultValidator (schema: NonNullable<TaskInfo['outputSchema']>): ValidateFunction {
  return compileChecking(makeAjv(false, true), schema)
}

/**
 * Result validators for a whole table, on one Ajv where sharing it changes nothing. Each new
 * Ajv compiles draft-07's meta-schema again (~6 ms): for a table of 300 output schemas, an Ajv
 * each was 1.8 s of start-up, and of each reload, with the event loop held. A schema with an
 * `$id` somewhere, or a reference out of itself, gets one of its own, as the offload thread
 * (and result-check.ts) compile every one: on a shared Ajv it could resolve against another
 * task's schema, and pass here what fails there.
 */
export class ResultValidators {
  #shared: Ajv | undefined

  compile (schema: NonNullable<TaskInfo['outputSchema']>): ValidateFunction {
    if (!selfContained(schema)) return compileResultValidator(schema)
    this.#shared ??= makeAjv(false, true)
    return compileChecking(this.#shared, schema)
  }
}

/** Whether a schema names no `$id` and refers only inside itself (`#/...`). */
export function selfContained (schema: unknown): boolean {
  return !someSubschema(schema, (sub) => Object.hasOwn(sub, '$id') || (typeof sub.$ref === 'string' && !sub.$ref.startsWith('#/') && sub.$ref !== '#'))
}

/** A validator for a raw body merged with its query-string options, as the table's validateRaw (coercing). */
export function compileRawValidator (schema: TaskInfo['schema']): ValidateFunction {
  return compileChecking(makeAjv(true), schema)
}

/**
 * The most errors an error's details list. A body's errors are few, but each failed branch
 * of a `oneOf` or `anyOf` adds its own, and a recursive schema's branches made 393,000
 * (an 82 MB answer) for a 355-byte body.
 */
export const MAX_DETAILS = 50

/**
 * Formats Ajv errors as Fastify does: "body/values/0 must be number". `data`: the value
 * checked, to say what Ajv's words leave out (a number it refused for being infinite).
 */
export function validationError (errors: ErrorObject[] | null | undefined, dataVar: string | ((instancePath: string) => string), schema?: unknown, data?: unknown): Error {
  const list = errors ?? []
  const first = mostSpecific(list)
  const place = typeof dataVar === 'string' ? (path: string) => `${dataVar}${path}` : dataVar
  const message = first === undefined ? `${place('')} is invalid` : `${place(first.instancePath)} ${explain(first, schema, data)}`
  return withExtras(new ValidationError(message), {
    // Cut as the message is: a 1 MB key a schema refuses came back whole in params.additionalProperty.
    details: list.slice(0, MAX_DETAILS).map((e) => ({ instancePath: shorten(e.instancePath, DETAIL_CHARS), keyword: e.keyword, params: shortParams(e.params), message: e.message }))
  })
}

/**
 * The error to name in the message: the one deepest in the value. Under anyOf/oneOf
 * Ajv reports every branch's first failure, then the summary; for ["sha512"] against
 * "a string, or an array of known names" the array branch's "/0 must be equal to one
 * of the allowed values" says what is wrong, the string branch's "must be string" does not.
 */
export function mostSpecific (errors: ErrorObject[]): ErrorObject | undefined {
  let best: ErrorObject | undefined
  for (const error of errors) {
    if (error.keyword === 'anyOf' || error.keyword === 'oneOf') continue
    if (best === undefined || depthOf(error.instancePath) > depthOf(best.instancePath)) best = error
  }
  return best ?? errors[0]
}

/** How many segments a JSON Pointer has, without splitting it (mostSpecific may see many errors). */
function depthOf (pointer: string): number {
  let depth = 0
  for (let at = pointer.indexOf('/'); at !== -1; at = pointer.indexOf('/', at + 1)) depth++
  return depth
}

/** An enum's values named in an error, at most: the whole list of a 300-value enum made a 9 KB message. */
const SHOWN_ENUM_VALUES = 20

/** A string in an error's details (a key, a place) is cut to this many characters. */
const DETAIL_CHARS = 200

/** Ajv's params with each string cut to DETAIL_CHARS: they may hold what the client sent (a property's name). */
function shortParams (params: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(params)) out[key] = typeof value === 'string' ? shorten(value, DETAIL_CHARS) : value
  return out
}

/** Patterns up to this long are shown beside the description that explains them. */
const SHORT_PATTERN_CHARS = 40

/**
 * Ajv's words for one error, and what they alone would leave out. A pattern is a regular
 * expression a client should not have to read: when the property has a description (the
 * task author's words, as GET /api/tasks/<name> shows them), that is said instead, with
 * the pattern beside it only when it is short.
 */
function explain (error: ErrorObject, schema: unknown, data: unknown): string {
  const infinite = error.keyword === 'type' && data !== undefined ? nonFiniteAt(data, error.instancePath) : undefined
  if (infinite !== undefined) {
    // Ajv's "must be number" for a number: JSON Schema's numbers are finite.
    const why = infinite === 'NaN' ? '' : ' (a JSON number past a double\'s range, such as 1e400, arrives as Infinity)'
    return `${error.message ?? 'is invalid'}: ${infinite} is not a number to JSON Schema${why}; send a finite one`
  }
  const description = error.keyword === 'pattern' ? describedAt(schema, error.instancePath) : undefined
  if (description !== undefined) {
    // A short pattern says what a description may not ("the user's name"); a long one is noise.
    const { pattern } = error.params as { pattern?: unknown }
    return `is not valid: ${description}${typeof pattern === 'string' && pattern.length <= SHORT_PATTERN_CHARS ? ` (must match pattern ${JSON.stringify(pattern)})` : ''}`
  }
  return `${error.message ?? 'is invalid'}${allowed(error)}`
}

/** "Infinity", "-Infinity" or "NaN" for such a number at `instancePath` in `data`; undefined for anything else. */
function nonFiniteAt (data: unknown, instancePath: string): string | undefined {
  const value = valueAt(data, instancePath)
  return typeof value === 'number' && !Number.isFinite(value) ? String(value) : undefined
}

/** The description the schema gives the value at instancePath (properties and items followed), if any. */
function describedAt (schema: unknown, instancePath: string): string | undefined {
  let node = schema
  for (const segment of instancePath.split('/').slice(1)) {
    if (typeof node !== 'object' || node === null) return undefined
    const key = segmentName(segment)
    const { properties, items } = node as { properties?: Record<string, unknown>, items?: unknown }
    if (typeof properties === 'object' && properties !== null && Object.hasOwn(properties, key)) node = properties[key]
    else if (/^\d+$/.test(key) && typeof items === 'object' && items !== null && !Array.isArray(items)) node = items
    else return undefined
  }
  const description = (node as { description?: unknown } | null)?.description
  return typeof description === 'string' && description !== '' ? description : undefined
}

/** What the message alone would leave out: an enum's values, the name of a property no schema allows, what a boolean is written as. */
function allowed (error: ErrorObject): string {
  const params = error.params as { allowedValues?: unknown[], additionalProperty?: unknown, type?: unknown }
  // A query string's booleans especially: 1, yes and on are not among them.
  if (error.keyword === 'type' && params.type === 'boolean') return ' (true or false)'
  if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    const values = params.allowedValues
    const shown = values.slice(0, SHOWN_ENUM_VALUES).map((v) => shorten(JSON.stringify(v) ?? String(v), 100)).join(', ')
    // The rest are in the task's schema, which GET /api/tasks/<name> shows.
    return values.length > SHOWN_ENUM_VALUES ? `: ${shown}, ... (${values.length} in all: see the task's schema)` : `: ${shown}`
  }
  if (error.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') return ` (${JSON.stringify(params.additionalProperty.slice(0, 100))})`
  return ''
}

/**
 * The property names a schema declares for its top-level object: its own `properties`,
 * and those of every subschema that applies to the same object (allOf, anyOf, oneOf,
 * if/then/else, and a local $ref such as "#/definitions/In"). Cycles are followed once.
 */
export function inputFields (schema: unknown): ReadonlySet<string> {
  const fields = new Set<string>()
  const seen = new Set<unknown>()
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return
    seen.add(node)
    const s = node as Record<string, unknown>
    if (typeof s.properties === 'object' && s.properties !== null) for (const name of Object.keys(s.properties)) fields.add(name)
    for (const key of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(s[key])) for (const sub of s[key] as unknown[]) visit(sub)
    for (const key of ['if', 'then', 'else']) visit(s[key])
    if (typeof s.$ref === 'string' && s.$ref.startsWith('#/')) {
      let target: unknown = schema
      for (const part of s.$ref.slice(2).split('/')) target = (target as Record<string, unknown> | undefined)?.[segmentName(part)]
      visit(target)
    }
  }
  visit(schema)
  return fields
}
