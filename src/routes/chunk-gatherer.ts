// A request body's small chunks, copied together before the body parser keeps them.
// Node hands a body over as it arrives, a Buffer per TCP segment or per chunk of a
// chunked body, and the parser keeps every one until the body is whole: a body sent as
// 1-byte chunks cost Node ~300 bytes of heap per byte, uncounted (RECEIVE_LIMIT_BYTES
// counts bytes), and a few 4 MB ones ran a 768 MB heap out of memory. receive-limit.ts
// passes every body it counts through one.

/** The most a gathering buffer holds before it is passed on; chunks of a quarter of it or more pass as they are. */
const GATHER_BYTES = 64 * 1024
/** A first gathering buffer's size: it doubles as it fills, up to GATHER_BYTES. */
const FIRST_BYTES = 4096

export class ChunkGatherer {
  readonly #push: (chunk: Buffer) => void
  #gathered: Buffer | undefined
  #filled = 0

  /** `push`: passes a chunk on to the parser, in order. */
  constructor (push: (chunk: Buffer) => void) {
    this.#push = push
  }

  /** Passes `chunk` on, at once if it is large (after what was gathered before it), else gathered. */
  add (chunk: Buffer): void {
    if (chunk.length >= GATHER_BYTES / 4) {
      this.flush()
      this.#push(chunk)
      return
    }
    let offset = 0
    while (offset < chunk.length) {
      if (this.#gathered === undefined || this.#filled === this.#gathered.length) this.#grow(chunk.length - offset)
      const gathered = this.#gathered as Buffer
      const taken = chunk.copy(gathered, this.#filled, offset)
      this.#filled += taken
      offset += taken
      if (this.#filled === GATHER_BYTES) this.flush()
    }
  }

  /**
   * Passes on what has been gathered: a full buffer as it is, a partly filled one as an
   * exact copy, never as a view, which would keep the whole buffer alive until the body
   * is parsed.
   */
  flush (): void {
    const gathered = this.#gathered
    if (gathered === undefined || this.#filled === 0) return
    if (this.#filled === gathered.length) {
      this.#push(gathered)
      this.#gathered = undefined
    } else {
      this.#push(Buffer.from(gathered.subarray(0, this.#filled)))
    }
    this.#filled = 0
  }

  /** None yet: a first buffer, large enough for `needed` up to GATHER_BYTES; full (below GATHER_BYTES): one twice its size. */
  #grow (needed: number): void {
    const gathered = this.#gathered
    const size = gathered === undefined ? Math.min(GATHER_BYTES, Math.max(FIRST_BYTES, needed)) : Math.min(GATHER_BYTES, gathered.length * 2)
    const grown = Buffer.allocUnsafe(size)
    if (gathered !== undefined) gathered.copy(grown, 0, 0, this.#filled)
    this.#gathered = grown
  }
}
