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
 * How many UTF-16 units of `text` make its longest prefix whose characters take at most
 * `maxBytes` in a JSON log line (UTF-8, with JSON's escapes: a control character takes six
 * bytes, `"` two, CJK three, an emoji four, a lone surrogate six), never between the two
 * halves of a surrogate pair. `text.length` when all of it fits.
 */
export function jsonFittingPrefix (text: string, maxBytes: number): number {
  let bytes = 0
  let at = 0
  while (at < text.length) {
    const code = text.charCodeAt(at)
    let units = 1
    let cost: number
    if (code < 0x20) cost = code === 8 || code === 9 || code === 10 || code === 12 || code === 13 ? 2 : 6
    else if (code === 0x22 || code === 0x5c) cost = 2
    else if (code < 0x80) cost = 1
    else if (code < 0x800) cost = 2
    else if (code >= 0xd800 && code <= 0xdbff && at + 1 < text.length && (text.charCodeAt(at + 1) & 0xfc00) === 0xdc00) {
      cost = 4
      units = 2
    } else if (code >= 0xd800 && code <= 0xdfff) cost = 6
    else cost = 3
    if (bytes + cost > maxBytes) return at
    bytes += cost
    at += units
  }
  return at
}

/**
 * shorten(), then cut further if what is left takes more than `maxJsonBytes` in a JSON log
 * line (control characters take six bytes each): for fields whose sum must stay under a bound.
 */
export function shortenForJson (text: string, maxChars: number, maxJsonBytes: number): string {
  const short = shorten(text, maxChars)
  const fits = jsonFittingPrefix(short, maxJsonBytes)
  return fits === short.length ? short : `${short.slice(0, jsonFittingPrefix(short, maxJsonBytes - 3))}...`
}
