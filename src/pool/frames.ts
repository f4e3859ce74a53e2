// Length-prefixed frames: a 4-byte unsigned big-endian length, then that many
// bytes of msgpack. This module only cuts and joins bytes; protocol.ts gives
// them meaning.
//
//   +---------------------+------------------------------+
//   | n: uint32 BE        | n bytes of msgpack (one map) |
//   +---------------------+------------------------------+

/** Bytes of the length prefix. */
export const HEADER_BYTES = 4

/** The byte stream broke the framing rules; the peer can no longer be trusted. */
export class FrameError extends Error {
  override name = 'FrameError'
}

/**
 * Cuts a stream of chunks (as a pipe delivers them) into frame bodies.
 *
 * A frame may arrive split over many chunks, and one chunk may hold many
 * frames. Bodies that lie whole inside one chunk are handed out as views of
 * it, without a copy; a body split over chunks is gathered into one buffer
 * allocated once its length is known. The length is checked against the limit
 * before any of the body is stored.
 */
export class FrameDecoder {
  #maxFrameBytes: number
  /** What the limit is, for the error: the setting, or what sets it. */
  #limitName: string
  readonly #onFrame: (body: Buffer) => void
  /** Bytes of a header that was cut between chunks (fewer than HEADER_BYTES). */
  #headerPart: Buffer | null = null
  /** The body being gathered across chunks, and how much of it is filled. */
  #body: Buffer | null = null
  #filled = 0

  constructor (maxFrameBytes: number, onFrame: (body: Buffer) => void, limitName = 'MAX_FRAME_BYTES') {
    this.#maxFrameBytes = maxFrameBytes
    this.#limitName = limitName
    this.#onFrame = onFrame
  }

  /** Sets the limit for frames whose header has not been read yet (a worker's first frame has its own). */
  limitFrames (maxFrameBytes: number, limitName = 'MAX_FRAME_BYTES'): void {
    this.#maxFrameBytes = maxFrameBytes
    this.#limitName = limitName
  }

  /** True when a frame has begun but not ended: EOF now means a cut frame. */
  get isMidFrame (): boolean {
    return this.#headerPart !== null || this.#body !== null
  }

  /** Feeds one chunk; calls onFrame for each complete body. Throws FrameError on an oversize length. */
  push (chunk: Buffer): void {
    let data = chunk
    let offset = 0
    if (this.#body !== null) {
      const body = this.#body
      const take = Math.min(body.length - this.#filled, data.length)
      data.copy(body, this.#filled, 0, take)
      this.#filled += take
      offset = take
      if (this.#filled < body.length) return
      this.#body = null
      this.#onFrame(body)
    } else if (this.#headerPart !== null) {
      data = Buffer.concat([this.#headerPart, data])
      this.#headerPart = null
    }

    const end = data.length
    while (end - offset >= HEADER_BYTES) {
      const length = data.readUInt32BE(offset)
      if (length > this.#maxFrameBytes) {
        throw new FrameError(`frame of ${length} bytes is over the limit of ${this.#maxFrameBytes} (${this.#limitName})`)
      }
      const start = offset + HEADER_BYTES
      if (end - start >= length) {
        offset = start + length
        this.#onFrame(data.subarray(start, offset))
        continue
      }
      const body = Buffer.allocUnsafe(length)
      this.#filled = data.copy(body, 0, start, end)
      this.#body = body
      return
    }
    if (offset < end) this.#headerPart = Buffer.from(data.subarray(offset, end))
  }
}

/** Writes the length prefix into the first HEADER_BYTES of a buffer that reserved them. */
export function writeHeader (frame: Buffer): Buffer {
  frame.writeUInt32BE(frame.length - HEADER_BYTES, 0)
  return frame
}

/** A whole frame (header and body) for a body that was encoded without reserved space. */
export function encodeFrame (body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length)
  frame.set(body, HEADER_BYTES)
  return writeHeader(frame)
}
