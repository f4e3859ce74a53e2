// windows-1252 text, decoded as the WHATWG Encoding standard says. Every label of
// Latin-1 (latin1, iso-8859-1, us-ascii, ascii, cp1252...) means windows-1252 there,
// whose bytes 0x80-0x9F are letters and punctuation (0x80 the euro sign, 0x85 the
// ellipsis, 0x93 and 0x94 curly quotes). Some Node releases (20.20, nodejs/node#60888)
// decode them as the C1 control characters U+0080-U+009F instead: a task would see
// U+0085, which Python counts as whitespace, where the client sent an ellipsis.

/** Bytes 0x80-0x9F of windows-1252 (the other 224 are Latin-1's: their own code points). */
const HIGH_CONTROLS = [
  0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
  0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178
]

/** Each byte's code point in windows-1252. */
const CODE_POINTS = Uint16Array.from({ length: 256 }, (_, byte) => byte >= 0x80 && byte <= 0x9F ? HIGH_CONTROLS[byte - 0x80] : byte)

/** Whether this Node's TextDecoder gets windows-1252 wrong (checked once; a fixed Node is used as it is). */
export const NATIVE_WINDOWS_1252_IS_LATIN_1 = new TextDecoder('windows-1252').decode(Uint8Array.of(0x80)) !== '\u20AC'

/**
 * The text of windows-1252 `bytes`. Without a byte in 0x80-0x9F it is Latin-1's, which
 * Node decodes natively; with one, each byte goes through a table into UTF-16 and Node
 * decodes that (a regular expression's replace, one callback per byte, held the event loop
 * ~200 ms for 2 MiB of such bytes: this is ~10 ms).
 */
export function decodeWindows1252 (bytes: Buffer): string {
  let first = 0
  while (first < bytes.length && (bytes[first] < 0x80 || bytes[first] > 0x9F)) first++
  if (first === bytes.length) return bytes.toString('latin1')
  const utf16 = Buffer.allocUnsafe(bytes.length * 2)
  for (let i = 0; i < bytes.length; i++) {
    const codePoint = CODE_POINTS[bytes[i]]
    utf16[2 * i] = codePoint & 0xFF // little-endian, whatever the machine's order
    utf16[2 * i + 1] = codePoint >> 8
  }
  return utf16.toString('utf16le')
}
