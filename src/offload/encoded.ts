// The values that stand for work the offload thread does (offloader.ts): a large
// body still to be parsed, and an answer already written as bytes.

import type { RawText } from '../routes/raw-body.js'

/**
 * A large body left as bytes for the offload thread: JSON or msgpack by its
 * content-type parser, raw text (with what decoding it needs) by the route.
 */
export class PendingBody {
  constructor (readonly bytes: Buffer, readonly kind: 'json' | 'msgpack' | 'text', readonly raw?: RawText) {}
}

export type AnswerFormat = 'json' | 'msgpack'

/** A task's result written as JSON or msgpack off the event loop: the route sends the bytes as they are. */
export class EncodedAnswer {
  constructor (readonly bytes: Buffer, readonly format: AnswerFormat) {}
}
