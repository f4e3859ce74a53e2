// Checks the shape of a JSON or msgpack body before it is parsed, because
// parsing trusts the body; and, for the pool, whether a reply it cannot decode is
// msgpack at all (msgpackProblem with skipExtensions). msgpackr trusts the counts
// in container headers: a 5-byte body claiming an array of 33 million elements
// makes it allocate 270 MB
// before it finds the data missing. And both formats turn a few bytes into a
// whole object: a 16 MB msgpack body of empty maps (one byte each) took Node to
// 3.3 GB and 22 s, the same in JSON ("{}," each) to 1.4 GB; two at once would
// end the process. So a body may hold at most MAX_CONTAINERS maps and arrays.
//
// msgpackProblem reads headers only (string and binary payloads are skipped by
// length), allocates one small stack, and also refuses:
//   - a container claiming more values than there are bytes left (every value
//     takes at least one byte),
//   - nesting deeper than the limit,
//   - extension types and timestamps, which tasks cannot receive,
//   - strings that are not UTF-8, and __proto__ keys (as in JSON bodies),
//   - the never-used byte 0xc1, truncated values and bytes after the value.

import { isUtf8 } from 'node:buffer'

/** Maps and arrays one body may hold: ~60 MB of empty objects in Node, and as much again in a worker. */
export const MAX_CONTAINERS = 1_000_000

const tooMany = (limit: number): string => `the body holds more than ${limit.toLocaleString('en-US')} maps and arrays, the limit for one call; split the work into several calls`

/**
 * Why a JSON text holds too many objects and arrays, or undefined. Only texts
 * long enough to hold that many ("{}" is two characters) are scanned, skipping
 * strings, so ordinary bodies cost one length comparison.
 */
export function jsonProblem (text: string, maxContainers = MAX_CONTAINERS): string | undefined {
  if (text.length < 2 * maxContainers) return undefined
  // Brackets counted with indexOf (native, ~1 ms for 16 MB) bound the count from
  // above, since brackets inside strings count too; only past the limit is the
  // exact scan (~4× JSON.parse's time) needed.
  if (countOf(text, '{', maxContainers) + countOf(text, '[', maxContainers) <= maxContainers) return undefined
  let containers = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if ((c === 0x7b || c === 0x5b) && ++containers > maxContainers) { // { [
      return tooMany(maxContainers)
    }
  }
  return undefined
}

/** How many times `char` occurs in `text`, counting no further than limit + 1. */
function countOf (text: string, char: string, limit: number): number {
  let count = 0
  for (let i = text.indexOf(char); i !== -1 && count <= limit; i = text.indexOf(char, i + 1)) count++
  return count
}

/**
 * Why `bytes` is not one plain msgpack value that is safe to decode, or
 * undefined if it is. With `skipExtensions`, extension types are stepped over
 * instead of refused: the question is then only whether the bytes are msgpack.
 */
