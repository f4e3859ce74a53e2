// VALIDATE_RESULTS: a task's result checked against the output schema it declares,
// before it is answered. A value the schema refuses becomes an error reply of the
// server's own kind (KIND_INVALID_RESULT), which the pool settles as a 500
// RESULT_INVALID and the log records, as it does an exception. Used on the event loop
// (call-run.ts) and on the offload thread for large replies (offload/jobs.ts), so both
// paths refuse the same values with the same words.

import type { ValidateFunction } from 'ajv'
import { validateWithBigInts } from '../routes/big-integers.js'
import { validationError } from '../task-registry.js'
import { KIND_INVALID_RESULT, MSG_ERROR, type ErrorMessage, type ResultMessage } from './protocol.js'

/** The reply itself if `validate` accepts its value; otherwise the error reply that says why (paths and keywords, no values; a path holds the keys on the way). */
export function checkedResult (reply: ResultMessage, validate: ValidateFunction): ResultMessage | ErrorMessage {
  // Integers past 2^53 arrive as BigInt, which Ajv's "integer" does not take: checked as the nearest numbers.
  if (validateWithBigInts(reply.value, validate)) return reply
  const error = validationError(validate.errors, 'result', validate.schema) as Error & { details?: unknown }
  return { t: MSG_ERROR, id: reply.id, kind: KIND_INVALID_RESULT, type: 'InvalidResult', message: error.message, details: error.details }
}
