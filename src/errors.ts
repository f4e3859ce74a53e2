// Every error code pyfleet's answers carry, in one table: code, message, HTTP status
// (SPEC section 1's, and the few it lacks; README's "Where pyfleet goes beyond the contract").
// Where they are raised is up to the callers; how they are sent is plugins/error-handler.ts's job.

import createError, { type FastifyErrorConstructor } from '@fastify/error'

/** Extra fields an error may carry to the client or the response headers. */
export interface ErrorExtras {
  /** JSON-able context shown to the client (validation errors, a parse error's line and column). */
  details?: unknown
  /** Seconds for the Retry-After header of 503s. */
  retryAfterSeconds?: number
}

const defined: Array<{ code: string, statusCode: number }> = []
const classes = new Map<string, FastifyErrorConstructor>()

/** An error class with its code and status; every one is listed in ERROR_CODES. */
function define (code: string, statusCode: number, message = '%s'): FastifyErrorConstructor {
  defined.push({ code, statusCode })
  const errorClass = createError(code, message, statusCode)
  classes.set(code, errorClass)
  return errorClass
}

export const InvalidInputError = define('INVALID_INPUT', 400)
export const ValidationError = define('FST_ERR_VALIDATION', 400)
/** Fastify's own code for a path that does not percent-decode; pyfleet's for a query string that does not. */
export const BadUrlError = define('FST_ERR_BAD_URL', 400)
export const MissingHostError = define('MISSING_HOST_HEADER', 400, 'an HTTP/1.1 request must have a Host header (RFC 9112 §3.2)')
export const DuplicateHostError = define('DUPLICATE_HOST_HEADER', 400, 'a request must have one Host header, not %s (RFC 9112 §3.2)')
export const DuplicateHeaderError = define('DUPLICATE_HEADER', 400, 'a request must have one %s header, not %s (RFC 9110 §5.3: it is no list): a proxy in front may have read another than the one pyfleet would')
export const UnauthorizedError = define('UNAUTHORIZED', 401, 'missing bearer token: send Authorization: Bearer <ADMIN_TOKEN>')
export const ForbiddenError = define('FORBIDDEN', 403, 'the bearer token is not the ADMIN_TOKEN')
export const TaskNotFoundError = define('TASK_NOT_FOUND', 404, 'there is no task named %s; GET /api/tasks lists them')
export const MethodNotAllowedError = define('METHOD_NOT_ALLOWED', 405, '%s is not a method of %s: it answers %s')
export const BodyTooLargeError = define('FST_ERR_CTP_BODY_TOO_LARGE', 413)
export const UnsupportedMediaTypeError = define('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415)
export const ExpectationFailedError = define('EXPECTATION_FAILED', 417, 'expect: %s is not an expectation pyfleet can meet; only 100-continue is')
export const TaskRejectedInputError = define('TASK_REJECTED_INPUT', 422)
export const TaskFailedError = define('TASK_FAILED', 500, 'task %s failed; the server log has the details under this answer\'s x-request-id')
export const ResultTooLargeError = define('RESULT_TOO_LARGE', 500)
export const ResultInvalidError = define('RESULT_INVALID', 500)
export const WorkerDiedError = define('WORKER_DIED', 502)
export const QueueFullError = define('QUEUE_FULL', 503)
export const ReceiveFullError = define('RECEIVE_FULL', 503)
export const QueueTimeoutError = define('QUEUE_TIMEOUT', 503, 'no worker became free within %s; retry later')
export const WorkersUnavailableError = define('WORKERS_UNAVAILABLE', 503)
export const TaskTimeoutError = define('TASK_TIMEOUT', 504)
export const UnsupportedTransferCodingError = define('UNSUPPORTED_TRANSFER_CODING', 501)

/** The table itself, every class define() made, for documentation checks (test/errors.test.ts keeps README in step). */
export const ERROR_CODES: ReadonlyArray<{ code: string, statusCode: number }> = defined

/** Refusals a stopping server makes of calls that come after the signal (expectedRefusal). */
const expectedRefusals = new WeakSet<Error>()

/**
 * Marks a refusal every rollout makes (a call that comes while the server drains), which its
 * request's line logs at info, and returns it. Calls admitted before the signal and refused
 * when the grace runs out are losses, and keep their warning.
 */
export function expectedRefusal<E extends Error> (error: E): E {
  expectedRefusals.add(error)
  return error
}

export function isExpectedRefusal (error: unknown): boolean {
  return error instanceof Error && expectedRefusals.has(error)
}

/** Attaches client-visible details or a Retry-After to an error, and returns it. */
export function withExtras<E extends Error> (error: E, extras: ErrorExtras): E & ErrorExtras {
  return Object.assign(error, extras)
}

/**
 * The error of class `code` with this message, as raised where it was made: the offload
 * thread sends back a code and a message (offload/jobs.ts). An unknown code is a bug: a 500.
 */
export function errorOfCode (code: string, message: string, details?: unknown): Error {
  const errorClass = classes.get(code)
  if (errorClass === undefined) return new Error(`the offload thread refused a body with an unknown code ${code}: ${message}`)
  const error = new errorClass('%s')
  // The message as the thread's error had it: a class with a fixed text would add its text again.
  error.message = message
  return details === undefined ? error : withExtras(error, { details })
}
