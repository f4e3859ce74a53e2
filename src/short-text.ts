// Text shown to people (a table cell, a value in an error's details) cut to a length.

/**
 * At most `max` characters, counted as code points (an emoji is not cut in half), with "..."
 * at the end of a cut one. Only the start of a long text is read: the keys of a 1 MB body may
 * be passed here.
 */
export function shorten (text: string, max: number): string {
  if (text.length <= max) return text
  // 2 (max + 1) UTF-16 units hold max + 1 code points, if the text has that many.
  const chars = Array.from(text.slice(0, 2 * (max + 1)))
  return chars.length > max ? `${chars.slice(0, max - 3).join('')}...` : text
}

/**
 * A long text of lines (a traceback) cut to about `max` characters: each line to `maxLine`,
 * then its first lines and its last (where it began, and the exception), with how many were
 * left out between them.
 */
export function headAndTailLines (text: string, max: number, maxLine: number): string {
  if (text.length <= max) return text
  const lines = text.split('\n').map((line) => shorten(line, maxLine))
  const half = max / 2
  let first = 0 // lines[0, first) are kept at the head
  for (let size = 0; first < lines.length && size + lines[first].length + 1 <= half; first++) size += lines[first].length + 1
  let last = lines.length // lines[last, end) are kept at the tail
  for (let size = 0; last > first && size + lines[last - 1].length + 1 <= half; last--) size += lines[last - 1].length + 1
  if (last === first) return lines.join('\n')
  return [...lines.slice(0, first), `... [${last - first} lines left out] ...`, ...lines.slice(last)].join('\n')
}
