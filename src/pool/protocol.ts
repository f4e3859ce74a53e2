// Messages of the worker protocol (SPEC section 4), their msgpack coding and
// their checks. Names are spelled as in workers/pyfleet/protocol.py. What an
// undecodable reply is told: undecodable-result.ts; a result's value bytes in its
// frame: result-value-bytes.ts.
//
//   worker -> server, once:  {t: "ready", v, pid, python, tasks: [...]}
//   server -> worker:        {t: "call", id, task, input, requestId, timeoutMs, trace?}
//   (trace: {traceparent?, tracestate?, baggage?}, the client's, only when it sent one: trace-context.ts)
//   worker -> server:        {t: "result", id, value, rss?}
//   worker -> server:        {t: "error", id, kind, type, message, details?, traceback?, rss?}
//   (rss: the worker's RSS in bytes, only when past --max-rss-bytes: workers/pyfleet/resident.py)

import { addExtension, Packr, Unpackr, RESERVE_START_SPACE } from 'msgpackr'
import { HEADER_BYTES, writeHeader } from './frames.js'
import { msgpackProblem } from '../value-shape.js'
import { holdsIntegersPastDoubles, widenPackedIntegers } from './wide-integers.js'
import { explainUndecodable, notAReplyTo } from './undecodable-result.js'
import { resultValueBytes } from './result-value-bytes.js'
import type { TraceContext } from '../trace-context.js'

export const PROTOCOL_VERSION = 1

export const MSG_READY = 'ready'
const MSG_CALL = 'call'
export const MSG_RESULT = 'result'
export const MSG_ERROR = 'error'

export const KIND_REJECTED = 'rejected'
export const KIND_FAILED = 'failed'
export const KIND_TOO_LARGE = 'too_large'
/** Not sent by workers: the server's own, for a result its task's output schema refuses (result-check.ts). */
export const KIND_INVALID_RESULT = 'invalid_result'

export interface ResultMessage {
  t: typeof MSG_RESULT
  id: number
  value: unknown
  /** The value's msgpack as the worker wrote it (msgpack answers send it as it is), when found. */
  msgpack?: Uint8Array
  /** The worker's RSS, sent only when it is past MAX_WORKER_RSS_MB (workers/pyfleet/resident.py). */
  rss?: number
}

export interface ErrorMessage {
  t: typeof MSG_ERROR
  id: number
  kind: typeof KIND_REJECTED | typeof KIND_FAILED | typeof KIND_TOO_LARGE | typeof KIND_INVALID_RESULT
  type: string
  message: string
  details?: unknown
  traceback?: string
  /** As ResultMessage's. */
  rss?: number
}

/**
 * A reply frame left undecoded: it is large, and the offload thread decodes it and
 * writes the answer (pool/call-run.ts). Not a message of the protocol: PythonWorker's
 * stdout (worker-stdout.ts) makes it instead of decoding (its offloadMinBytes option).
 */
export interface DeferredReply {
  t: typeof MSG_DEFERRED
  id: number
  frame: Uint8Array
}
export const MSG_DEFERRED = 'deferred'

export type ReplyMessage = ResultMessage | ErrorMessage

/** A frame that decodes but is not a message of this protocol. */
export class ProtocolError extends Error {
  override name = 'ProtocolError'
}

/** A frame msgpackr could not decode (a ProtocolError unless decodeReply finds the bytes valid). */
class UndecodableFrameError extends ProtocolError {
  override name = 'UndecodableFrameError'
  constructor (readonly reason: string) {
    super(`frame is not valid msgpack: ${reason}`)
  }
}

