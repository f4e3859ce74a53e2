// JSON Schema's `uniqueItems` in linear time. Ajv's own compares every pair of items with
// a deep equality when the items may be objects or arrays (any `items` schema without a
// scalar `type`): a 229 KB body of 20,000 small objects held the event loop for 9 s, and
// the offload thread would take hours over a 16 MiB one. Here each item is written once
// as a canonical key (object keys sorted, types told apart) and the keys go into a Map,
// so that two items are the same exactly when JSON Schema says they are: as fast-deep-equal,
// Ajv's equality, says, but for objects with a `constructor` or `valueOf` key (which it took
// for different, or threw on) and binary values (which it compared as UTF-8 text).

import type { Ajv, AnySchemaObject, ErrorObject, FuncKeywordDefinition } from 'ajv'
import { chargeSteps, checkMemo } from './schema-cost.js'

/**
 * A string that is the same for two values exactly when they are equal as JSON Schema (and
 * Ajv) compares them: numbers by value (`-0` is `0`, NaN equals NaN, as fast-deep-equal
 * has it), object keys in any order, binary values (msgpack bin) by their bytes. `part`
 * writes the values an object or array holds (ContainerIds gives each of those an id).
 */
export function canonicalKey (value: unknown, part: (inner: unknown) => string = canonicalKey): string {
  switch (typeof value) {
    case 'string': return JSON.stringify(value)
    // String(-0) is "0"; NaN and the infinities (msgpack floats) keep names of their own.
    case 'number': return String(value)
    case 'boolean': return value ? 't' : 'f'
    case 'undefined': return 'u'
    case 'bigint': return `${value}n`
    case 'object': break
    default: return `?${String(value)}`
  }
  if (value === null) return 'z'
  if (value instanceof Uint8Array) return `b${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}`
  if (value instanceof Date) return `d${value.getTime()}`
  if (Array.isArray(value)) {
    let key = '['
    for (let i = 0; i < value.length; i++) key += (i === 0 ? '' : ',') + part(value[i])
    return `${key}]`
  }
  const record = value as Record<string, unknown>
  let key = '{'
  let first = true
  for (const name of Object.keys(record).sort()) {
    key += `${first ? '' : ','}${JSON.stringify(name)}:${part(record[name])}`
    first = false
  }
  return `${key}}`
}

/**
 * A value's key: numbers and booleans are their own (a Map compares numbers as
 * SameValueZero: NaN is NaN, -0 is 0), strings tagged so that 1 and "1" differ, objects
 * and arrays their canonical key, whose building is counted against a check with a
 * budget (schema-cost.ts), if one runs.
 */
export function keyOf (item: unknown): unknown {
  if (typeof item === 'string') return `s${item}`
  if (typeof item !== 'object' && typeof item !== 'undefined') return item
  const key = canonicalKey(item)
  chargeSteps(1 + (key.length >>> 4))
  return key
}

/** An object or array, which ContainerIds gives an id (binary values and dates are keyed as scalars are). */
function isContainer (value: unknown): value is object {
  return value !== null && typeof value === 'object' && !(value instanceof Uint8Array) && !(value instanceof Date)
}

/**
 * Ids for the objects and arrays of one check, equal exactly when their canonical keys are:
 * each is keyed once, from its own keys and the ids of what it holds, so that a
 * `uniqueItems` at every level of a recursive schema does not key everything below it
 * again (98 levels over 21,000 leaves took 1.2 s that way). Kept for one check only
 * (schema-cost.ts's checkMemo): ids from two checks mean nothing to each other.
 */
class ContainerIds {
  readonly #ids = new WeakMap<object, number>()
  readonly #interned = new Map<string, number>()

  /** `item`'s key for a Map of items: as keyOf's, but an object or array is `#` and its id. */
  keyOf (item: unknown): unknown {
    return isContainer(item) ? this.#part(item) : keyOf(item)
  }

