// What the offload thread does, as plain functions of bytes: a large body made into
// a call's input (parsed or decoded, checked, validated and encoded as msgpack), and a large
// reply frame made into an answer (decoded and written as JSON or msgpack). The
// same modules as the event loop's path do the work (routes/body.ts, routes/replies.ts,
// pool/protocol.ts), so answers and errors are the same byte for byte; only where
// it runs differs. Tests call these directly, without a thread.

import type { ValidateFunction } from 'ajv'
import { checkedInput, parseMsgpackBytes, type TaskInput } from '../routes/body.js'
import { rawTextInput, type RawText } from '../routes/raw-body.js'
import { parseJsonBytes } from '../routes/json-body.js'
import { msgpackAnswer, toJson } from '../routes/replies.js'
import { decodeReply, encodeInput, MSG_ERROR, ProtocolError, type ErrorMessage } from '../pool/protocol.js'
import type { TaskInfo } from '../pool/ready-message.js'
import type { AnswerFormat } from './encoded.js'
import { checkedResult } from '../pool/result-check.js'

/** Make a large JSON, msgpack or raw text body into a task's input. */
export interface InputJob {
  op: 'input'
  kind: 'json' | 'msgpack' | 'text'
  bytes: Uint8Array
  /** For a text body: how to decode it, its field, and the query string's options beside it. */
  raw?: RawText
  /**
   * The task's input schema, and a key that names it (its JSON) for the thread's cache of
   * validators: a text body's is checked as the table's validateRaw does, coercing.
   */
  schema: TaskInfo['schema']
  schemaKey: string
  /** Only parse it (its errors come first); the route has another error to give if it parses. */
  parseOnly: boolean
}

/** Make a large reply frame, to call `callId`, into an answer in `format`. */
export interface AnswerJob {
  op: 'answer'
  frame: Uint8Array
  callId: number
  format: AnswerFormat
  /** VALIDATE_RESULTS: the task's output schema, and its key (its JSON) for the thread's cache, to check the value against. */
  result?: { schema: Record<string, unknown> | boolean, schemaKey: string }
}

export type Job = InputJob | AnswerJob

/** A client error as the thread sends it back: the event loop makes the same error class of its code (errors.ts). */
export interface SentError {
  code: string
  message: string
  details?: unknown
  /** Raised by the parse itself, which on the event loop is the content-type parser's (see connection-reuse.ts keepOrClose). */
  parsing: boolean
}

export type JobOutcome =
  /** The input, encoded as msgpack, its integers past 32 bits widened. */
  | { t: 'input', bytes: Uint8Array }
  /** The body parses (a parseOnly job). */
  | { t: 'parsed' }
  /** The body is refused: a 400 or 415 with this code, message and details. */
  | { t: 'refused', error: SentError }
  /** The answer's bytes, in the format asked for. */
  | { t: 'answer', bytes: Uint8Array }
  /** The worker replied with an error (or a result no JavaScript value can hold): the pool settles the call with it. */
  | { t: 'error', reply: ErrorMessage }
  /** The frame broke the protocol (not msgpack, not a reply to this call): the worker is replaced. */
  | { t: 'protocol', message: string }

/** Runs an input job; `validate` checks the body against the task's schema (coercing, for text). Throws only on a bug. */
export function prepareInput (job: InputJob, validate: ValidateFunction): JobOutcome {
  if (job.kind === 'text') return prepareRawText(job, validate)
  let parsed
  try {
    const bytes = asBuffer(job.bytes)
    parsed = job.kind === 'json' ? parseJsonBytes(bytes) : { value: parseMsgpackBytes(bytes), text: undefined }
  } catch (error) {
    return refusedFor(error, true)
  }
  if (job.parseOnly) return { t: 'parsed' }
  let checked
  try {
    checked = checkedInput(parsed.value, parsed.text, validate)
  } catch (error) {
    return refusedFor(error, false)
  }
  return encoded(checked)
}

/**
 * A raw text body decoded, put in its field beside the query string's options, checked
 * and encoded. Its errors are the handler's on the event loop, never the parser's.
 */
function prepareRawText (job: InputJob, validateRaw: ValidateFunction): JobOutcome {
  if (job.raw === undefined) throw new Error('a text input job came without its decoding (raw)')
  let input
  try {
    input = rawTextInput(asBuffer(job.bytes), job.raw, validateRaw)
  } catch (error) {
    return refusedFor(error, false)
  }
  return encoded(input)
}

function encoded ({ input, holdsWideNumbers }: TaskInput): JobOutcome {
  try {
    return { t: 'input', bytes: encodeInput(input, holdsWideNumbers) }
  } catch (error) {
    // As the event loop's path says it (pool/call-run.ts), where encoding is worker.call's.
    return refused({ code: 'INVALID_INPUT', message: `input cannot be sent to the worker: ${(error as Error).message}`, parsing: false })
  }
}

/** A client error (4xx) as the outcome that carries it back; anything else is a bug, thrown on. */
function refusedFor (error: unknown, parsing: boolean): JobOutcome {
  const { code, statusCode, message, details } = error as { code?: unknown, statusCode?: unknown, message: string, details?: unknown }
  if (typeof code !== 'string' || typeof statusCode !== 'number' || statusCode < 400 || statusCode >= 500) throw error
  return refused(details === undefined ? { code, message, parsing } : { code, message, details, parsing })
}

/**
 * Runs an answer job: the reply frame decoded and checked as PythonWorker would, the value
 * checked by `validate` (the job's output schema's) as call-run.ts checks small ones, then
 * written. Throws only on a bug.
 */
export function prepareAnswer (job: AnswerJob, validate?: ValidateFunction): JobOutcome {
  let reply
  try {
    reply = decodeReply(job.frame, job.callId)
  } catch (error) {
    if (error instanceof ProtocolError) return { t: 'protocol', message: error.message }
    throw error
  }
  if (reply.t === MSG_ERROR) return { t: 'error', reply }
  if (validate !== undefined) {
    const checked = checkedResult(reply, validate)
    if (checked.t === MSG_ERROR) return { t: 'error', reply: checked }
  }
  const bytes = job.format === 'json' ? Buffer.from(toJson(reply.value)) : msgpackAnswer(reply.value, reply.msgpack)
  return { t: 'answer', bytes }
}

function refused (error: SentError): JobOutcome {
  return { t: 'refused', error }
}

/** A Buffer over the same memory (bytes that crossed from another thread arrive as a Uint8Array). */
function asBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * Bytes that can be moved to another thread without a copy: their own whole
 * ArrayBuffer. A view into a larger one (msgpackr's reused buffer, Node's pool of
 * small buffers, a frame inside a chunk) is copied first: moving its buffer would
 * take the rest of that buffer away from its owner.
 */
export function ownBytes (bytes: Uint8Array): Uint8Array {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer)) return bytes
  return new Uint8Array(bytes)
}
