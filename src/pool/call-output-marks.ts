// The marks a worker writes on stderr around each call's output (workers/pyfleet/std_fds.py),
// so that a line is logged with the request it came from. Without them a line took the
// request id of the call sent to the worker last; a line a task printed just before
// returning is often read after the reply, by which time the server has sent the worker its
// next call: 14 % of such lines had the wrong request id under load (16 connections, 4
// workers). A mark is a line of its own, never logged:
//
//   \x1e<token> call <call id>   the call's first output follows
//   \x1e<token> end              what follows is not that call's output
//
// A call that writes nothing gets no mark. The token is random, one per worker, and only on
// the worker's command line: a client's text that a task prints cannot pass for a mark.

import { randomBytes } from 'node:crypto'

/** A mark's first character (ASCII record separator): a line without it holds no mark. */
const MARK_START = '\x1e'

export type CallMark = { call: number } | 'end'

export class CallOutputMarks {
  /** Given to the worker as `--stderr-mark <token>`: letters and digits. */
  readonly token = randomBytes(8).toString('hex')
  readonly #prefix = `${MARK_START}${this.token} `
  /** The longest a mark is: a line's end longer than this after its last MARK_START holds none still arriving. */
  readonly maxChars = this.#prefix.length + 'call 4294967295'.length

  /**
   * Where a mark starts in `line` (-1: none). Not only at 0: output that did not end its line
   * and was not written through `sys.stdout`/`sys.stderr` (a C library's) comes before it.
   */
  indexIn (line: string): number {
    // The common case at the cost of one character search.
    return line.includes(MARK_START) ? line.indexOf(this.#prefix) : -1
  }

  /**
   * Where the end of a line still arriving may be the start of a mark (its last MARK_START, if
   * close enough to the end); -1 if it cannot. A line is logged in pieces as it arrives when it
   * grows long, and a piece must not end inside a mark: the mark would be logged, its token
   * with it, and not followed.
   */
  startIn (partial: string): number {
    const at = partial.lastIndexOf(MARK_START)
    return at >= 0 && partial.length - at <= this.maxChars ? at : -1
  }

  /** The mark `text` (from indexIn on) is; undefined if it is none (it is then logged as text). */
  read (text: string): CallMark | undefined {
    const rest = text.slice(this.#prefix.length)
    if (rest === 'end') return 'end'
    const call = /^call ([0-9]{1,10})$/.exec(rest)
    return call === null ? undefined : { call: Number(call[1]) }
  }
}
