// A schema that refers to itself is checked with a budget: branches that each go down into
// the same data cost time exponential in its depth with Ajv alone, and a body of a few
// hundred bytes held the event loop for seconds. What such a schema takes in linear time
// passes as before.

import t from 'tap'
import { Ajv } from 'ajv'
import { compileBodyValidator, MAX_DETAILS, validationError } from '../src/schema-compile.js'
import { BASE_STEPS, referencesToCount, weightOf, weightOfAll } from '../src/schema-cost.js'

/** OpenAPI's way of writing polymorphism: each branch checks the shared base (and its children) before its kind. */
function polymorphic (kindFirst: boolean): Record<string, unknown> {
  const branch = (kind: string): unknown => {
    const own = { type: 'object', required: ['kind'], properties: { kind: { const: kind } } }
    return { allOf: kindFirst ? [own, { $ref: '#/definitions/base' }] : [{ $ref: '#/definitions/base' }, own] }
  }
  return {
    definitions: {
      base: { type: 'object', properties: { children: { type: 'array', items: { $ref: '#/definitions/node' } } } },
      node: { oneOf: ['section', 'paragraph', 'list'].map(branch) }
    },
    $ref: '#/definitions/node'
  }
}

function nestedTree (depth: number, leaf: unknown = { kind: 'list' }): unknown {
  let node = leaf
  for (let level = 0; level < depth; level++) node = { kind: 'list', children: [node, { kind: 'paragraph' }] }
  return node
}

/** Keys that both of two recursive patternProperties match: every level is checked twice. */
const OVERLAPPING = { type: 'object', patternProperties: { '^x': { $ref: '#' }, 'y$': { $ref: '#' } } }

function nestedKeys (depth: number, key = 'xy'): unknown {
  let node = {}
  for (let level = 0; level < depth; level++) node = { [key]: node }
  return node
}

t.test('a body whose check would take exponential time is refused, with a message that says why, as a validation error', async (t) => {
  // With Ajv alone, depth 16 took 9.6 s; depth 30 would take years.
  const tree = compileBodyValidator(polymorphic(false))
  for (const depth of [30, 200]) {
    t.equal(tree(nestedTree(depth)), false, `a tree ${depth} deep`)
    t.match(tree.errors, [{ keyword: 'cost', instancePath: '' }])
    const error = validationError(tree.errors, 'body', tree.schema) as Error & { statusCode: number, code: string }
    t.match(error, { statusCode: 400, code: 'FST_ERR_VALIDATION', message: /^body is too costly to check: it took more than \d+ steps, the most allowed for a value of its size \(the schema tries branches that each go down into the same data, .*\); make the value shallower, or the schema choose one branch before it goes down$/ })
  }
  const keys = compileBodyValidator(OVERLAPPING)
  t.equal(keys(nestedKeys(60)), false, 'overlapping patternProperties, 60 levels')
  t.match(keys.errors, [{ keyword: 'cost' }])
  // 2^20 steps, each testing a 15 KB key: past the budget of steps whatever the machine's speed.
  t.equal(keys(nestedKeys(20, `x${'a'.repeat(15_000)}y`)), false, 'long keys, 20 levels (300 KB)')
})

t.test('what such a schema checks in linear time passes, and is judged as Ajv judges it', async (t) => {
  const stock = new Ajv({ strict: true })
  const cases: Array<[string, Record<string, unknown>, unknown[]]> = [
    ['the polymorphic tree, shallow', polymorphic(false), [nestedTree(4), nestedTree(4, { kind: 'chapter' }), nestedTree(3, 'x')]],
    ['overlapping keys, shallow', OVERLAPPING, [nestedKeys(6), { xa: 1 }, { xa: {}, ay: { xy: 2 } }]],
    ['the tree checking its kind first, deep', polymorphic(true), [nestedTree(300), nestedTree(300, { kind: 'chapter' })]]
  ]
  for (const [name, schema, values] of cases) {
    const ours = compileBodyValidator(schema)
    const ajv = stock.compile(schema)
    for (const [index, value] of values.entries()) t.equal(ours(value), ajv(value), `${name}: value ${index}`)
  }
})

