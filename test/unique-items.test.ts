// `uniqueItems` in linear time: the same verdicts as Ajv's own (fast-deep-equal), the same
// error, in every validator pyfleet compiles, and no pairwise comparison a client can
// make quadratic.

import t from 'tap'
import { Ajv } from 'ajv'
import { compileBodyValidator, makeAjv, ResultValidators, validationError } from '../src/schema-compile.js'
import { TaskRegistry } from '../src/task-registry.js'
import { loadConfig } from '../src/config.js'
import type { TaskInfo } from '../src/pool/ready-message.js'
import { canonicalKey, duplicatePair } from '../src/unique-items.js'

const ARRAY_OF_ANYTHING = { type: 'array', uniqueItems: true }

t.test('arrays are judged unique exactly as Ajv\'s own uniqueItems judges them', async (t) => {
  const cases: Array<[string, unknown[]]> = [
    ['equal numbers', [1, 1.0]],
    ['zero and minus zero', [0, -0]],
    ['NaN twice (a msgpack float)', [NaN, NaN]],
    ['infinities', [Infinity, -Infinity]],
    ['a number and its string', [1, '1']],
    ['null and "null"', [null, 'null']],
    ['true and "true"', [true, 't']],
    ['false and "f"', [false, 'f']],
    ['objects with keys in another order', [{ a: 1, b: 2 }, { b: 2, a: 1 }]],
    ['objects that differ in one nested value', [{ a: [1, { b: 2 }] }, { a: [1, { b: 3 }] }]],
    ['equal nested objects', [{ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }]],
    ['arrays in another order', [[1, 2], [2, 1]]],
    ['equal arrays', [[1, [2]], [1, [2]]]],
    ['an empty object and an empty array', [{}, []]],
    ['an object and an array with the same entries', [{ 0: 'a' }, ['a']]],
    ['an extra key holding null', [{ a: 'x' }, { a: 'x', b: null }]],
    ['a key holding undefined (msgpack\'s undefined) and none', [{ a: undefined }, {}]],
    ['a key with a comma against two keys', [{ 'a,b': 1 }, { a: 1, b: 1 }]],
    ['strings that look like keys', [{ a: '1,"b":2' }, { a: '1', b: 2 }]],
    ['strings with escapes', ['a"b', 'a\\"b', 'a\u2028b']],
    ['a __proto__ key', [JSON.parse('{"__proto__": 1}'), JSON.parse('{"__proto__": 1}')]],
    ['equal bytes', [Buffer.from('ab'), Buffer.from('ab')]],
    ['different bytes', [Buffer.from('ab'), Buffer.from('ac')]],
    ['bytes and an array of the same numbers', [Buffer.from([1, 2]), [1, 2]]],
    ['bytes inside objects', [{ b: Buffer.from('x') }, { b: Buffer.from('x') }]],
    ['a duplicate far apart', ['a', 'b', 'c', 'd', 'a']],
    ['all distinct', [1, 'a', null, true, [], {}, [null], { a: null }]],
    ['nothing', []]
  ]
  const stock = new Ajv({ strict: true }).compile(ARRAY_OF_ANYTHING)
  const ours = makeAjv(false).compile(ARRAY_OF_ANYTHING)
  for (const [name, items] of cases) {
    const expected = stock(items)
    t.equal(ours(items), expected, `${name}: ${expected ? 'unique' : 'a duplicate'}`)
    t.equal(duplicatePair(items) === undefined, expected, `${name}: duplicatePair agrees`)
  }
})

t.test('the pair of items named is the one Ajv names, in either of the orders it looks in', async (t) => {
  const cases: Array<[Record<string, unknown>, unknown[]]> = [
    [ARRAY_OF_ANYTHING, [1, 1, 2, 2]],
    [ARRAY_OF_ANYTHING, [{ a: 1 }, 'x', { a: 1 }, 'x', 'y']],
    [{ type: 'array', uniqueItems: true, items: { type: 'string' } }, ['a', 'b', 'a', 'b', 'c']],
    [{ type: 'array', uniqueItems: true, items: { type: 'integer' } }, [5, 1, 5, 5]],
    [{ type: 'array', uniqueItems: true, items: { type: 'array' } }, [[1], [2], [1], [2]]],
    [{ type: 'array', uniqueItems: true, items: [{ type: 'string' }, { type: 'string' }], minItems: 2, maxItems: 2 }, ['a', 'a']]
  ]
  // Collecting every error (as VALIDATE_RESULTS does), items of a type `items` refuses are left out, as Ajv leaves them.
  cases.push([{ type: 'array', uniqueItems: true, items: { type: 'number' } }, ['a', 'a', 1]], [{ type: 'array', uniqueItems: true, items: { type: 'number' } }, ['a', 1, 'a', 1]])
  for (const allErrors of [false, true]) {
    for (const [schema, items] of cases) {
      const stock = new Ajv({ strict: false, allErrors }).compile(schema)
      const ours = makeAjv(false, allErrors).compile(schema)
      t.equal(ours(items), stock(items))
      t.same(ours.errors?.map((e) => [e.keyword, e.params, e.message]), stock.errors?.map((e) => [e.keyword, e.params, e.message]), `${allErrors ? 'all errors, ' : ''}${JSON.stringify(schema.items ?? 'no items')}: ${JSON.stringify(items)}`)
    }
  }
})