export function msgpackProblem (bytes: Uint8Array, maxDepth: number, maxContainers = MAX_CONTAINERS, skipExtensions = false, shape?: MsgpackShape): string | undefined {
  const end = bytes.length
  let containers = 0
  let bins = 0
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  // left[d]: values still to read in the container open at depth d (depth 0: the body's one value).
  const left: number[] = [1]
  // maps[d]: whether the container at depth d is a map, whose even-numbered values are keys.
  const maps: boolean[] = [false]
  let pos = 0
  while (left.length > 0) {
    const depth = left.length - 1
    if (left[depth] === 0) {
      left.pop()
      maps.pop()
      continue
    }
    const isKey = maps[depth] && left[depth] % 2 === 0
    left[depth]--
    if (pos >= end) return 'the msgpack body ends in the middle of a value'
    const byte = bytes[pos]
    let count = -1 // values of a container that starts here
    let skip = 0 // bytes of a scalar, header included
    let text = 0 // for a string: bytes of its header, whose payload must be UTF-8
    let map = false
    if (byte <= 0x7f || byte >= 0xe0) skip = 1 // fixint
    else if (byte <= 0x8f) { count = 2 * (byte & 0x0f); skip = 1; map = true } // fixmap
    else if (byte <= 0x9f) { count = byte & 0x0f; skip = 1 } // fixarray
    else if (byte <= 0xbf) { skip = 1 + (byte & 0x1f); text = 1 } // fixstr
    else {
      const need = HEADER_SIZE[byte - 0xc0]
      if (need === undefined) return 'the msgpack body holds the byte 0xc1, which msgpack never uses'
      if (!skipExtensions && isExtension(byte)) return EXTENSION_TYPE
      if (pos + need > end) return 'the msgpack body ends in the middle of a value'
      switch (byte) {
        case 0xc4: skip = 2 + view.getUint8(pos + 1); bins++; break // bin8
        case 0xc5: skip = 3 + view.getUint16(pos + 1); bins++; break // bin16
        case 0xc6: skip = 5 + view.getUint32(pos + 1); bins++; break // bin32
        case 0xd9: skip = 2 + view.getUint8(pos + 1); text = 2; break // str8
        case 0xda: skip = 3 + view.getUint16(pos + 1); text = 3; break // str16
        case 0xdb: skip = 5 + view.getUint32(pos + 1); text = 5; break // str32
        case 0xdc: count = view.getUint16(pos + 1); skip = 3; break // array16
        case 0xdd: count = view.getUint32(pos + 1); skip = 5; break // array32
        case 0xde: count = 2 * view.getUint16(pos + 1); skip = 3; map = true; break // map16
        case 0xdf: count = 2 * view.getUint32(pos + 1); skip = 5; map = true; break // map32
        case 0xc7: skip = 3 + view.getUint8(pos + 1); break // ext8: length, type, data
        case 0xc8: skip = 4 + view.getUint16(pos + 1); break // ext16
        case 0xc9: skip = 6 + view.getUint32(pos + 1); break // ext32
        default: skip = need // nil, bool, numbers, fixext: the header is the value
      }
    }
    if (pos + skip > end) return 'the msgpack body ends in the middle of a value'
    // msgpackr would put U+FFFD in place of bad bytes, silently; and CESU-8 surrogates would reach the worker.
    if (text > 0 && !isText(bytes, pos + text, pos + skip)) return 'the msgpack body holds a string that is not valid UTF-8'
    // msgpackr renames a __proto__ key to __proto_, silently; JSON bodies with one are refused, so these are too.
    if (isKey && text > 0 && isProtoKey(bytes, pos + text, pos + skip)) return 'the body holds a __proto__ key, which is refused as in JSON bodies'
    pos += skip
    if (count >= 0 && ++containers > maxContainers) return tooMany(maxContainers)
    if (count > 0) {
      if (count > end - pos) return `a msgpack container claims ${count} values but only ${end - pos} bytes follow`
      if (left.length > maxDepth) return `the body nests deeper than ${maxDepth} levels`
      left.push(count)
      maps.push(map)
    }
  }
  if (shape !== undefined) shape.objects = containers + bins
  return pos === end ? undefined : `the msgpack body holds ${end - pos} more byte${end - pos === 1 ? '' : 's'} after its value: a body is one msgpack value`
}

/**
 * A msgpack body or reply frame holding at least OFFLOAD_MIN_BYTES / 8 maps, arrays and bins
 * (32,768 by default) is converted on the offload thread whatever its size: each of those is an
 * object made, walked and encoded again (~0.5 µs each), and msgpack writes an empty one in one
 * byte, so 256 KiB of them held the event loop ~150 ms where JSON's worst held it ~25 ms.
 */
export const OBJECTS_OFFLOAD_DIVISOR = 8

/**
 * How many maps, arrays and bins `bytes` (msgpack) holds, counted up to `atLeast`, where it
 * stops. One pass over the headers: a container's values follow its header, so no stack is
 * kept, and nothing is checked (a worker's reply frame, which decodeReply checks after).
 * Truncated bytes end the count early.
 */
