// A budget for checking one value against a schema that refers to itself. Ajv checks
// each branch of a `oneOf`, `anyOf` or `allOf` (and each matching `patternProperties`
// pattern) on its own, so a recursive schema whose branches each descend into the same
// data before one fails costs time exponential in the data's depth: OpenAPI's
// polymorphism (`oneOf` of `allOf: [{"$ref": base}, {kind: const}]`) took 9.6 s over a
// 479-byte body 16 levels deep, the event loop and /health held all along, and the errors
// its branches collect made an 82 MB answer. Every recursion passes a `$ref`, so each
// subschema holding one is counted as it is entered, weighed by the size of the value it
// is entered with (a 15 KB key tested against patterns at each step costs more than a
// number); past the budget the check stops, and the value is refused as too costly to check.

import type { Ajv, ErrorObject, ValidateFunction } from 'ajv'
import { isSchemaObject, mapSubschemas, someSubschema } from './schema-walk.js'

/** The keyword put beside each `$ref` of a schema compiled for checking (never served). */
const STEP_KEYWORD = 'x-pyfleet-step'

/**
 * Steps (references followed, each weighed by its value: weightOf) in one check before the
 * value's own weight is counted, and then per unit of it: a value that needs more is
 * refused. A step takes ~200 ns to ~1 µs: the base is 40-200 ms of Node's time. A schema
 * that follows its references a few times per value stays far inside it: a 16 MiB body of
 * a million values may take 64 million.
 */
export const BASE_STEPS = 200_000
export const STEPS_PER_VALUE = 64

/** Thrown through Ajv's code when a check runs out of steps; caught by the validator's wrapper. */
class OutOfSteps extends Error {}

/** The check running now (checks are synchronous: one at a time per thread). */
let steps = 0
let limit = Infinity
let root: unknown
let valuesCounted = false

function step (_schema: boolean, data: unknown): boolean {
  steps += weightOf(data)
  if (steps <= limit) return true
  if (!valuesCounted) {
    // Only a check this long weighs the whole value: the others never walk it.
    valuesCounted = true
    limit = BASE_STEPS + STEPS_PER_VALUE * weightOfAll(root)
    if (steps <= limit) return true
  }
  throw new OutOfSteps()
}

/**
 * What checking `value` itself (not what it holds) may cost, roughly, in steps: 1, and a
 * unit per 64 characters of a string or a key (patterns test them), per key of an object
 * and per 16 items of an array (the schema at hand goes through them).
 */
export function weightOf (value: unknown): number {
  if (typeof value === 'string') return 1 + (value.length >>> 6)
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return 1
  if (Array.isArray(value)) return 1 + (value.length >>> 4)
  let weight = 1
  for (const key in value) weight += 1 + (key.length >>> 6)
  return weight
}

/** The weight of `value` and of every value in it. */
export function weightOfAll (value: unknown): number {
  let weight = 0
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const next = stack.pop()
    weight += weightOf(next)
    if (next === null || typeof next !== 'object' || next instanceof Uint8Array) continue
    if (Array.isArray(next)) for (const item of next) stack.push(item)
    else for (const key in next) stack.push((next as Record<string, unknown>)[key])
  }
  return weight
}

/** Makes the step keyword known to `ajv`, checked before `$ref` so that a failing reference counts too. */
export function addStepKeyword (ajv: Ajv): void {
  ajv.addKeyword({ keyword: STEP_KEYWORD, schemaType: 'boolean', before: '$ref', validate: step })
}

/** Whether `schema` holds a `$ref` anywhere: only such a schema can recurse. */
export function refersToItself (schema: unknown): boolean {
  return someSubschema(schema, (sub) => typeof sub.$ref === 'string')
}

/** A copy of `schema` with the step keyword beside every `$ref`. */
export function countingReferences (schema: unknown): unknown {
  if (!isSchemaObject(schema)) return schema
  const out = mapSubschemas(schema, (inner) => countingReferences(inner))
  if (typeof out.$ref === 'string') out[STEP_KEYWORD] = true
  return out
}

/**
 * `validate` (compiled from a `countingReferences` schema) with a budget for each call: a
 * value past it is refused with one error of its own, keyword "cost", instead of Ajv's.
 */
export function withStepBudget (validate: ValidateFunction): ValidateFunction {
  const budgeted = function (data: unknown): boolean {
    const outer = { steps, limit, root, valuesCounted }
    steps = 0
    limit = BASE_STEPS
    root = data
    valuesCounted = false
    try {
      const valid = validate(data)
      budgeted.errors = validate.errors
      return valid
    } catch (error) {
      if (!(error instanceof OutOfSteps)) throw error
      budgeted.errors = [tooCostly(limit)]
      return false
    } finally {
      ({ steps, limit, root, valuesCounted } = outer)
    }
  } as ValidateFunction
  budgeted.schema = validate.schema
  budgeted.errors = null
  return budgeted
}

function tooCostly (limit: number): ErrorObject {
  return {
    keyword: 'cost',
    instancePath: '',
    schemaPath: '#',
    params: { limit },
    message: `is too costly to check: it took more than ${limit} steps, the most allowed for a value of its size (the schema tries branches that each go down into the same data, which costs time exponential in the data's depth); send a shallower value, or ask the task's author to make the schema choose one branch before it goes down`
  }
}
