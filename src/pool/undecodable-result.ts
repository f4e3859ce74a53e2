// Why a reply that is valid msgpack will not decode (protocol.ts decodeReply): the dict
// key a JavaScript object cannot have, and where it is, worded as the worker words it of a
// TaskError's details (workers/pyfleet/unsendable.py), or msgpackr's own reason.

import { Unpackr } from 'msgpackr'
import { shorten } from '../short-text.js'

/**
 * The message of the task failure a valid but undecodable reply becomes: where its bad
 * dict key is (undecodableKey), or `reason`, msgpackr's, when it has none.
 */
/**
 * Why a frame that will not decode is no reply to call `callId` at all (a protocol error, as
 * the same frame with a value that decodes is), or undefined: it is one, or its envelope cannot
 * be read either (an extension type anywhere in it, which the key finder refuses too).
 */
export function notAReplyTo (body: Uint8Array, callId: number): string | undefined {
  let message: unknown
  try {
    message = keyFinder.unpack(body)
  } catch {
    return undefined
  }
  if (!(message instanceof Map) || (message.get('t') !== 'result' && message.get('t') !== 'error')) return 'frame is not a result or error message'
  const id = message.get('id')
  return id === callId ? undefined : `reply for call ${String(id)} while call ${callId} is outstanding`
}

export function explainUndecodable (body: Uint8Array, reason: string): string {
  return undecodableKey(body) ?? `the result is msgpack that cannot become a JavaScript value (an extension type?): ${reason}`
}

/**
 * Decodes maps as Maps, whatever their keys: to find the key msgpackr refused to make a property of.
 * It refuses extension types as protocol.ts's decoders do: msgpackr's extensions are process-wide,
 * looked up as each value is read, so protocol.ts's refusals hold though this is built before them.
 */
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