// msgpackr decodes some extension types itself (0 as undefined, 0x42 as a BigInt, 0x74
// as a typed array, timestamps, sets, errors...). A task's result must hold none: they
// are a 500 like any other msgpack.ExtType (decodeReply), and a msgpack answer, which
// carries the worker's bytes, would pass them on raw. So every extension this msgpackr
// knows fails to decode, as unknown ones do. (Request bodies with extension types are
// refused before they are decoded: value-shape.ts.)
for (const type of [0x00, 0x42, 0x62, 0x65, 0x69, 0x70, 0x73, 0x74, 0x78, 0xff]) {
  addExtension({ type, unpack: () => { throw new Error(`extension type ${type > 0x7f ? type - 0x100 : type} is not plain data`) } })
}

// One packer and one unpacker per process: msgpackr compiles and caches per instance.
// 'auto' keeps 64-bit integers as numbers while they are safe; larger ones become
// BigInt, which replies.ts writes to JSON as strings rather than failing.
// ('auto' exists in msgpackr but not yet in its type definitions.)
const INT64_AUTO = 'auto' as unknown as 'number'
// variableMapSize: without it msgpackr writes every map with a 16-bit size and
// refuses objects of more than 65,535 keys (valid JSON bodies, and results).
const packr = new Packr({ useRecords: false, moreTypes: false, variableMapSize: true, int64AsType: INT64_AUTO })
// structuredClone must be false, not merely unset: msgpackr decodes its reference
// extensions (0x69 id, 0x70 pointer) unless told not to, and a 500-byte body of
// references decodes to a value with 2^40 paths, which every later walk follows.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: INT64_AUTO, structuredClone: false })
// The same, for bytes without an integer past ±2^53 (nearly all): 'auto' makes a BigInt
// for every int64 before it turns it into a number; 'number' gives the same numbers
// from two 32-bit reads (wide-integers.ts holdsIntegersPastDoubles).
const numbersUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', structuredClone: false })
const unpackrFor = (bytes: Uint8Array): Unpackr => holdsIntegersPastDoubles(bytes) ? unpackr : numbersUnpackr
/**
 * A call's frame in two parts, written one after the other: its head (length prefix
 * and message, up to the input) and input bytes encoded before (EncodedInput). Copying
 * 16 MiB of input into one buffer with its head held the event loop for ~20 ms.
 */
export class SplitFrame {
  readonly length: number
  constructor (readonly head: Buffer, readonly input: Uint8Array) {
    this.length = head.length + input.length
  }
}

/**
 * Encodes a call as one complete frame (length prefix included): in one buffer, or in
 * two parts for input encoded before (SplitFrame). `widen`: the input holds numbers past
 * 32 bits, whose integers are to reach the task as ints (the route knows: body.ts;
 * wide-integers.ts says why). `timeoutMs`: how long the call may take, its task's timeout
 * or its client's budget, whichever ends first (`pyfleet.time_remaining()` in the task;
 * beyond SPEC §4's frame, whose fields come first).
 */
export function encodeCall (id: number, task: string, input: unknown, requestId: string, timeoutMs: number, widen = false, trace?: TraceContext): Buffer | SplitFrame {
  if (input instanceof EncodedInput) return spliceCall(id, task, input, requestId, timeoutMs, trace)
  // RESERVE_START_SPACE leaves room for the header, so the frame is written without a copy.
  const message = trace === undefined ? { t: MSG_CALL, id, task, input, requestId, timeoutMs } : { t: MSG_CALL, id, task, input, requestId, timeoutMs, trace }
  const frame = packr.pack(message, RESERVE_START_SPACE | HEADER_BYTES)
  if (widen) widenPackedIntegers(frame, HEADER_BYTES)
  return writeHeader(frame)
}

/**
 * A call's input already encoded as msgpack (by the offload thread: offload/jobs.ts),
 * its integers past 32 bits already widened. encodeCall puts the bytes in the frame as
 * they are.
 */
export class EncodedInput {
  constructor (readonly bytes: Uint8Array) {}
}

/** A task's input as msgpack, its integers past 32 bits as ints when `widen` (see encodeCall). */
export function encodeInput (input: unknown, widen: boolean): Buffer {
  const bytes = packr.pack(input)
  return widen ? widenPackedIntegers(bytes) : bytes
}

