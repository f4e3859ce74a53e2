// The bytes of a result's value inside its reply frame, found without decoding again,
// so a msgpack answer sends the worker's bytes as they are (protocol.ts decodeReply).

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
export function resultValueBytes (body: Uint8Array): Uint8Array | undefined {
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
