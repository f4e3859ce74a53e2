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
  /** 0: not a frame; 1: a traceback's innermost frame; 2: its outermost; 3: the others. */
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
 * of sub-exceptions): those of the first and last ones.
 */
export function cutTraceback (traceback: string, maxBytes: number, maxLineChars: number): string {
  // No character costs more than 6 bytes of JSON (`\u0001`): nothing to measure.
  if (traceback.length <= maxLineChars && traceback.length <= maxBytes / 6) return traceback
  const lines = traceback.split('\n').map((line) => shorten(line, maxLineChars))
  const units = unitsOf(lines)
  if (units.reduce((sum, unit) => sum + unit.bytes, 0) <= maxBytes) return lines.join('\n')
  // Most important first; among equals, nearest either end (the first and the last causes).
  const byImportance = units.map((unit, at) => ({ unit, key: unit.rank * units.length + Math.min(at, units.length - 1 - at) }))
    .sort((a, b) => a.key - b.key).map(({ unit }) => unit)
  // Taken in that order while they fit, then given back from the least important while the
  // markers of the gaps left make it too long.
  const kept = new Set<Unit>()
  const taken: Unit[] = []
  let bytes = 0
  for (const unit of byImportance) {
    if (bytes + unit.bytes > maxBytes) continue
    kept.add(unit)
    taken.push(unit)
    bytes += unit.bytes
  }
  let text = keptText(lines, units, kept)
  while (jsonBytes(text) > maxBytes && taken.length > 0) {
    kept.delete(taken.pop() as Unit)
    text = keptText(lines, units, kept)
  }
  return text
}

/** The kept units' lines, in order, with a marker where lines were left out. */
function keptText (lines: readonly string[], units: readonly Unit[], kept: ReadonlySet<Unit>): string {
  const out: string[] = []
  let leftOut = 0
  for (const unit of units) {
    if (kept.has(unit)) {
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

/** The traceback's lines as units: each frame with its source lines, and each other line alone. */
function unitsOf (lines: readonly string[]): Unit[] {
  const units: Unit[] = []
  let framesFrom = -1 // the index in units of the current run of frames' first
  const bodies = lines.map((line) => line.replace(GROUP_MARGIN, ''))
  for (let at = 0; at < lines.length;) {
    if (FRAME_START.test(bodies[at])) {
      let end = at + 1
      while (end < lines.length && FRAME_MORE.test(bodies[end])) end++
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
  return units
}

function sumBytes (lines: readonly string[], from: number, end: number): number {
  let bytes = 0
  for (let at = from; at < end; at++) bytes += jsonBytes(lines[at])
  return bytes
}
