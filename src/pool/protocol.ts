// Messages of the worker protocol (SPEC section 4), their msgpack coding and
// their checks. Names are spelled as in workers/pyfleet/protocol.py.
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
import { shorten } from '../short-text.js'
import { holdsIntegersPastDoubles, widenPackedIntegers } from './wide-integers.js'
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

/** Decodes maps as Maps, whatever their keys: to find the key msgpackr refused to make a property of. */
const keyFinder = new Unpackr({ useRecords: false, mapsAsObjects: false, int64AsType: 'number' })

/**
 * Where, in a reply that will not decode, the dict key is that a JavaScript object
 * cannot have (bytes, or a tuple that came as a list): said as the worker says it of
 * a TaskError's details, for the log. Undefined if the reason is something else (an
 * extension type, which this decoder refuses too). Error path only: a second decode.
 */
function undecodableKey (body: Uint8Array): string | undefined {
  let message: unknown
  try {
    message = keyFinder.unpack(body)
  } catch {
    return undefined
  }
  if (!(message instanceof Map)) return undefined
  const stack: Array<[unknown, string]> = [[message.get('value'), '']]
  while (stack.length > 0) {
    const [item, path] = stack.pop() as [unknown, string]
    if (item instanceof Map) {
      const entries = [...item.entries()]
      for (const [key] of entries) {
        if (key !== null && typeof key === 'object') {
          const kind = key instanceof Uint8Array ? 'bytes' : Array.isArray(key) ? 'tuple' : typeof key
          // A tuple key's values say where it came from (the columns of a pandas groupby over several).
          const shown = Array.isArray(key) ? ` ${keyText(key)}` : ''
          return `the result has a ${kind} dict key${shown}${path === '' ? '' : ` at ${path}`}; use str keys`
        }
      }
      for (const [key, child] of entries.reverse()) stack.push([child, `${path}[${JSON.stringify(key)}]`])
    } else if (Array.isArray(item)) {
      for (let i = item.length - 1; i >= 0; i--) stack.push([item[i], `${path}[${i}]`])
    }
  }
  return undefined
}

/** How much of a tuple key's values its message shows. */
const KEY_TEXT_MAX = 100

/**
 * A tuple dict key as its message shows it: JSON-like, bytes as `<N bytes>`, a map as `{...}`,
 * at most KEY_TEXT_MAX characters, and no more built than that: a key may hold 40 MB of bytes,
 * which as JSON took the worker's slot for half a minute and the server to 2 GB (a review).
 * The worker writes a TaskError's details' keys the same way (unsendable.py, _key_text).
 */
function keyText (key: unknown[]): string {
  let text = ''
  const add = (value: unknown): boolean => {
    if (Array.isArray(value)) {
      text += '['
      for (let i = 0; i < value.length; i++) {
        if (i > 0) text += ','
        if (!add(value[i])) return false
      }
      text += ']'
    } else if (value instanceof Uint8Array) {
      text += `<${value.length} bytes>`
    } else if (typeof value === 'string') {
      text += JSON.stringify(value.slice(0, KEY_TEXT_MAX + 1))
    } else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' || value === null) {
      text += String(value)
    } else {
      text += '{...}'
    }
    return text.length <= KEY_TEXT_MAX
  }
  add(key)
  return shorten(text, KEY_TEXT_MAX)
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
    const message = undecodableKey(body) ?? `the result is msgpack that cannot become a JavaScript value (an extension type?): ${error.reason}`
    return { t: MSG_ERROR, id: callId, kind: KIND_FAILED, type: 'UndecodableResult', message }
  }
  if (message.id !== callId) {
    throw new ProtocolError(`reply for call ${String(message.id)} while call ${callId} is outstanding`)
  }
  if (message.t === MSG_RESULT) {
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

// A result frame as the worker writes it (workers/pyfleet/protocol.py's result():
// {"t": "result", "id": id, "value": value}, in that order, or with_rss()'s
// {"t", "id", "rss", "value"}): what comes before the id (after the map's size), and
// the keys between the id and the value.
const RESULT_HEAD = Buffer.from([0xa1, ...Buffer.from('t'), 0xa6, ...Buffer.from('result'), 0xa2, ...Buffer.from('id')])
const RSS_KEY = Buffer.from([0xa3, ...Buffer.from('rss')])
const VALUE_KEY = Buffer.from([0xa5, ...Buffer.from('value')])

/**
 * Where the value starts in a result frame that decoded as one (so the rest of the
 * frame is exactly the value): its bytes, or undefined if the frame is laid out in
 * another way, and the value must be encoded again for a msgpack answer.
 */
function resultValueBytes (body: Uint8Array): Uint8Array | undefined {
  // A fixmap of 3 entries, or of 4 with the worker's rss.
  const withRss = body[0] === 0x84
  if ((body[0] !== 0x83 && !withRss) || body.length < 1 + RESULT_HEAD.length + 1 + VALUE_KEY.length || !bytesAt(body, 1, RESULT_HEAD)) return undefined
  let at = 1 + RESULT_HEAD.length
  at += unsignedBytes(body[at]) // the id
  if (withRss) {
    if (at + RSS_KEY.length >= body.length || !bytesAt(body, at, RSS_KEY)) return undefined
    at += RSS_KEY.length
    at += unsignedBytes(body[at])
  }
  if (at + VALUE_KEY.length > body.length || !bytesAt(body, at, VALUE_KEY)) return undefined
  return body.subarray(at + VALUE_KEY.length)
}

/** The length of an unsigned msgpack integer from its marker (a positive fixint, uint 8/16/32/64); Infinity for any other (no such frame). */
function unsignedBytes (marker: number): number {
  return marker <= 0x7f ? 1 : marker >= 0xcc && marker <= 0xcf ? 1 + 2 ** (marker - 0xcc) : Infinity
}

/** Whether `body` holds `expected` at `offset` (a loop: this runs for every reply, and the pieces are short). */
function bytesAt (body: Uint8Array, offset: number, expected: Uint8Array): boolean {
  for (let i = 0; i < expected.length; i++) if (body[offset + i] !== expected[i]) return false
  return true
}
