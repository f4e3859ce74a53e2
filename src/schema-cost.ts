// A budget for checking one value against a schema that refers to itself. Ajv checks
// each branch of a `oneOf`, `anyOf` or `allOf` (and each matching `patternProperties`
// pattern) on its own, so a recursive schema whose branches each go down into the same
// data before one fails costs time exponential in the data's depth: OpenAPI's
// polymorphism (`oneOf` of `allOf: [{"$ref": base}, {kind: const}]`) took 9.6 s over a
// 479-byte body 16 levels deep, the event loop and /health held all along, and the errors
// its branches collect made an 82 MB answer. Every recursion passes a `$ref` that leads
// back to itself, so each subschema holding one is counted as it is entered (a step). A
// schema without such a cycle costs time exponential in its own size at most (a chain of
// definitions each referring twice to the next), not in the data's: it is counted when
// some `$ref` of it can be reached along more than MAX_PATHS paths, and is otherwise
// checked as Ajv alone checks it. The budget of steps grows with the value's size and with
// the schema's references (a schema of 100 variants enters each value through ~200 of
// them, legitimately). A step costs little, unless what it checks again is large (a
// 100 KB string under a maxLength or a pattern; one test of `[0-9a-f]{500}` over 20 KB
// takes ~100 ms): a time limit, read at every step, catches that. Past either, the check
// stops and the value is refused as too costly to check. Weighing each step by its value
// instead made a legitimate 60-variant union 4 times slower to check than Ajv alone.

import { _, type Ajv, type ErrorObject, type KeywordCxt, type ValidateFunction } from 'ajv'
import { walkSchemas } from './schema-walk.js'
import { MAX_PATHS } from './counted-references.js'

// Which `$ref`s count as steps (counted-references.ts): re-exported, so that the budget's callers import from here alone.
export { MAX_PATHS, referencesToCount, refuseReferencesIntoData } from './counted-references.js'

/** The keyword put beside each `$ref` of a schema compiled for checking (never served). */
const STEP_KEYWORD = 'x-pyfleet-step'

/**
 * Steps in one check before the value is weighed (weightOfAll), and then per unit of its
 * weight and per `$ref` in the schema: a value that needs more is refused. The base is
 * ~10-40 ms of Node's time when the steps check little. A schema that enters each value
 * once through each of its references, as one without exponential shapes does, takes at
 * most its weight times its references.
 */
export const BASE_STEPS = 200_000
const STEPS_PER_VALUE_AND_REFERENCE = 4

/**
 * The time net: a check past BASE_MS, and past TIME_PER_WEIGHT_MS per unit of its value's
 * weight, is refused whatever its steps, if the process has also used half that time of
 * CPU meanwhile: a check slowed down by other processes on the same core (a review saw a
 * legitimate one go from 157 to 273 ms) is not refused for it. A body under
 * OFFLOAD_MIN_BYTES, checked on the event loop, weighs at most ~100,000 units: 0.5 s, against
 * ~0.1 s that checking such a body legitimately takes at most; 16 MiB of JSON values, ~4
 * million units, are allowed 20 s on the offload thread for the ~1 s they take.
 */
const BASE_MS = 500
const TIME_PER_WEIGHT_MS = 0.005

/** Thrown through Ajv's code when a check runs out of steps or time; caught by the validator's wrapper. */
class OutOfSteps extends Error {}

/** The check running now (checks are synchronous: one at a time per thread). */
interface Check {
  steps: number
  limit: number
  references: number
  root: unknown
  weight: number | undefined
  startedAt: number
  /** process.cpuUsage() when the check started, and when (performance.now()) it was last read past the time limit. */
  cpuAtStart: NodeJS.CpuUsage | undefined
  cpuReadAt: number
  timeLimitMs: number
  /** What another keyword keeps for the length of this check (checkMemo). */
  memo: unknown
}
const idle: Check = { steps: 0, limit: Infinity, references: 1, root: undefined, weight: undefined, startedAt: 0, cpuAtStart: undefined, cpuReadAt: 0, timeLimitMs: Infinity, memo: undefined }

/**
 * What a keyword keeps for the length of the check running now (made by `make` at its
 * first use), or undefined when no check with a budget runs. One kind of memo per process:
 * uniqueItems' ContainerIds.
 */
export function checkMemo<T> (make: () => T): T | undefined {
  const now = check
  if (now === idle) return undefined
  now.memo ??= make()
  return now.memo as T
}
let check: Check = idle

function step (): void {
  chargeSteps(1)
}

/**
 * Counts `units` of work against the check running now, if it has a budget: a step, or
 * the items another keyword has just gone through (uniqueItems' keys, which a recursive
 * schema may build again at every level, between two steps). Throws past the budget.
 */
export function chargeSteps (units: number): void {
  const now = check
  if (now === idle) return
  now.steps += units
  if (now.steps > now.limit && now.limit === BASE_STEPS) {
    // Only a check this long weighs the whole value (or one the time net has weighed): the others never walk it.
    now.limit = BASE_STEPS + STEPS_PER_VALUE_AND_REFERENCE * now.references * weightOfCheck(now)
  }
  if (now.steps > now.limit) throw new OutOfSteps()
  if (performance.now() - now.startedAt > now.timeLimitMs) pastTimeLimit(now)
}

