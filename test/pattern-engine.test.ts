// Schema patterns run in RE2, in linear time, and read as ECMAScript (JSON Schema's dialect)
// reads them; a pattern RE2 cannot run runs in JavaScript's engine only without the shapes
// that backtrack exponentially, and is refused otherwise.

import t from 'tap'
import { patternEngine } from '../src/pattern-engine.js'

/** As JSON, with every character past ASCII escaped: a line separator in an assertion's name breaks TAP's lines. */
function ascii (text: string): string {
  return JSON.stringify(text).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

t.test('values are accepted and refused as JavaScript\'s RegExp with the u flag does', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['^\\S+$', ['ab', 'a\u00a0b', 'a\vb', 'a\ufeffb', 'a b']],
    ['^\\s*$', ['', ' ', '\v', '\u00a0', '\u3000', '\u2028', 'x']],
    ['^[\\w\\s]+$', ['a b', 'a\u00a0b', 'a-b']],
    ['^.{1,20}$', ['abc', 'a\rb', 'a\nb', 'a\u2028b', 'a\u2029b', '😀']],
    ['^[\\u0041-\\u005A]+(?:-[\\u0041-\\u005A]+)*$', ['AB-CD', 'ab', 'AB-']],
    ['^\\u{1F600}$', ['😀', 'x']],
    ['^\\uD83D\\uDE00$', ['😀', 'x']],
    ['^[a\\uD83D\\uDE00]$', ['😀', 'a', 'b']],
    ['^[\\uD83D\\uDE00-\\uD83D\\uDE4F]+$', ['😀🙏', 'x']],
    ['^\\p{Letter}+(?: \\p{Letter}+)*$', ['Ünï cödé', 'a1']],
    ['^\\p{Script=Greek}+$', ['αβγ', 'abc']],
    ['^\\P{Lu}+$', ['abc', 'aBc']],
    ['^abc$', ['abc', 'abc\n']],
    ['^[^.]+\\.[a-z]{2,}$', ['example.org', 'example.o']],
    ['\\bfoo\\b', ['a foo b', 'afoob']],
    ['^(?<year>\\d{4})-\\d{2}$', ['2026-11', '26-11']],
    ['^a.*?b$', ['axxb', 'axx']],
    ['', ['', 'anything']]
  ]
  for (const [pattern, inputs] of cases) {
    const engine = patternEngine(pattern, 'u')
    const native = new RegExp(pattern, 'u')
    for (const input of inputs) t.equal(engine.test(input), native.test(input), `${ascii(pattern)} on ${ascii(input)}`)
  }
})

t.test('what backtracks for ever in JavaScript\'s engine finishes at once', async (t) => {
  const hostile = `${'a'.repeat(5000)}!`
  for (const pattern of ['^(a+)+$', '^(\\w|\\d)*$', '^([a-z]+)*\\s$', '^\\p{Letter}+(?: \\p{Letter}+)*$']) {
    t.equal(patternEngine(pattern, 'u').test(hostile), false, pattern)
  }
})

t.test('a pattern RE2 cannot run runs in JavaScript\'s engine without the exponential shapes, and is refused with them', async (t) => {
  const lookahead = patternEngine('^(?=.*[0-9]).{8,}$', 'u')
  t.same([lookahead.test('abcdefg1'), lookahead.test('abcdefgh')], [true, false])
  t.equal(patternEngine('^(\\w)\\1$', 'u').test('aa'), true, 'a backreference')
  for (const pattern of ['^(?!.*--)(\\w|\\d)*$', '^(\\w|\\d)*(?!y)$', '^(?=(a+)+$)', '^(a*)*\\1$', '(?<=(a+)+)b']) {
    t.throws(() => patternEngine(pattern, 'u'), { message: /cannot be run in linear time .* it repeats a group that holds a quantifier or an alternation/ }, pattern)
  }
})

t.test('a lookbehind is judged by its shape as a lookahead is, not refused for one (safe-regex2 cannot read it)', async (t) => {
  t.same(['ab', 'b'].map((text) => patternEngine('(?<=a)b', 'u').test(text)), [true, false])
  t.same(['xb', 'ab'].map((text) => patternEngine('(?<!a)b', 'u').test(text)), [true, false])
  t.same(['123', '000'].map((text) => patternEngine('^\\d{3}(?<!000)$', 'u').test(text)), [true, false])
  // Past safe-regex2's 25 quantifiers: refused, and the message says that, not a repeated group it does not have.
  const many = `^${'a?'.repeat(30)}(?<=a)$`
  t.throws(() => patternEngine(many, 'u'), { message: /cannot be run in linear time .*, and it has more than 25 quantifiers, over which JavaScript's engine can backtrack/ })
})

t.test('what ECMAScript does not take is refused, though RE2 would take it', async (t) => {
  for (const pattern of ['(?i)abc', '\\Qa.b\\E', '[[:alpha:]]', '\\pL', 'a{']) t.throws(() => patternEngine(pattern, 'u'), SyntaxError, pattern)
})

t.test('each pattern is its own tester: Ajv keeps one per distinct string', async (t) => {
  t.not(String(patternEngine('^a$', 'u')), String(patternEngine('^b$', 'u')))
})
