// VALIDATE_RESULTS: a task's result checked against the output schema it declares,
// before it is answered. A value the schema refuses becomes an error reply of the
// server's own kind (KIND_INVALID_RESULT), which the pool settles as a 500
// RESULT_INVALID and the log records, as it does an exception. Used on the event loop
// (call-run.ts) and on the offload thread for large replies (offload/jobs.ts), so both
// paths refuse the same values with the same words.

import type { ValidateFunction } from 'ajv'
import { segmentName } from '../json-pointer.js'
import { validateSwapped } from '../routes/big-integers.js'
import { compileResultValidator, MAX_DETAILS, mostSpecific, validationError } from '../schema-compile.js'
import type { PoolTask } from './call.js'
import { KIND_INVALID_RESULT, MSG_ERROR, type ErrorMessage, type ResultMessage } from './protocol.js'
import type { TaskInfo } from './ready-message.js'

/**
 * The reply itself if `validate` accepts its value; otherwise the error reply that says why:
 * the first problem, with the JSON type found where a type was wrong (`got null`), and how
 * many more `details` lists (paths and keywords, no values; a path holds the keys on the way).
 */
export function checkedResult (reply: ResultMessage, validate: ValidateFunction): ResultMessage | ErrorMessage {
  if (validateSwapped(reply.value, validate, asJsonReads)) return reply
  // Every error is collected (for the author's one round trip), but a million-item list of
  // wrong values would make a 100 MB answer and a log line too large to write: the first
  // MAX_DETAILS are kept. anyOf/oneOf summaries repeat their branches' errors: not counted.
  const errors = (validate.errors ?? []).filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf')
  const listed = errors.slice(0, MAX_DETAILS)
  const error = validationError(listed, 'result', validate.schema) as Error & { details?: unknown }
  // The error the message names (validationError's choice among those listed).
  const first = mostSpecific(listed)
  const got = first?.keyword === 'type' ? ` (got ${jsonTypeAt(reply.value, first.instancePath)})` : ''
  const more = errors.length <= 1 ? '' : `; ${errors.length - 1} more${errors.length > MAX_DETAILS ? ` (details lists the first ${MAX_DETAILS})` : ' in details'}`
  return { t: MSG_ERROR, id: reply.id, kind: KIND_INVALID_RESULT, type: 'InvalidResult', message: `${error.message}${got}${more}`, details: error.details }
}

/**
 * A value as a JSON client reads it, for the schema: integers past 2^53 (BigInt, which Ajv's
 * "integer" does not take) as the nearest numbers, NaN and ±Infinity as the null a JSON answer
 * writes (Ajv's "number" refuses them, so no schema could otherwise accept a float('inf')).
 */
function asJsonReads (child: unknown): unknown {
  if (typeof child === 'bigint') return Number(child)
  if (typeof child === 'number' && !Number.isFinite(child)) return null
  // A Buffer's prototype has enumerable methods: where bytes meet an object's keywords (all
  // errors are collected), each would be an error of its own. Still bytes for "bytes".
  if (child instanceof Uint8Array) return NO_BYTES
  return undefined
}
const NO_BYTES = new Uint8Array(0)

/** What is at `pointer` in `value`, named as a JSON type (bytes and non-finite numbers as themselves): no data, only its kind. */
function jsonTypeAt (value: unknown, pointer: string): string {
  let node = value
  for (const segment of pointer.split('/').slice(1)) {
    if (typeof node !== 'object' || node === null) return 'nothing'
    node = (node as Record<string, unknown>)[segmentName(segment)]
  }
  if (node === null) return 'null'
  if (Array.isArray(node)) return 'array'
  if (node instanceof Uint8Array) return 'bytes'
  if (typeof node === 'number') return Number.isFinite(node) ? (Number.isInteger(node) ? 'integer' : 'number') : `${node} (null in JSON)`
  if (typeof node === 'bigint') return 'integer'
  return typeof node
}

/** What a result is checked against: the validator, and the schema (which the offload thread compiles for itself, keyed by its JSON). */
export interface ResultCheck {
  readonly validate: ValidateFunction
  readonly outputSchema: NonNullable<TaskInfo['outputSchema']>
  readonly schemaKey: string
}

/** Each worker's declared tasks by name, made once per ready message. */
const declaredByWorker = new WeakMap<readonly TaskInfo[], Map<string, TaskInfo>>()
/** An output schema's JSON, made once per table entry or declaration. */
const schemaJson = new WeakMap<object, string>()
/** Validators of schemas that workers declare and the table does not (yet), by the schema's JSON; bounded as the offload thread's. */
const compiled = new Map<string, ValidateFunction | null>() // null: Ajv refused it
const MAX_COMPILED = 256
/** One ResultCheck per table entry or declaration, not per call. */
const checks = new WeakMap<object, ResultCheck>()

/**
 * What the result of a call of `task` on the worker that declared `declared` is checked
 * against, or undefined when it is not checked (VALIDATE_RESULTS off, or no output schema).
 * The worker's own declaration decides: during a rolling reload a new worker serves new code
 * before the table switches to it, and its results follow the schema that code declares.
 */
export function resultCheckFor (task: PoolTask, declared: readonly TaskInfo[]): ResultCheck | undefined {
  const { validateResult, outputSchema } = task
  if (validateResult === undefined || outputSchema === null || outputSchema === undefined) return undefined
  const own = declarationOf(declared, task.name)
  // A worker that does not list it (a table made by hand in tests): the table's.
  if (own === undefined || jsonOf(own, own.outputSchema) === jsonOf(task, outputSchema)) return checkOf(task, () => validateResult, outputSchema)
  const ownSchema = own.outputSchema
  if (ownSchema === null) return undefined
  const json = jsonOf(own, ownSchema)
  let validate = compiled.get(json)
  if (validate === undefined) {
    if (compiled.size >= MAX_COMPILED) compiled.clear()
    try {
      validate = compileResultValidator(ownSchema)
    } catch {
      // A schema Ajv refuses, from a worker started outside a reload (a crash replacement
      // importing code edited since; a reload refuses such workers): the table's is used.
      // Never thrown: the call's run would take it for its worker failing, and replace it.
      validate = null
    }
    compiled.set(json, validate)
  }
  return validate === null ? checkOf(task, () => validateResult, outputSchema) : checkOf(own, () => validate as ValidateFunction, ownSchema)
}

function checkOf (holder: object, validator: () => ValidateFunction, outputSchema: ResultCheck['outputSchema']): ResultCheck {
  let check = checks.get(holder)
  if (check === undefined) {
    check = { validate: validator(), outputSchema, schemaKey: jsonOf(holder, outputSchema) }
    checks.set(holder, check)
  }
  return check
}

function declarationOf (declared: readonly TaskInfo[], name: string): TaskInfo | undefined {
  let byName = declaredByWorker.get(declared)
  if (byName === undefined) {
    byName = new Map(declared.map((info) => [info.name, info]))
    declaredByWorker.set(declared, byName)
  }
  return byName.get(name)
}

function jsonOf (holder: object, schema: unknown): string {
  let json = schemaJson.get(holder)
  if (json === undefined) {
    json = JSON.stringify(schema)
    schemaJson.set(holder, json)
  }
  return json
}