t.test('a large body of a recursive schema that follows its references a few times per value stays inside the budget', async (t) => {
  const json = compileBodyValidator({
    definitions: { value: { anyOf: [{ type: 'number' }, { type: 'string' }, { type: 'array', items: { $ref: '#/definitions/value' } }, { type: 'object', additionalProperties: { $ref: '#/definitions/value' } }] } },
    $ref: '#/definitions/value'
  })
  const records = Array.from({ length: 100_000 }, (_, i) => ({ id: [i, `name ${i}`] }))
  t.equal(json(records), true, `${weightOfAll(records)} units of weight, far past the base of ${BASE_STEPS} steps`)
  let deep: unknown = 1
  for (let level = 0; level < 190; level++) deep = [deep]
  t.equal(json(deep), true, '190 levels deep')
  t.equal(json([{ a: [true] }]), false, 'and refused where Ajv refuses')
  t.match(json.errors, [{ keyword: 'type' }])
})

t.test('a value\'s weight grows with its strings, keys and items', async (t) => {
  t.same([weightOf(1), weightOf(null), weightOf('a'.repeat(640)), weightOf(Array(160).fill(0)), weightOf({ a: 1, ['k'.repeat(128)]: 'v'.repeat(32) })], [1, 1, 41, 161, 1 + 1 + (1 + 8 + 2)])
  t.equal(weightOfAll({ a: [1, 'x'] }), (1 + 1 + 2) + (1 + 2) + 1 + 1)
})

t.test('only the references that can lead back to themselves are counted', async (t) => {
  t.same([...referencesToCount(polymorphic(false)).counted].sort(), ['/definitions/base/properties/children/items', '/definitions/node/oneOf/0/allOf/0', '/definitions/node/oneOf/1/allOf/0', '/definitions/node/oneOf/2/allOf/0'], 'not the root\'s, which is entered once')
  t.same([...referencesToCount(OVERLAPPING).counted].sort(), ['/patternProperties/^x', '/patternProperties/y$'])
  // A union of 60 variants sharing a base: each value is entered through ~120 references, none of them recursive.
  const union = { type: 'array', items: { $ref: '#/definitions/event' }, definitions: { envelope: { type: 'object', properties: { type: { type: 'string' } } }, base: { allOf: [{ $ref: '#/definitions/envelope' }] }, event: { oneOf: Array.from({ length: 60 }, (_, i) => ({ allOf: [{ $ref: '#/definitions/base' }, { type: 'object', properties: { type: { const: `t${i}` } } }] })) } } }
  t.same(referencesToCount(union), { all: 62, counted: new Set(), manyPaths: false }, 'a schema without a cycle is checked as Ajv alone checks it')
  const events = Array.from({ length: 20_000 }, (_, i) => ({ type: `t${i % 60}` }))
  t.equal(compileBodyValidator(union)(events), true, '20,000 events (a review saw them refused when every reference was counted)')
  t.same(referencesToCount({ $id: 'https://example.com/s', definitions: { a: {} }, $ref: '#/definitions/a' }).counted, new Set(['']), 'with an $id, references may resolve through it: all are counted')
  t.same(referencesToCount({ properties: { a: { $ref: 'other.json#/x' } } }).counted, new Set(['/properties/a']), 'and so they are when one is no local pointer')
})

t.test('a reference is followed as Ajv follows it: a definition named with a slash, written %2F, is found', async (t) => {
  const schema = { definitions: { 'a/b': { oneOf: [{ $ref: '#/definitions/m' }, { $ref: '#/definitions/m' }] }, m: { type: 'object', properties: { c: { $ref: '#/definitions/a%2Fb' } } } }, $ref: '#/definitions/a%2Fb' }
  t.same([...referencesToCount(schema).counted].sort(), ['/definitions/a~1b/oneOf/0', '/definitions/a~1b/oneOf/1', '/definitions/m/properties/c'])
  t.same([...referencesToCount({ definitions: { 'a~b c': { type: 'object', properties: { n: { $ref: '#/definitions/a~0b%20c' } } } }, $ref: '#/definitions/a~0b%20c' }).counted], ['/definitions/a~0b c/properties/n'], '~0 and %20')
  const validate = compileBodyValidator(schema)
  t.equal(validate(nestedKeys(40, 'c')), false, 'a body 40 levels deep (a review saw 22 levels hold the event loop 8.9 s)')
  t.match(validate.errors, [{ keyword: 'cost' }])
})

