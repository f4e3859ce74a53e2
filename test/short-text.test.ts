// shorten and headAndTailLines: text cut for people and logs.

import t from 'tap'
import { headAndTailLines, shorten } from '../src/short-text.js'

t.test('shorten: at most max code points, an emoji never cut in half', async (t) => {
  t.equal(shorten('abc', 3), 'abc')
  t.equal(shorten('abcdef', 5), 'ab...')
  t.equal(shorten('😀😀😀😀😀😀', 5), '😀😀...')
})

t.test('headAndTailLines: short text as it is; long text as its first and last lines, each line cut, with the count left out', async (t) => {
  t.equal(headAndTailLines('a\nb', 10, 5), 'a\nb')
  const lines = Array.from({ length: 100 }, (_, i) => `line ${i}`)
  const kept = headAndTailLines(lines.join('\n'), 100, 50)
  t.ok(kept.length <= 100 + 40, `about max characters (${kept.length})`)
  t.match(kept, /^line 0\nline 1\n/, 'the first lines')
  t.match(kept, /\nline 98\nline 99$/, 'the last lines')
  t.match(kept, /\n\.\.\. \[\d+ lines left out\] \.\.\.\n/)
  const cut = headAndTailLines(`head\n${'x'.repeat(5000)}\ntail`, 100, 20)
  t.equal(cut, `head\n${'x'.repeat(17)}...\ntail`, 'a long line cut to maxLine, all the lines then fitting')
  t.equal(headAndTailLines('x'.repeat(500), 100, 20), `${'x'.repeat(17)}...`, 'one enormous line: cut')
  t.ok(headAndTailLines('\n'.repeat(100_000), 1000, 20).length < 1100, 'many empty lines: bounded')
})
