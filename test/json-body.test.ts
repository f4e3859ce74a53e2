// firstInvalidUtf8: the offset a 400 for a JSON body that is not UTF-8 names.

import t from 'tap'
import { isUtf8 } from 'node:buffer'
import { firstInvalidUtf8 } from '../src/routes/json-body.js'

t.test('names the first byte of the first bad sequence', async (t) => {
  const cases: Array<[number[], number]> = [
    [[0x7b, 0xe9, 0x7d], 1], // Latin-1 é
    [[0x61, 0xe2, 0x82], 1], // a character cut off at the end
    [[0xe2, 0x41], 0], // a lead byte followed by ASCII
    [[0x80], 0], // a lone continuation byte
    [[0xc0, 0xaf], 0], // an overlong encoding of '/'
    [[0xed, 0xa0, 0x80], 0], // a UTF-16 surrogate encoded as UTF-8 (CESU-8)
    [[0xf4, 0x90, 0x80, 0x80], 0], // past U+10FFFF
    [[0xef, 0xbf, 0xbd, 0xff], 3], // a real U+FFFD, then a byte no UTF-8 has
    [[0xf0, 0x9f, 0x90, 0x8d, 0xef, 0xbf, 0xbd, 0x20, 0xc3, 0x28], 8] // 🐍, U+FFFD, space, then é cut short
  ]
  for (const [bytes, at] of cases) {
    const buffer = Buffer.from(bytes)
    t.notOk(isUtf8(buffer), `${buffer.toString('hex')} is not UTF-8`)
    t.equal(firstInvalidUtf8(buffer), at, buffer.toString('hex'))
  }
})

t.test('valid text of any kind, real U+FFFD included, then one bad byte: its offset, in one pass', async (t) => {
  const pieces = ['a', 'é', '€', '🐍', '\ufffd', '"', '\u0000', '中文']
  let seed = 7
  const next = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
  for (let round = 0; round < 200; round++) {
    const before = Buffer.from(Array.from({ length: next(40) }, () => pieces[next(pieces.length)]).join(''))
    const bad = [0x80, 0xbf, 0xc1, 0xf5, 0xff][next(5)]
    const after = Buffer.from(Array.from({ length: next(10) }, () => pieces[next(pieces.length)]).join(''))
    t.equal(firstInvalidUtf8(Buffer.concat([before, Buffer.from([bad]), after])), before.length)
  }
  // Many real U+FFFD before the bad byte: found all the same (the walk carries its offset along).
  const many = Buffer.concat([Buffer.from('\ufffd'.repeat(200_000)), Buffer.from([0xe9])])
  t.equal(firstInvalidUtf8(many), 600_000)
})