t.test('a schema without cycles is counted when a reference can be reached along more than MAX_PATHS paths', async (t) => {
  // Each of 24 definitions refers twice to the next: 2^24 paths to the last, for every item.
  const definitions: Record<string, unknown> = { d24: { type: 'object' } }
  for (let i = 0; i < 24; i++) definitions[`d${i}`] = { anyOf: [{ allOf: [{ $ref: `#/definitions/d${i + 1}` }, { type: 'object', required: [`v${i}`], properties: { [`v${i}`]: {} } }] }, { $ref: `#/definitions/d${i + 1}` }] }
  const schema = { type: 'array', items: { $ref: '#/definitions/d0' }, definitions }
  t.equal(referencesToCount(schema).counted.size, 49, 'every reference')
  t.equal(referencesToCount(schema).manyPaths, true)
  const validate = compileBodyValidator(schema)
  t.equal(validate([{}]), false, 'one item')
  // The schema is the cause, not the value's depth: the error says so (it said "make the value shallower").
  t.match(validate.errors, [{ keyword: 'cost', message: /\(the schema reaches one of its references along more than 1000 paths, .*\); the task's schema needs fewer paths to each definition$/ }])
  t.equal(compileBodyValidator({ ...schema, definitions: { ...definitions, d12: { type: 'object' } } })([{}]), true, 'twelve levels: 4,096 paths, checked in full')
  // A cycle elsewhere (a list of lists) left the chain uncounted: 2^24 paths ran a check of [{}] out of memory.
  const withCycle = { ...schema, definitions: { ...definitions, list: { type: 'array', items: { $ref: '#/definitions/list' } } } }
  t.equal(referencesToCount(withCycle).counted.size, 50, 'every reference, the cycle\'s too')
  const cyclic = compileBodyValidator(withCycle)
  t.equal(cyclic([{}]), false)
  t.match(cyclic.errors, [{ keyword: 'cost' }])
})

t.test('a $ref into a data keyword (default, const, enum, examples) is refused as the schema is compiled: its $refs are unseen by the count', async (t) => {
  // Ajv compiles what the reference finds in `default` as a schema; its two references to
  // itself went uncounted, and 26 levels of nested arrays took 1.5 s (each level doubles it).
  const into = '#/definitions/d/default'
  const hidden = { type: 'object', definitions: { d: { default: { type: 'array', items: { allOf: [{ $ref: into }, { $ref: into }] } } } }, properties: { a: { $ref: into } } }
  t.throws(() => compileBodyValidator(hidden), { message: 'the "$ref" at /properties/a leads into "default" (#/definitions/d/default), whose value is data, not a schema: pyfleet cannot bound the cost of checking against it; move that schema into "definitions" or "$defs" and refer to it there' })
  t.throws(() => compileBodyValidator({ examples: [{ type: 'string' }], $ref: '#/examples/0' }), { message: /^the "\$ref" at its root leads into "examples" \(#\/examples\/0\)/ })
  t.throws(() => compileBodyValidator({ $defs: { e: { enum: [{ items: {} }] } }, items: { $ref: '#/$defs/e/enum/0/items' } }), { message: /^the "\$ref" at \/items leads into "enum" \(#\/\$defs\/e\/enum\/0\/items\)/ })
  // Where the same names are a property's, or a schema's place, the reference stands.
  const named = { type: 'object', properties: { default: { type: 'array', items: { $ref: '#/properties/default' } }, const: { $ref: '#/definitions/const' } }, definitions: { const: { type: 'string' } } }
  const validate = compileBodyValidator(named)
  t.equal(validate({ default: [[], [[]]], const: 'c' }), true)
  t.equal(validate({ const: 1 }), false)
  t.same(referencesToCount(named).counted, new Set(['/properties/default/items']))
})

t.test('a step that checks a large value again is caught by the time it takes, not only by the number of steps', async (t) => {
  // 2^11 steps, far inside the budget of steps, each testing a 500-fold repetition over 20 KB (~100 ms in re2js): 200 s in all.
  const hex = compileBodyValidator({ definitions: { n: { oneOf: [{ $ref: '#/definitions/m' }, { $ref: '#/definitions/m' }] }, m: { type: 'object', properties: { c: { $ref: '#/definitions/n' }, s: { type: 'string', pattern: '[0-9a-f]{500}' } } } }, $ref: '#/definitions/n' })
  let nested: unknown = { s: `${'a'.repeat(499)}g`.repeat(40) }
  for (let level = 0; level < 11; level++) nested = { c: nested }
  t.equal(hex(nested), false)
  t.match(hex.errors, [{ keyword: 'cost', message: /^is too costly to check: it took more than \d+ ms,/ }], 'stopped by the time net')

  // Two branches down to the same leaf, 18 levels: the leaf's 100 KB string is measured 2^18 times (11 s with Ajv alone).
  for (const leaf of [{ type: 'string', maxLength: 10_000_000 }, { type: 'string', pattern: 'a{2}b' }]) {
    const validate = compileBodyValidator({ definitions: { n: { oneOf: [{ $ref: '#/definitions/m' }, { $ref: '#/definitions/m' }] }, m: { type: 'object', properties: { c: { $ref: '#/definitions/n' }, big: leaf } } }, $ref: '#/definitions/n' })
    let body: unknown = { big: 'a'.repeat(100_000) }
    for (let level = 0; level < 18; level++) body = { c: body }
    t.equal(validate(body), false, JSON.stringify(leaf))
    t.match(validate.errors, [{ keyword: 'cost', message: /^is too costly to check: it took more than \d+ (steps|ms)/ }])
  }
})

t.test('an error\'s details list at most MAX_DETAILS of the errors Ajv collected', async (t) => {
  const validate = compileBodyValidator({ anyOf: Array.from({ length: 80 }, (_, i) => ({ type: 'object', required: [`k${i}`], properties: { [`k${i}`]: {} } })) })
  t.equal(validate({}), false)
  t.ok((validate.errors?.length ?? 0) > MAX_DETAILS, 'Ajv collected one error per branch')
  const error = validationError(validate.errors, 'body', validate.schema) as Error & { details: unknown[] }
  t.equal(error.details.length, MAX_DETAILS)
})

t.test('a uniqueItems at every level of a recursive schema keys each object once for the whole check', async (t) => {
  // Each level's uniqueItems keyed everything below it again: 98 levels over 21,000 leaves took 1.2 s, unseen by steps.
  const validate = compileBodyValidator({ $ref: '#/definitions/node', definitions: { node: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: { type: 'string' }, children: { type: 'array', uniqueItems: true, items: { $ref: '#/definitions/node' } } } } } })
  let tree: unknown = { name: 'leaves', children: Array.from({ length: 21_000 }, (_, i) => ({ name: i.toString(36) })) }
  for (let level = 0; level < 98; level++) tree = { name: 'n', children: [tree] }
  t.equal(validate(tree), true, 'valid, and within the budget')
  let repeated: unknown = { name: 'leaves', children: [{ name: 'x', children: [{ name: 'y' }] }, { children: [{ name: 'y' }], name: 'x' }] }
  for (let level = 0; level < 98; level++) repeated = { name: 'n', children: [repeated] }
  t.equal(validate(repeated), false, 'two equal subtrees, their keys in another order, 98 levels down')
  t.match(validate.errors, [{ keyword: 'uniqueItems', params: { i: 1, j: 0 } }])
  t.equal(validate({ name: 'a', children: [{ name: 'b', children: [{ name: 'c' }, { name: 'd' }] }] }), true, 'a small tree passes')
})