/**
 * The call's frame around input bytes encoded before: the message is packed with a nil
 * input, written last (msgpackr writes an object's keys in their order), and the input's
 * bytes take the nil's one byte's place, following the head.
 */
function spliceCall (id: number, task: string, input: EncodedInput, requestId: string, timeoutMs: number, trace: TraceContext | undefined): SplitFrame {
  const message = trace === undefined ? { t: MSG_CALL, id, task, requestId, timeoutMs, input: null } : { t: MSG_CALL, id, task, requestId, timeoutMs, trace, input: null }
  const packed = packr.pack(message, RESERVE_START_SPACE | HEADER_BYTES)
  const head = packed.subarray(0, packed.length - 1) // without the nil
  head.writeUInt32BE(head.length - HEADER_BYTES + input.bytes.length, 0)
  return new SplitFrame(head, input.bytes)
}

/** Encodes any value as msgpack (for msgpack HTTP responses), its integers past 32 bits as ints. */
export function encodeValue (value: unknown): Buffer {
  return widenPackedIntegers(packr.pack(value))
}

/** Decodes msgpack bytes (an HTTP body). Throws on bad input. */
export function decodeValue (bytes: Uint8Array): unknown {
  return unpackrFor(bytes).unpack(bytes)
}

/** A frame's message map, checked it has a "t"; throws ProtocolError. `decoder`: another than the body's own (ready-message.ts). */
export function decodeMessage (body: Uint8Array, decoder?: Unpackr): Record<string, unknown> {
  let message: unknown
  try {
    message = (decoder ?? unpackrFor(body)).unpack(body)
  } catch (error) {
    throw new UndecodableFrameError((error as Error).message)
  }
  if (typeof message !== 'object' || message === null || typeof (message as { t?: unknown }).t !== 'string') {
    throw new ProtocolError('frame is not a message map with a "t" field')
  }
  return message as Record<string, unknown>
}

/** Decodes and checks a reply to the call with id `callId`. */
export function decodeReply (body: Uint8Array, callId: number): ReplyMessage {
  let message: Record<string, unknown>
  try {
    message = decodeMessage(body)
  } catch (error) {
    // Bytes that are not msgpack are a protocol error (SPEC §4). But valid
    // msgpack that msgpackr cannot turn into JS (a map with bytes or tuple keys,
    // a msgpack.ExtType) is the task's doing, and the stream is intact: a task
    // failure (500), not a reason to replace the worker.
    if (!(error instanceof UndecodableFrameError)) throw error
    if (msgpackProblem(body, Infinity, Infinity, true) !== undefined) throw error
    // Only a reply to this call is the task's doing: another call's, or no message at all, breaks the protocol.
    const notReply = notAReplyTo(body, callId)
    if (notReply !== undefined) throw new ProtocolError(notReply)
    return { t: MSG_ERROR, id: callId, kind: KIND_FAILED, type: 'UndecodableResult', message: explainUndecodable(body, error.reason) }
  }
  if (message.id !== callId) {
    throw new ProtocolError(`reply for call ${String(message.id)} while call ${callId} is outstanding`)
  }
  // A result without its value (a worker of another implementation, a bug) would answer 200 with nothing.
  if (message.t === MSG_RESULT && Object.hasOwn(message, 'value')) {
    const result = message as unknown as ResultMessage
    result.msgpack = resultValueBytes(body)
    return result
  }
  if (message.t === MSG_ERROR && typeof message.message === 'string' && typeof message.type === 'string' &&
    (message.kind === KIND_REJECTED || message.kind === KIND_FAILED || message.kind === KIND_TOO_LARGE)) {
    return message as unknown as ErrorMessage
  }
  throw new ProtocolError(`unexpected or malformed ${JSON.stringify(message.t)} message`)
}
