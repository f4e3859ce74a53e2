// A Python traceback cut to fit a log line, keeping what says what went wrong. A cut that kept
// its first and last lines lost the middle of a chain (`raise ... from`) and all but the last
// sub-exception of an ExceptionGroup, which is where a TaskGroup's failures are (a review: one
// of six causes kept). So the lines that are not frames (each exception's line and its notes,
// the chain's sentences, the group's headers and separators) are kept first, then each
// traceback's innermost frame, then its outermost, then the rest, as the bytes allow.

import { shorten } from './short-text.js'

/** The margin of a line inside an ExceptionGroup's traceback (`  | `, `    | `, deeper for nested groups). */
const GROUP_MARGIN = /^ *\| /
/** A frame's first line (`  File "x.py", line 3, in f`), once out of a group's margin. */
const FRAME_START = /^ {2}File "/
/** A frame's further lines: its source and carets (4 spaces in), `[Previous line repeated N more times]`. */
const FRAME_MORE = /^(?: {4}| {2}\[Previous line repeated )/

/** Lines of a traceback that are kept or left out together, and how much they matter. */
interface Unit {
  first: number
  end: number
  /** -1: the exception's line the traceback ends with; 0: not a frame; 1: a traceback's innermost frame; 2: its outermost; 3: the others. */
  rank: number
  /** Bytes in the log line's JSON string. */
  bytes: number
}

/** `text`'s lines as a JSON string holds them: escapes, UTF-8, and the `\n` between lines. */
function jsonBytes (line: string): number {
  return Buffer.byteLength(JSON.stringify(line)) // the quotes stand for the `\n` and its backslash
}

/**
 * `traceback` as a log keeps it: each line cut to `maxLineChars`, then, if its lines still take
 * more than `maxBytes` of JSON, the lines that matter most (see above), with `... [N lines left
 * out] ...` where lines were left out. Lines that are not frames alone past the bound (hundreds
 * of sub-exceptions): its last (the exception it ends with), then those nearest either end.
 */
export function cutTraceback (traceback: string, maxBytes: number, maxLineChars: number): string {
  // No character costs more than 6 bytes of JSON (`\u0001`): nothing to measure.
  if (traceback.length <= maxLineChars && traceback.length <= maxBytes / 6) return traceback
  const lines = traceback.split('\n').map((line) => shorten(line, maxLineChars))
  const units = unitsOf(lines)
  if (units.reduce((sum, unit) => sum + unit.bytes, 0) <= maxBytes) return lines.join('\n')
  // Taken in that order while they fit, each with what it changes in the gaps' markers: one
  // that fills a gap removes its marker, one in the middle of a gap splits it in two. In one
  // pass: a traceback of 40,000 one-character lines (a task's message) is cut in milliseconds.
  const kept = new Array<boolean>(units.length).fill(false)
  const isEdge = (at: number): boolean => at < 0 || at >= units.length || kept[at]
  let bytes = GAP_MARKER_BYTES // nothing kept: one gap
  for (const at of byImportance(units)) {
    const edges = Number(isEdge(at - 1)) + Number(isEdge(at + 1))
    const markers = edges === 2 ? -1 : edges === 0 ? 1 : 0
    const cost = units[at].bytes + markers * GAP_MARKER_BYTES
    if (bytes + cost > maxBytes) continue
    kept[at] = true
    bytes += cost
  }
  return keptText(lines, units, kept)
}

/**
 * The units' indexes, most important first (by rank); among equals, nearest either end first
 * (the first and the last causes), from both ends of each rank's units in turn. No sort: a
 * traceback may have tens of thousands of lines.
 */
function * byImportance (units: readonly Unit[]): Generator<number> {
  for (let rank = -1; rank <= 3; rank++) {
    const ofRank: number[] = []
    for (let at = 0; at < units.length; at++) if (units[at].rank === rank) ofRank.push(at)
    for (let low = 0, high = ofRank.length - 1; low <= high; low++, high--) {
      // Nearer its end is the one nearer the traceback's end it is closer to.
      const lowDistance = ofRank[low]
      const highDistance = units.length - 1 - ofRank[high]
      if (low === high) yield ofRank[low]
      else if (lowDistance <= highDistance) {
        yield ofRank[low]
        yield ofRank[high]
      } else {
        yield ofRank[high]
        yield ofRank[low]
      }
    }
  }
}

/** The kept units' lines, in order, with a marker where lines were left out. */
function keptText (lines: readonly string[], units: readonly Unit[], kept: readonly boolean[]): string {
  const out: string[] = []
  let leftOut = 0
  for (const [at, unit] of units.entries()) {
    if (kept[at]) {
      if (leftOut > 0) out.push(gapMarker(leftOut))
      leftOut = 0
      for (let at = unit.first; at < unit.end; at++) out.push(lines[at])
    } else {
      leftOut += unit.end - unit.first
    }
  }
  if (leftOut > 0) out.push(gapMarker(leftOut))
  return out.join('\n')
}

const gapMarker = (lines: number): string => `... [${lines} line${lines === 1 ? '' : 's'} left out] ...`
/** The most a marker takes, whatever its count: what each is reckoned at. */
const GAP_MARKER_BYTES = jsonBytes(gapMarker(99_999_999))

/** The traceback's lines as units: each frame with its source lines, and each other line alone. */
function unitsOf (lines: readonly string[]): Unit[] {
  const units: Unit[] = []
  let framesFrom = -1 // the index in units of the current run of frames' first
  // Out of a group's margin; only a line that starts with a space can be in one, or a frame's.
  const body = (line: string): string => line.charCodeAt(0) === 32 ? line.replace(GROUP_MARGIN, '') : ''
  for (let at = 0; at < lines.length;) {
    if (FRAME_START.test(body(lines[at]))) {
      let end = at + 1
      while (end < lines.length && FRAME_MORE.test(body(lines[end]))) end++
      if (framesFrom < 0) framesFrom = units.length
      units.push({ first: at, end, rank: framesFrom === units.length ? 2 : 3, bytes: sumBytes(lines, at, end) })
      at = end
      continue
    }
    // A line that is not a frame ends a run of frames: the run's last is its innermost.
    if (framesFrom >= 0) units[units.length - 1].rank = 1
    framesFrom = -1
    units.push({ first: at, end: at + 1, rank: 0, bytes: jsonBytes(lines[at]) })
    at++
  }
  if (framesFrom >= 0) units[units.length - 1].rank = 1
  // The exception the traceback ends with: the line right after its last frame (a multi-line
  // message's other lines, or notes, may follow it); without frames, its last line.
  let lastFrame = -1
  for (let at = units.length - 1; at >= 0 && lastFrame < 0; at--) if (units[at].rank > 0) lastFrame = at
  let exceptionAt = -1
  if (lastFrame >= 0) {
    for (let at = lastFrame + 1; at < units.length && exceptionAt < 0; at++) if (lines[units[at].first] !== '') exceptionAt = at
  }
  for (let at = units.length - 1; at >= 0 && exceptionAt < 0; at--) {
    if (lines[units[at].first] !== '') exceptionAt = at
  }
  if (exceptionAt >= 0) units[exceptionAt].rank = -1
  return units
}

function sumBytes (lines: readonly string[], from: number, end: number): number {
  let bytes = 0
  for (let at = from; at < end; at++) bytes += jsonBytes(lines[at])
  return bytes
}
