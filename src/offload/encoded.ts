// The values that stand for work the offload thread does (offloader.ts): a large
// body still to be parsed, and an answer already written as bytes.

/** A large JSON or msgpack body, left as bytes by its content-type parser for the offload thread. */
export class PendingBody {
  constructor (readonly bytes: Buffer, readonly kind: 'json' | 'msgpack') {}
}

export type AnswerFormat = 'json' | 'msgpack'

/** A task's result written as JSON or msgpack off the event loop: the route sends the bytes as they are. */
export class EncodedAnswer {
  constructor (readonly bytes: Buffer, readonly format: AnswerFormat) {}
}
