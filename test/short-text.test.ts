// shorten: text cut for people and logs.

import t from 'tap'
import { shorten } from '../src/short-text.js'

t.test('shorten: at most max code points, an emoji never cut in half', async (t) => {
  t.equal(shorten('abc', 3), 'abc')
  t.equal(shorten('abcdef', 5), 'ab...')
  t.equal(shorten('😀😀😀😀😀😀', 5), '😀😀...')
})