  readonly #part = (value: unknown): string => {
    if (!isContainer(value)) return canonicalKey(value)
    let id = this.#ids.get(value)
    if (id === undefined) {
      const key = canonicalKey(value, this.#part)
      chargeSteps(1 + (key.length >>> 4))
      id = this.#interned.get(key)
      if (id === undefined) {
        id = this.#interned.size
        this.#interned.set(key, id)
      }
      this.#ids.set(value, id)
    }
    return `#${id}`
  }
}

/**
 * The pair of equal items Ajv names, as { i, j }, or undefined when all differ. Ajv looks
 * from the end: where `items` declares only scalar types (`scalarTypes`), for the last item
 * that has an equal one after it (i), and that next one (j), leaving out items of other
 * types (which `items` refuses anyway); otherwise for the last item that has an equal one
 * before it (i), and the nearest of those (j).
 */
export function duplicatePair (items: readonly unknown[], scalarTypes?: readonly string[]): { i: number, j: number } | undefined {
  const seen = new Map<unknown, number>()
  // Within a check that has a budget (a recursive schema), containers are keyed once for the whole check.
  const ids = checkMemo(() => new ContainerIds())
  const itemKey = ids === undefined ? keyOf : (item: unknown): unknown => ids.keyOf(item)
  if (scalarTypes !== undefined) {
    for (let i = items.length - 1; i >= 0; i--) {
      if (!scalarTypes.some((type) => isOfType(items[i], type))) continue
      const key = itemKey(items[i])
      const j = seen.get(key)
      if (j !== undefined) return { i, j }
      seen.set(key, i)
    }
    return undefined
  }
  let pair: { i: number, j: number } | undefined
  for (let i = 0; i < items.length; i++) {
    const key = itemKey(items[i])
    const j = seen.get(key)
    if (j !== undefined) pair = { i, j }
    seen.set(key, i)
  }
  return pair
}

/** The types `items` declares when none of them is object or array (Ajv's cue for the order it looks in), or undefined. */
function scalarTypesOf (items: unknown): string[] | undefined {
  if (items === null || typeof items !== 'object' || Array.isArray(items)) return undefined
  const { type } = items as { type?: unknown }
  const types = typeof type === 'string' ? [type] : Array.isArray(type) ? type.filter((t): t is string => typeof t === 'string') : []
  return types.length > 0 && !types.some((t) => t === 'object' || t === 'array') ? types : undefined
}

/** Whether `value` is of JSON Schema's scalar `type`, as Ajv's strict numbers have it (no NaN or infinities). */
function isOfType (value: unknown, type: string): boolean {
  switch (type) {
    case 'string': return typeof value === 'string'
    case 'number': return typeof value === 'number' && Number.isFinite(value)
    case 'integer': return Number.isInteger(value)
    case 'boolean': return typeof value === 'boolean'
    case 'null': return value === null
    default: return false
  }
}

function checkUnique (unique: boolean, data: unknown[], parentSchema?: AnySchemaObject): boolean {
  if (!unique) return true
  const pair = duplicatePair(data, scalarTypesOf((parentSchema as { items?: unknown } | undefined)?.items))
  if (pair === undefined) return true
  const { i, j } = pair
  // Ajv's own words and params, so that clients see what they saw before.
  checkUnique.errors = [{ keyword: 'uniqueItems', message: `must NOT have duplicate items (items ## ${j} and ${i} are identical)`, params: { i, j } }]
  return false
}
checkUnique.errors = [] as Array<Partial<ErrorObject>>

const uniqueItems: FuncKeywordDefinition = { keyword: 'uniqueItems', type: 'array', schemaType: 'boolean', errors: true, validate: checkUnique }

/** Puts the linear `uniqueItems` in place of Ajv's own in `ajv`. */
export function useLinearUniqueItems (ajv: Ajv): void {
  ajv.removeKeyword('uniqueItems')
  ajv.addKeyword(uniqueItems)
}