t.test('where Ajv\'s equality is not JSON Schema\'s, values are compared as JSON Schema says', async (t) => {
  const validate = makeAjv(false).compile(ARRAY_OF_ANYTHING)
  // Ajv took these for different (their constructors differ from a plain object's), or threw.
  t.equal(validate([{ constructor: {} }, { constructor: {} }]), false, 'objects with a "constructor" key')
  t.equal(validate([{ valueOf: 1 }, { valueOf: 1 }]), false, 'objects with a "valueOf" key')
  // Ajv compared binary values by their text as UTF-8, where both are U+FFFD.
  t.equal(validate([Buffer.from([0xff]), Buffer.from([0xfe])]), true, 'different bytes that are no UTF-8')
})

t.test('inside a recursive schema (objects keyed once per check, by id) the verdicts are Ajv\'s too', async (t) => {
  const schema = { $ref: '#/definitions/list', definitions: { list: { type: 'array', uniqueItems: true, items: { anyOf: [{ $ref: '#/definitions/list' }, { not: { type: 'array' } }] } } } }
  const stock = new Ajv({ strict: false }).compile(schema)
  const ours = makeAjv(false).compile(schema)
  const ourBody = compileBodyValidator(schema)
  let seed = 7
  const random = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return (seed >>> 16) % n }
  const value = (depth: number): unknown => {
    const pick = random(depth > 3 ? 4 : 7)
    if (pick === 0) return random(3)
    if (pick === 1) return ['a', 'b', '0'][random(3)]
    if (pick === 2) return random(2) === 0 ? null : true
    if (pick === 3) return {}
    if (pick === 4) return random(2) === 0 ? { a: value(depth + 1), b: random(2) } : { b: random(2), a: value(depth + 1) }
    return Array.from({ length: random(4) }, () => value(depth + 1))
  }
  let differences = 0
  let duplicates = 0
  for (let round = 0; round < 3000; round++) {
    const data = Array.from({ length: 2 + random(4) }, () => value(0))
    const expected = stock(data)
    if (!expected) duplicates++
    if (ours(data) !== expected || ourBody(data) !== expected) differences++
  }
  t.equal(differences, 0, `3,000 random nested lists, ${duplicates} of them with equal items somewhere`)
  t.ok(duplicates > 100 && duplicates < 2900, `both verdicts are well represented (${duplicates})`)
})

t.test('canonical keys tell apart what JSON.stringify would not', async (t) => {
  t.not(canonicalKey([NaN]), canonicalKey([null]), 'NaN is no null')
  t.not(canonicalKey({ a: undefined }), canonicalKey({}))
  t.equal(canonicalKey({ b: 1, a: [0] }), canonicalKey({ a: [-0], b: 1 }))
})

t.test('a duplicate is answered in Ajv\'s words, naming the two items', async (t) => {
  const validate = compileBodyValidator({ type: 'object', properties: { tags: { type: 'array', uniqueItems: true, items: { type: 'object' } } } })
  t.equal(validate({ tags: [{ k: 1 }, { k: 2 }, { k: 1 }] }), false)
  t.match(validate.errors, [{ keyword: 'uniqueItems', instancePath: '/tags', params: { i: 2, j: 0 } }])
  t.equal(validationError(validate.errors, 'body', validate.schema).message, 'body/tags must NOT have duplicate items (items ## 0 and 2 are identical)')
  t.equal(validate({ tags: [{ k: 1 }, { k: 2 }] }), true)
})

t.test('an array a client sends is checked in linear time, by every validator pyfleet compiles', async (t) => {
  // Ajv's own compared every pair: 20,000 objects took 9 s; these 100,000 would take minutes.
  const distinct = Array.from({ length: 100_000 }, (_, i) => ({ id: i, tags: [String(i)] }))
  const repeated = [...distinct, { tags: ['7'], id: 7 }]
  const schema = { type: 'array', uniqueItems: true, items: { type: 'object' } }
  const registry = new TaskRegistry(loadConfig({}))
  const info = { name: 'u', doc: '', schema: { type: 'object', properties: { items: schema } }, outputSchema: schema, timeoutMs: null, raw: [], rawField: null, maxConcurrency: null } as unknown as TaskInfo
  registry.update([info])
  const validators = {
    'the offload thread\'s': compileBodyValidator(schema),
    'the query string\'s (coercing)': makeAjv(true).compile(schema),
    'VALIDATE_RESULTS\'': new ResultValidators().compile(schema)
  }
  for (const [name, validate] of Object.entries(validators)) {
    t.equal(validate(distinct), true, `${name}: distinct`)
    t.equal(validate(repeated), false, `${name}: one duplicate`)
    t.match(validate.errors, [{ params: { j: 7, i: 100_000 } }], name)
  }
  const table = registry.get('u')
  t.ok(table)
  t.equal(table?.validateBody({ items: distinct }), true, 'the table\'s: distinct')
  t.equal(table?.validateBody({ items: repeated }), false, 'the table\'s: one duplicate')
})
