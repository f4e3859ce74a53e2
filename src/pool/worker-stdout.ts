// A worker's stdout, read into frames: the ready message's limit, then MAX_FRAME_BYTES;
// a frame or a stream's end that breaks the protocol; which reply frames are left undecoded
// for the offload thread. What a frame means, given the worker's state, is python-worker.ts's to say.

import { FrameDecoder, FrameError } from './frames.js'
import { decodeReply, ProtocolError, MSG_DEFERRED, type DeferredReply, type ReplyMessage } from './protocol.js'
import { decodeReady, type ReadyMessage } from './ready-message.js'
import { msgpackObjects, OBJECTS_OFFLOAD_DIVISOR } from '../value-shape.js'

/**
 * The ready message lists every task with its schema: with many tasks it can outgrow a small
 * MAX_FRAME_BYTES, which is about calls. It has a limit of its own, at least this.
 */
const READY_FRAME_MAX_BYTES = 16 * 1024 * 1024
/** The ready frame's limit, as its error names it: the user may have set MAX_FRAME_BYTES far lower, and the task table is what to shrink. */
const READY_FRAME_LIMIT = 'for the ready message, which lists every task with its schemas: MAX_FRAME_BYTES or 16 MiB, whichever is larger; raise MAX_FRAME_BYTES, or declare fewer or smaller schemas'
/** How long an exit may lag the end of the worker's stdout before the worker counts as mute. */
const STREAM_END_GRACE_MS = 500

export interface StdoutEvents {
  /** Each frame's body: what it throws (a ProtocolError) is a protocol error too. */
  frame: (body: Buffer) => void
  /** The worker broke the protocol: a frame over its limit or not a message, or its stream ended while it lives on. */
  protocolError: (message: string) => void
  /** Whether the worker is neither stopping nor dead (PythonWorker's isAlive). */
  isAlive: () => boolean
}

/**
 * Whether a reply frame is decoded and made into its answer on the offload thread: from
 * OFFLOAD_MIN_BYTES, or from OFFLOAD_MIN_BYTES / 8 maps, arrays and bins in a smaller one
 * (an echo of 200 KB of empty maps held the event loop ~70–200 ms). Only frames that could
 * hold that many (one byte each) are counted: the usual small reply costs one comparison.
 */
function isForTheThread (frame: Buffer, offloadMinBytes: number): boolean {
  if (offloadMinBytes === 0) return false
  if (frame.length >= offloadMinBytes) return true
  // The frame's own map ({t, id, value}) aside: the value's count, as a body's is counted (takesObjects).
  const objects = offloadMinBytes / OBJECTS_OFFLOAD_DIVISOR + 1
  return frame.length >= objects && msgpackObjects(frame, objects) >= objects
}

export class WorkerStdout {
  readonly #decoder: FrameDecoder
  readonly #maxFrameBytes: number
  readonly #offloadMinBytes: number
  readonly #on: StdoutEvents

  constructor (maxFrameBytes: number, offloadMinBytes: number, on: StdoutEvents) {
    this.#maxFrameBytes = maxFrameBytes
    this.#offloadMinBytes = offloadMinBytes
    this.#on = on
    this.#decoder = new FrameDecoder(Math.max(maxFrameBytes, READY_FRAME_MAX_BYTES), on.frame, READY_FRAME_LIMIT)
  }

  /** True when a frame has begun but not ended. */
  get isMidFrame (): boolean { return this.#decoder.isMidFrame }

  write (chunk: Buffer): void {
    try {
      this.#decoder.push(chunk)
    } catch (error) {
      if (!(error instanceof FrameError || error instanceof ProtocolError)) throw error
      this.#on.protocolError(error.message)
    }
  }

  /**
   * The protocol stream ended. A process that exits closes it just before, so the exit
   * gets a moment to be reported (a crash stays a crash); one still alive after that
   * can never answer again (a task closed the stream), and waiting for its timeout
   * would only hold the call and the worker.
   */
  end (): void {
    setTimeout(() => {
      // Decided after the next poll phase: if the event loop was blocked past the grace,
      // timers run before the exit that was already pending has been read.
      setImmediate(() => {
        if (!this.#on.isAlive()) return
        this.#on.protocolError('it closed its protocol stream but is still running')
      })
    }, STREAM_END_GRACE_MS).unref()
  }

  /** The first frame, the ready message; the frames after it are calls' replies, held to MAX_FRAME_BYTES. */
  readyOf (body: Buffer): ReadyMessage {
    const ready = decodeReady(body)
    this.#decoder.limitFrames(this.#maxFrameBytes)
    return ready
  }

  /**
   * Call `callId`'s reply: decoded, or left as its frame when it is large (a DeferredReply:
   * see WorkerOptions' offloadMinBytes).
   */
  replyOf (body: Buffer, callId: number): ReplyMessage | DeferredReply {
    return isForTheThread(body, this.#offloadMinBytes)
      ? { t: MSG_DEFERRED, id: callId, frame: body } as const
      : decodeReply(body, callId)
  }
}