/** The clock is past the check's time limit: refused if the process used CPU for half of it (a step can be long). */
function pastTimeLimit (now: Check): void {
  if (now.timeLimitMs === BASE_MS) {
    now.timeLimitMs = Math.max(BASE_MS, TIME_PER_WEIGHT_MS * weightOfCheck(now))
    if (performance.now() - now.startedAt <= now.timeLimitMs) return
  }
  // The check's own CPU time is not to be had in Node 20 (process.threadCpuUsage is 23.9's);
  // the process's counts every thread, which may refuse sooner, never later. Read at most
  // every 10 ms: it is a system call, and steps may be short.
  const clock = performance.now()
  if (clock - now.cpuReadAt < 10) return
  now.cpuReadAt = clock
  const used = process.cpuUsage(now.cpuAtStart)
  if ((used.user + used.system) / 1000 >= now.timeLimitMs / 2) throw new OutOfSteps()
}

function weightOfCheck (now: Check): number {
  now.weight ??= weightOfAll(now.root)
  return now.weight
}

/**
 * The size of `value` itself, as what checking it may cost: 1, a unit per key of an object
 * and per item of an array (the schema at hand goes through them), and a unit per 16
 * characters of a key or of a string it holds directly (patterns and lengths test them).
 */
export function weightOf (value: unknown): number {
  if (typeof value === 'string') return 1 + (value.length >>> 4)
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return 1
  if (Array.isArray(value)) {
    let weight = 1 + value.length
    for (const item of value) if (typeof item === 'string') weight += item.length >>> 4
    return weight
  }
  let weight = 1
  for (const key in value) {
    const inner = (value as Record<string, unknown>)[key]
    weight += 1 + (key.length >>> 4) + (typeof inner === 'string' ? inner.length >>> 4 : Array.isArray(inner) ? inner.length : 0)
  }
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

/**
 * Makes the step keyword known to `ajv`: a call to step() written into the validator's code
 * (as a function Ajv calls and reads errors from, every step cost several times more), before
 * `$ref`, so that a failing reference counts too.
 */
export function addStepKeyword (ajv: Ajv): void {
  ajv.addKeyword({
    keyword: STEP_KEYWORD,
    schemaType: 'boolean',
    before: '$ref',
    code (cxt: KeywordCxt) { cxt.gen.code(_`${cxt.gen.scopeValue('func', { ref: step })}()`) }
  })
}

/** A copy of `schema` with the step keyword beside each `$ref` at one of `places`. */
export function countingReferences (schema: unknown, places: ReadonlySet<string>): unknown {
  const copy = structuredClone(schema)
  walkSchemas(copy, (sub, at) => { if (places.has(at)) sub[STEP_KEYWORD] = true })
  return copy
}

/**
 * `validate` (compiled from a `countingReferences` schema of `references` references in
 * all) with a budget for each call: a value past it is refused with one error of its own,
 * keyword "cost", instead of Ajv's. `manyPaths`: the schema reaches a reference along more
 * than MAX_PATHS paths, which the error then names as the cause.
 */
export function withStepBudget (validate: ValidateFunction, references: number, manyPaths = false): ValidateFunction {
  const budgeted = function (data: unknown): boolean {
    const outer = check
    check = { steps: 0, limit: BASE_STEPS, references, root: data, weight: undefined, startedAt: performance.now(), cpuAtStart: process.cpuUsage(), cpuReadAt: 0, timeLimitMs: BASE_MS, memo: undefined }
    try {
      const valid = validate(data)
      budgeted.errors = validate.errors
      return valid
    } catch (error) {
      if (!(error instanceof OutOfSteps)) throw error
      budgeted.errors = [tooCostly(check, manyPaths)]
      return false
    } finally {
      check = outer
    }
  } as ValidateFunction
  budgeted.schema = validate.schema
  budgeted.errors = null
  return budgeted
}

/** Whether `error` (a validation error, as schema-compile.ts words it) refused a value as too costly to check. */
export function isTooCostly (error: unknown): boolean {
  const details = (error as { details?: unknown } | null)?.details
  return Array.isArray(details) && (details[0] as { keyword?: unknown } | undefined)?.keyword === COST_KEYWORD
}

/** The keyword of the one error a value too costly to check gets. */
const COST_KEYWORD = 'cost'

function tooCostly (stopped: Check, manyPaths: boolean): ErrorObject {
  const past = stopped.steps > stopped.limit ? `it took more than ${stopped.limit} steps` : `it took more than ${Math.round(stopped.timeLimitMs)} ms`
  // A schema that multiplies its own paths costs as much for a flat value: the task's schema is to change, not the value.
  const why = manyPaths
    ? `the schema reaches one of its references along more than ${MAX_PATHS} paths, which costs time exponential in the schema's own size, not in the value's); the task's schema needs fewer paths to each definition`
    : 'the schema tries branches that each go down into the same data, which costs time exponential in the data\'s depth); make the value shallower, or the schema choose one branch before it goes down'
  return {
    keyword: COST_KEYWORD,
    instancePath: '',
    schemaPath: '#',
    params: { limit: stopped.limit },
    message: `is too costly to check: ${past}, the most allowed for a value of its size (${why}`
  }
}
