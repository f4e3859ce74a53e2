// windows-1252 text decoded as the WHATWG Encoding standard says, whichever way this Node's
// own decoder reads bytes 0x80-0x9F (src/routes/windows-1252.ts).

import t from 'tap'
import { decodeWindows1252 } from '../src/routes/windows-1252.js'

/** The standard's table for 0x80-0x9F, written out here as the test's own reference. */
const HIGH = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008DŽ\u008F\u0090‘’“”•–—˜™š›œ\u009DžŸ'

t.test('every byte decodes to its windows-1252 character', async (t) => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, byte) => byte))
  const expected = Array.from({ length: 256 }, (_, byte) => byte >= 0x80 && byte <= 0x9F ? HIGH[byte - 0x80] : String.fromCharCode(byte)).join('')
  t.equal(HIGH.length, 32)
  t.equal(decodeWindows1252(all), expected)
  t.equal(decodeWindows1252(Buffer.from('caf\xe9 \x85 \x80', 'latin1')), 'café … €', 'Latin-1 letters, the ellipsis, the euro sign')
  t.equal(decodeWindows1252(Buffer.alloc(0)), '')
  t.equal(decodeWindows1252(Buffer.from('plain ascii')), 'plain ascii', 'no byte of 0x80-0x9F: Latin-1 as it is')
})

t.test('random bytes decode as the byte-by-byte reading of the table does', async (t) => {
  let seed = 7
  const random = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed }
  for (let round = 0; round < 50; round++) {
    const bytes = Buffer.from(Array.from({ length: random() % 300 }, () => random() % 256))
    const expected = [...bytes].map((byte) => byte >= 0x80 && byte <= 0x9F ? HIGH[byte - 0x80] : String.fromCharCode(byte)).join('')
    t.equal(decodeWindows1252(bytes), expected, `round ${round}`)
  }
})
