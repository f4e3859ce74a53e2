// VALIDATE_RESULTS: a task's result checked against the output schema it declares,
// before it is answered. A value the schema refuses becomes an error reply of the
// server's own kind (KIND_INVALID_RESULT), which the pool settles as a 500
// RESULT_INVALID and the log records, as it does an exception. Used on the event loop
// (call-run.ts) and on the offload thread for large replies (offload/jobs.ts), so both
// paths refuse the same values with the same words.

import type { ValidateFunction } from 'ajv'
import { validateWithBigInts } from '../routes/big-integers.js'
import { compileResultValidator, validationError } from '../task-registry.js'
import type { PoolTask } from './call.js'
import { KIND_INVALID_RESULT, MSG_ERROR, type ErrorMessage, type ResultMessage } from './protocol.js'
import type { TaskInfo } from './ready-message.js'

/** The reply itself if `validate` accepts its value; otherwise the error reply that says why (paths and keywords, no values; a path holds the keys on the way). */
export function checkedResult (reply: ResultMessage, validate: ValidateFunction): ResultMessage | ErrorMessage {
  // Integers past 2^53 arrive as BigInt, which Ajv's "integer" does not take: checked as the nearest numbers.
  if (validateWithBigInts(reply.value, validate)) return reply
  const error = validationError(validate.errors, 'result', validate.schema) as Error & { details?: unknown }
  return { t: MSG_ERROR, id: reply.id, kind: KIND_INVALID_RESULT, type: 'InvalidResult', message: error.message, details: error.details }
}

/** What a result is checked against: the validator, and the schema (which the offload thread compiles for itself). */
export interface ResultCheck {
  readonly validate: ValidateFunction
  readonly outputSchema: NonNullable<TaskInfo['outputSchema']>
}

/** Each worker's declared tasks by name, made once per ready message. */
const declaredByWorker = new WeakMap<readonly TaskInfo[], Map<string, TaskInfo>>()
/** An output schema's JSON, made once per table entry or declaration. */
const schemaJson = new WeakMap<object, string>()
/** Validators of schemas that workers declare and the table does not (yet), by the schema's JSON; bounded as the offload thread's. */
const compiled = new Map<string, ValidateFunction>()
const MAX_COMPILED = 256
/**
 * One ResultCheck per table entry or declaration, not per call: the offloader keys its
 * cache of schema JSON by the object it is given.
 */
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
  return checkOf(own, () => {
    const json = jsonOf(own, ownSchema)
    let validate = compiled.get(json)
    if (validate === undefined) {
      if (compiled.size >= MAX_COMPILED) compiled.clear()
      // It compiled when the worker started: a reload refuses workers whose schemas the registry refuses.
      validate = compileResultValidator(ownSchema)
      compiled.set(json, validate)
    }
    return validate
  }, ownSchema)
}

function checkOf (holder: object, validator: () => ValidateFunction, outputSchema: ResultCheck['outputSchema']): ResultCheck {
  let check = checks.get(holder)
  if (check === undefined) {
    check = { validate: validator(), outputSchema }
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