export function msgpackObjects (bytes: Uint8Array, atLeast: number): number {
  const end = bytes.length
  let objects = 0
  let pos = 0
  while (pos < end && objects < atLeast) {
    const byte = bytes[pos]
    if (byte <= 0x7f || byte >= 0xe0) { pos++; continue } // fixint
    if (byte <= 0x9f) { objects++; pos++; continue } // fixmap, fixarray
    if (byte <= 0xbf) { pos += 1 + (byte & 0x1f); continue } // fixstr
    switch (byte) {
      case 0xc4: objects++; pos += 2 + bytes[pos + 1]; break // bin8
      case 0xc5: objects++; pos += 3 + uint16(bytes, pos + 1); break // bin16
      case 0xc6: objects++; pos += 5 + uint32(bytes, pos + 1); break // bin32
      case 0xd9: pos += 2 + bytes[pos + 1]; break // str8
      case 0xda: pos += 3 + uint16(bytes, pos + 1); break // str16
      case 0xdb: pos += 5 + uint32(bytes, pos + 1); break // str32
      case 0xc7: pos += 3 + bytes[pos + 1]; break // ext8
      case 0xc8: pos += 4 + uint16(bytes, pos + 1); break // ext16
      case 0xc9: pos += 6 + uint32(bytes, pos + 1); break // ext32
      case 0xdc: case 0xdd: case 0xde: case 0xdf: objects++; pos += HEADER_SIZE[byte - 0xc0] as number; break // array16/32, map16/32
      default: pos += HEADER_SIZE[byte - 0xc0] ?? 1 // nil, bool, numbers, fixext (0xc1: never written)
    }
  }
  return objects
}

// Past the end, a read is undefined and the position NaN: the loop ends.
const uint16 = (bytes: Uint8Array, at: number): number => (bytes[at] << 8) | bytes[at + 1]
const uint32 = (bytes: Uint8Array, at: number): number => bytes[at] * 0x1000000 + ((bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3])

/** What msgpackProblem found of a body it read whole: the values decoding makes into objects (maps, arrays, bins). */
export interface MsgpackShape { objects: number }

// Bytes of the header (or of the whole value, for fixed-size scalars and fixext)
// for 0xc0..0xdf; undefined for 0xc1, which msgpack never uses.
/** Bytes of each msgpack header from 0xc0 on (index: type byte − 0xc0); for a scalar, the whole value. */
export const HEADER_SIZE: ReadonlyArray<number | undefined> = [
  1, undefined, 1, 1, // 0xc0 nil, 0xc1 never used, 0xc2 false, 0xc3 true
  2, 3, 5, // 0xc4-0xc6 bin 8/16/32: length
  3, 4, 6, // 0xc7-0xc9 ext 8/16/32: length and type, before the data
  5, 9, // 0xca float32, 0xcb float64
  2, 3, 5, 9, // 0xcc-0xcf uint 8/16/32/64
  2, 3, 5, 9, // 0xd0-0xd3 int 8/16/32/64
  3, 4, 6, 10, 18, // 0xd4-0xd8 fixext 1/2/4/8/16: type and data included
  2, 3, 5, // 0xd9-0xdb str 8/16/32: length
  3, 5, 3, 5 // 0xdc array16, 0xdd array32, 0xde map16, 0xdf map32
]

/** ext 8/16/32 and fixext 1/2/4/8/16 (timestamps are fixext/ext of type -1). */
const isExtension = (byte: number): boolean => (byte >= 0xc7 && byte <= 0xc9) || (byte >= 0xd4 && byte <= 0xd8)

/**
 * Whether bytes[start, end) are UTF-8. Short strings, nearly always ASCII, are
 * checked here: a native call per string costs more than the bytes themselves
 * (8 M one-letter strings: 680 ms with isUtf8 alone, 46 ms this way).
 */
function isText (bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start <= 64) {
    let i = start
    while (i < end && bytes[i] < 0x80) i++
    if (i === end) return true
  }
  return isUtf8(bytes.subarray(start, end))
}

const PROTO = Buffer.from('__proto__')

/**
 * Whether a worker's msgpack holds a map key __proto__, not merely those bytes somewhere,
 * in a value or inside bytes. Anything else the walk finds wrong (which a worker's strict
 * UTF-8 packer never writes) answers true as well: such bytes are not sent as they are.
 */
export function holdsProtoKey (bytes: Uint8Array): boolean {
  return msgpackProblem(bytes, Infinity, Infinity, true) !== undefined
}

function isProtoKey (bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start !== PROTO.length) return false
  for (let i = 0; i < PROTO.length; i++) if (bytes[start + i] !== PROTO[i]) return false
  return true
}

// msgpackProblem's answer for an extension type: valid msgpack, but not plain data.
const EXTENSION_TYPE = 'the body holds a msgpack extension type or timestamp, which tasks cannot receive; send plain maps, arrays, strings, numbers, booleans, nil and bin ' +
  '(msgpackr\'s default Packr writes objects as records, an extension: use new Packr({ useRecords: false }))'
