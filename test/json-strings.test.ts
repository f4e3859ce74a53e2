// hasProtoKey and hasLoneSurrogate: checks of a JSON body's text that see every value
// of a repeated key, which a check of the parsed value cannot (README "What a body may hold").

import t from 'tap'
import fc from 'fast-check'
import { hasLoneSurrogate, hasProtoKey } from '../src/routes/json-strings.js'

t.test('__proto__ keys: in an overwritten value too, in any spelling; never a value or a near miss', async (t) => {
  const found = [
    '{"__proto__": 1}',
    '{"a": {"__proto__": 1}, "a": 2}',
    '{"a": [{"b": {"__proto__": {}}}], "a": null}',
    '{"__proto__": 1, "__proto__": 2}',
    '{"\\u005f_proto__": 1}',
    '{"\\u005F\\u005F\\u0070\\u0072\\u006F\\u0074\\u006f\\u005f\\u005f": 1}',
    '{"__proto__"\t\r\n : 1}',
    '[{"x\\"": 1}, {"__proto__": 1}]'
  ]
  for (const text of found) {
    JSON.parse(text) // each is valid JSON
    t.ok(hasProtoKey(text), text)
  }
  const notFound = [
    '{"a": "__proto__"}',
    '["__proto__", "__proto__"]',
    '{"x\\"__proto__": 1}', // the key is x"__proto__
    '{"\\\\__proto__": 1}', // a backslash, then __proto__
    '{"__proto_": 1, "___proto__": 2, "__proto__ ": 3}',
    '{"a": "\\"__proto__\\": 1"}',
    '{"a\\\\": "__proto__", "b": ["__proto__"]}',
    '"__proto__"',
    '{"constructor": {"prototype": 1}}'
  ]
  for (const text of notFound) {
    JSON.parse(text)
    t.notOk(hasProtoKey(text), text)
  }
})

t.test('lone surrogates: escaped anywhere, in an overwritten value too; pairs and escaped backslashes are fine', async (t) => {
  const found = ['"\\ud800"', '"\\udfff"', '{"a": "\\ud83d", "a": "x"}', '{"\\uDBFF": 1}', '"\\ud83d\\u0041"', '"\\ud83d\\ud83d\\ude00"', '"\\ude00\\ud83d"', '"a\\\\\\ud800"', '"\\ud83d😀"']
  for (const text of found) {
    JSON.parse(text)
    t.ok(hasLoneSurrogate(text), text)
  }
  const notFound = ['"\\ud83d\\ude00"', '"\\uD83D\\uDE00"', '"\\\\ud800"', '"\\\\\\\\ud800"', '"😀"', '"\\u00e9\\n\\t\\"\\/"', '{"a": "\\\\udfff"}', '"\\ucafe"']
  for (const text of notFound) {
    JSON.parse(text)
    t.notOk(hasLoneSurrogate(text), text)
  }
})

// Against a reference: trees whose objects may repeat keys, written with random escaping and
// spacing, and the answer read from the tree itself (every entry, overwritten or not).
type Tree = string | number | null | Tree[] | { entries: Array<[string, Tree]> }

function write (tree: Tree, escape: (s: string) => string, space: string): string {
  if (typeof tree === 'string') return escape(tree)
  if (typeof tree === 'number' || tree === null) return String(tree)
  if (Array.isArray(tree)) return `[${space}${tree.map((item) => write(item, escape, space)).join(`,${space}`)}]`
  return `{${space}${tree.entries.map(([key, value]) => `${escape(key)}${space}:${space}${write(value, escape, space)}`).join(`,${space}`)}${space}}`
}

function some (tree: Tree, key: (k: string) => boolean, text: (s: string) => boolean): boolean {
  if (typeof tree === 'string') return text(tree)
  if (typeof tree === 'number' || tree === null) return false
  if (Array.isArray(tree)) return tree.some((item) => some(item, key, text))
  return tree.entries.some(([k, value]) => key(k) || text(k) || some(value, key, text))
}

const isLone = (s: string): boolean => !(s as unknown as { isWellFormed: () => boolean }).isWellFormed()

/** JSON.stringify, then every `every`-th character that is not an escape written as one, in upper or lower case. */
const escaper = (every: number) => (s: string): string => {
  const plain = JSON.stringify(s)
  let out = '"'
  let n = 0
  for (let at = 1; at < plain.length - 1; at++) {
    if (plain[at] === '\\') { // an escape JSON.stringify wrote: kept whole
      const length = plain[at + 1] === 'u' ? 6 : 2
      out += plain.slice(at, at + length)
      at += length - 1
    } else {
      // a surrogate pair is one character: both halves escaped, or neither (a body is UTF-8, so
      // its text never holds a raw half beside an escaped one)
      const character = String.fromCodePoint(plain.codePointAt(at) as number)
      at += character.length - 1
      if (++n % every !== 0) out += character
      else for (const unit of character.split('')) out += '\\u' + hex(unit, n % 3 === 0)
    }
  }
  return out + '"'
}

const hex = (unit: string, upper: boolean): string => {
  const digits = unit.charCodeAt(0).toString(16).padStart(4, '0')
  return upper ? digits.toUpperCase() : digits
}

const piece = fc.constantFrom('__proto__', '__proto_', 'proto', '"', '\\', '\\"', '\\ud800', 'ud800', '\ud800', '\udc00', '\ud83d\ude00', 'é', 'a', ':', ' ', '"__proto__":')
const text = fc.array(piece, { maxLength: 4 }).map((parts) => parts.join(''))
const tree = fc.letrec<{ node: Tree }>((tie) => ({
  node: fc.oneof({ maxDepth: 4 },
    text, fc.integer(), fc.constant(null),
    fc.array(tie('node'), { maxLength: 3 }),
    fc.array(fc.tuple(fc.oneof(text, fc.constant('__proto__'), fc.constant('a')), tie('node')), { maxLength: 4 }).map((entries) => ({ entries })))
})).node

t.test('agrees with the tree the text was written from, whatever the escaping and spacing', async (t) => {
  let protoTexts = 0
  let loneTexts = 0
  fc.assert(fc.property(tree, fc.integer({ min: 1, max: 4 }), fc.constantFrom('', ' ', '\n\t'), (value, every, space) => {
    const json = write(value, escaper(every), space)
    JSON.parse(json) // valid JSON, whatever was generated
    const proto = some(value, (k) => k === '__proto__', () => false)
    const lone = some(value, () => false, isLone)
    if (proto) protoTexts++
    if (lone) loneTexts++
    if (hasProtoKey(json) !== proto) throw new Error(`hasProtoKey says ${String(!proto)} for ${json}`)
    if (hasLoneSurrogate(json) !== lone) throw new Error(`hasLoneSurrogate says ${String(!lone)} for ${json}`)
  }), { seed: 20261201, numRuns: 3000 })
  t.ok(protoTexts > 100 && loneTexts > 100, `both answers were exercised (${protoTexts} texts with a __proto__ key, ${loneTexts} with a lone surrogate)`)
})
