// Checks of a JSON body's strings made on its text, not on the parsed value. A key
// repeated in an object keeps only its last value once parsed, so a check of the value
// never sees what an overwritten one held ({"a": {"__proto__": 1}, "a": 2}). On the
// text nothing is dropped. Each check is a regex search of the text; hasProtoKey then
// reads the keys themselves, only for a body where that search found a likely one.

/**
 * `"__proto__"` then `:`, each character perhaps written as a \u escape (the test
 * secure-json-parse makes). Its closing quote is never an escaped one (that would follow
 * a backslash, not `_` or `f`), so a match is a key ending in those characters; keys such
 * as `x"__proto__` match too, which is why hasProtoKey then reads the keys themselves.
 */
const SUSPECT_PROTO_KEY = /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"\s*:/

/** __proto__ as a key's raw text may spell it: each character itself or its \u escape (exact: no other escape gives these characters). */
const PROTO_SPELLED = /^(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])$/

/** Whether `text`, which JSON.parse accepted, has a __proto__ key anywhere, in an overwritten value too. */
export function hasProtoKey (text: string): boolean {
  if (!SUSPECT_PROTO_KEY.test(text)) return false
  // In valid JSON every quote outside a string opens one: hop from string to string.
  for (let open = text.indexOf('"'); open !== -1;) {
    const close = closingQuote(text, open)
    let next = close + 1
    while (isJsonSpace(text.charCodeAt(next))) next++
    if (text.charCodeAt(next) === 0x3a && PROTO_SPELLED.test(text.slice(open + 1, close))) return true // a key: `:` follows
    open = text.indexOf('"', next)
  }
  return false
}

/** Whether `text`, which JSON.parse accepted, escapes a UTF-16 surrogate that is not half of a pair, anywhere. */
export function hasLoneSurrogate (text: string): boolean {
  // Hop from one surrogate escape to the next (a regex search, not a visit of every escape:
  // Python's json.dumps escapes all non-ASCII text, and one emoji in it made this the cost
  // of parsing the body over again).
  const search = /\\u[dD][89a-fA-F]/g
  for (let found = search.exec(text); found !== null; found = search.exec(text)) {
    const at = found.index
    let backslashes = 0
    while (text.charCodeAt(at - 1 - backslashes) === 0x5c) backslashes++
    if (backslashes % 2 === 1) continue // an escaped backslash, then "ud8..": text, not an escape
    const unit = escapedUnit(text, at)
    if (unit >= 0xdc00) return true
    if (text.charCodeAt(at + 6) !== 0x5c || text.charCodeAt(at + 7) !== 0x75) return true
    const low = escapedUnit(text, at + 6)
    if (low < 0xdc00 || low > 0xdfff) return true
    search.lastIndex = at + 12
  }
  return false
}

/** The index of the quote that closes the string opened at `open`. */
function closingQuote (text: string, open: number): number {
  for (let quote = text.indexOf('"', open + 1); ; quote = text.indexOf('"', quote + 1)) {
    let backslashes = 0
    while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes++
    if (backslashes % 2 === 0) return quote
  }
}

/** The UTF-16 unit the \u escape at `at` stands for (its four hex digits). */
function escapedUnit (text: string, at: number): number {
  return Number.parseInt(text.slice(at + 2, at + 6), 16)
}

/** JSON's whitespace: space, tab, line feed, carriage return. */
function isJsonSpace (code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d
}
