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
