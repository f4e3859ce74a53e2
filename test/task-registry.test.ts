// inputFields: which query parameters beside a JSON body name a field of the task's input;
// validationError: what a 400 says about the first thing wrong with an input.

import t from 'tap'
import { declarationKey } from '../src/declaration-key.js'
import { Ajv } from 'ajv'
import { binaryIsNoObject, compileBodyValidator, inputFields, ResultValidators, validationError } from '../src/schema-compile.js'
import { TaskRegistry } from '../src/task-registry.js'
import { loadConfig } from '../src/config.js'
import type { TaskInfo } from '../src/pool/ready-message.js'

t.test('a value that fails a pattern is explained by its property\'s description, not the regular expression', async (t) => {
  const schema = {
    type: 'object',
    properties: {
      delimiter: { type: 'string', pattern: '^[^"\\r\\n]$', description: 'one character, not a quote or a line break' },
      codes: { type: 'array', items: { type: 'string', pattern: '^[A-Z]{3}$', description: 'a currency code such as EUR' } },
      long: { type: 'string', pattern: '^(?:sha256|sha1|md5|blake2b|sha3_256)(?:,(?:sha256|sha1|md5|blake2b|sha3_256))*$', description: 'hash names, comma-separated' },
      bare: { type: 'string', pattern: '^x+$' },
      flag: { type: 'boolean' }
    }
  }
  const validate = new Ajv({ allErrors: false }).compile(schema)
  const messageFor = (input: unknown): string => {
    t.notOk(validate(input))
    return validationError(validate.errors, 'body', validate.schema).message
  }
  t.equal(messageFor({ delimiter: 'ab' }), `body/delimiter is not valid: one character, not a quote or a line break (must match pattern ${JSON.stringify(schema.properties.delimiter.pattern)})`, 'a short pattern beside it')
  t.equal(messageFor({ codes: ['EUR', 'euro'] }), 'body/codes/1 is not valid: a currency code such as EUR (must match pattern "^[A-Z]{3}$")', 'an array item: its items\' description')
  t.equal(messageFor({ long: 'crc32' }), 'body/long is not valid: hash names, comma-separated', 'a long pattern left to details')
  t.equal(messageFor({ bare: 'y' }), 'body/bare must match pattern "^x+$"', 'no description: Ajv\'s words')
  t.equal(messageFor({ flag: 'yes' }), 'body/flag must be boolean (true or false)')
  const error = validationError(validate.errors, 'body', validate.schema) as Error & { details: unknown }
  t.match(error.details, [{ keyword: 'type', params: { type: 'boolean' } }], 'details keep Ajv\'s own errors')
})

t.test('finds the top-level fields wherever the schema declares them', async (t) => {
  const cases: Array<[unknown, string[]]> = [
    [{ type: 'object', properties: { limit: {}, record: {} } }, ['limit', 'record']],
    [{ allOf: [{ properties: { a: {} } }, { properties: { b: {} } }] }, ['a', 'b']],
    [{ anyOf: [{ properties: { a: {} } }], oneOf: [{ properties: { b: {} } }] }, ['a', 'b']],
    [{ if: { properties: { kind: {} } }, then: { properties: { a: {} } }, else: { properties: { b: {} } } }, ['kind', 'a', 'b']],
    [{ $ref: '#/definitions/In', definitions: { In: { properties: { limit: {} } } } }, ['limit']],
    [{ $ref: '#/definitions/a~1b', definitions: { 'a/b': { properties: { x: {} } } } }, ['x']],
    // Not the input's own fields: those of nested objects, and remote refs.
    [{ properties: { nested: { properties: { inner: {} } } } }, ['nested']],
    [{ $ref: 'https://example.com/schema.json' }, []],
    [true, []],
    [{}, []]
  ]
  for (const [schema, fields] of cases) t.same([...inputFields(schema)].sort(), [...fields].sort(), JSON.stringify(schema))
})

t.test('a schema that refers to itself is walked once', async (t) => {
  const schema = { properties: { a: {} }, allOf: [{ $ref: '#' }] }
  t.same([...inputFields(schema)], ['a'])
})

t.test('binaryIsNoObject: "bytes": false beside object types only, names in schema maps and data left alone', async (t) => {
  t.same(binaryIsNoObject({ type: 'object', properties: { a: { type: 'object' }, b: { bytes: true }, c: { type: ['object', 'null'] } } }),
    { type: 'object', bytes: false, properties: { a: { type: 'object', bytes: false }, b: { bytes: true }, c: { type: ['object', 'null'], bytes: false } } })
  // Properties named like keywords are names: their schemas are rewritten, not skipped.
  t.same(binaryIsNoObject({ type: 'object', properties: { default: { type: 'object' }, type: { type: 'string' }, enum: { type: 'object' } } }),
    { type: 'object', bytes: false, properties: { default: { type: 'object', bytes: false }, type: { type: 'string' }, enum: { type: 'object', bytes: false } } })
  // draft-07 property dependencies are lists of names; schema dependencies are schemas.
  t.same(binaryIsNoObject({ type: 'object', dependencies: { type: ['object'], x: { type: 'object', required: ['y'] } } }),
    { type: 'object', bytes: false, dependencies: { type: ['object'], x: { type: 'object', required: ['y'], bytes: false } } })
  t.same(binaryIsNoObject({ type: 'object', default: { type: 'object' }, enum: [{ type: 'object' }], $defs: { o: { type: 'object' } } }),
    { type: 'object', bytes: false, default: { type: 'object' }, enum: [{ type: 'object' }], $defs: { o: { type: 'object', bytes: false } } }, 'data stays data')
  t.same(binaryIsNoObject(true), true)
  t.same(binaryIsNoObject({ anyOf: [{ type: 'object' }, { bytes: true }] }), { anyOf: [{ type: 'object', bytes: false }, { bytes: true }] })
  // What a JSON client sends is judged as before: a property named "type" requiring one named "object".
  const validate = compileBodyValidator({ type: 'object', dependencies: { type: ['object'] } })
  t.equal(validate({ type: 'circle', object: 1, bytes: 2 }), true)
  t.equal(validate({ bytes: 2 }), true)
  t.equal(validate(Buffer.from('x')), false, 'a binary value is no object')
  // Under not and if, a test: left as Ajv reads it, so that "no object" does not invert there.
  t.same(binaryIsNoObject({ not: { type: 'object' }, if: { type: 'object' }, then: { type: 'object' } }),
    { not: { type: 'object' }, if: { type: 'object' }, then: { type: 'object', bytes: false } })
  t.equal(compileBodyValidator({ not: { type: 'object' } })(Buffer.from('x')), false, 'not-an-object still refuses a bin')
})

function declared (name: string, schema: Record<string, unknown>, extra: Partial<TaskInfo> = {}): TaskInfo {
  return { name, doc: '', schema, outputSchema: null, timeoutMs: null, raw: [], rawField: null, maxConcurrency: null, ...extra } as TaskInfo
}

t.test('a declaration met again is not compiled again: a reload checks each new worker\'s tasks, then takes them', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  const first = [declared('a', { type: 'integer' }), declared('b', { type: 'string' })]
  registry.update(first)
  const table = registry.table
  registry.check(structuredClone(first))
  registry.update(structuredClone(first))
  t.equal(registry.table, table, 'the same declaration (from another worker) keeps the table compiled before')
  const second = [declared('a', { type: 'integer', minimum: 1 }), declared('b', { type: 'string' })]
  registry.check(second)
  t.equal(registry.table, table, 'a check changes nothing served')
  registry.update(structuredClone(second))
  t.not(registry.table, table, 'another declaration is another table')
  t.equal(registry.get('a')?.validateBody(0), false, 'compiled from that declaration')
  t.equal(registry.get('a')?.validateBody(1), true)
  // A check that throws leaves the last compiled table in place: the next check of it is not skipped.
  const broken = [declared('a', { type: 'integer', minimum: 'one' })]
  t.throws(() => { registry.check(broken) }, /declares an invalid input schema/)
  t.throws(() => { registry.check(broken) }, /declares an invalid input schema/, 'and again')
})

t.test('only a task with raw types gets the coercing validator its query-string options need', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  registry.update([declared('json.only', { type: 'object' }), declared('raw.text', { type: 'object', properties: { text: { type: 'string' }, top: { type: 'integer' } } }, { raw: ['text/plain'], rawField: 'text' })])
  t.equal(registry.get('json.only')?.validateRaw, undefined)
  t.equal(registry.get('raw.text')?.validateRaw?.({ text: 'x', top: '3' }), true, 'coercing "3" to 3')
})

t.test('output schemas share one Ajv unless an $id or a reference out of the schema could resolve differently there', async (t) => {
  const results = new ResultValidators()
  const a = results.compile({ type: 'object', properties: { n: { $ref: '#/definitions/N' } }, definitions: { N: { type: 'integer' } } })
  const b = results.compile({ type: 'object', properties: { n: { type: 'string' } } })
  t.equal(a({ n: 1 }), true)
  t.equal(b({ n: 1 }), false)
  // Two tasks may use one $id for schemas that differ: each gets its own Ajv, as the offload thread compiles them.
  const c = results.compile({ $id: 'https://example.com/out.json', type: 'integer' })
  const d = results.compile({ $id: 'https://example.com/out.json', type: 'string' })
  t.equal(c(1), true)
  t.equal(d('x'), true)
  t.throws(() => results.compile({ $ref: 'https://example.com/out.json' }), /can't resolve reference/, 'and no schema resolves against another task\'s')
})

t.test('an unknown keyword is named with where it is and the keyword it may be a misspelling of', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  const deep = { type: 'object', properties: { a: { type: 'object', properties: { b: { type: 'string', minLenght: 3 } } } } }
  t.throws(() => { registry.check([declared('deep.typo', deep)]) },
    { message: 'task deep.typo declares an invalid input schema: strict mode: unknown keyword: "minLenght" at /properties/a/properties/b (did you mean "minLength"?)' })
  t.throws(() => { registry.check([declared('root.typo', { type: 'object', additionalproperties: false })]) },
    { message: /unknown keyword: "additionalproperties" at its root \(did you mean "additionalProperties"\?\)$/ })
  t.throws(() => { registry.check([declared('no.near', { type: 'string', colour: 'red' })]) },
    { message: /unknown keyword: "colour" at its root$/ }, 'no keyword near it: no guess')
  t.throws(() => { registry.check([declared('out.typo', { type: 'object' }, { outputSchema: { type: 'array', itmes: { type: 'string' } } })]) },
    { message: /declares an invalid output schema: strict mode: unknown keyword: "itmes" at its root \(did you mean "items"\?\)$/ })
})

t.test('an error naming an enum\'s values names twenty at most, each cut short', async (t) => {
  const values = Array.from({ length: 300 }, (_, i) => `value-${i}`)
  const validate = compileBodyValidator({ type: 'string', enum: values })
  t.equal(validate('other'), false)
  const { message } = validationError(validate.errors, 'body')
  t.equal(message, `body must be equal to one of the allowed values: ${values.slice(0, 20).map((v) => JSON.stringify(v)).join(', ')}, ... (300 in all: see the task's schema)`)
  const long = compileBodyValidator({ enum: ['x'.repeat(500), 1] })
  t.equal(long(2), false)
  t.equal(validationError(long.errors, 'body').message, `body must be equal to one of the allowed values: "${'x'.repeat(96)}..., 1`)
})

t.test('input schemas with an $id are compiled alone, as the offload thread compiles them: one $id in two tasks, and no reference into another task', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  // A schema shared by two tasks: the shared Ajv refused the second ("already exists").
  const item = { $id: 'https://shop.example/item.json', type: 'object', required: ['sku'], properties: { sku: { type: 'string' } } }
  registry.update([declared('shop.a', item), declared('shop.b', structuredClone(item), { raw: ['text/plain'], rawField: 'sku' })])
  t.equal(registry.get('shop.b')?.validateBody({ sku: 1 }), false)
  t.equal(registry.get('shop.b')?.validateBody({ sku: 'x' }), true)
  // A reference into another task's schema resolved on the event loop only: a large body, checked on the thread, was a 500.
  t.throws(() => { registry.check([declared('shop.a', item), declared('shop.c', { type: 'array', items: { $ref: 'https://shop.example/item.json' } })]) },
    { message: 'task shop.c declares an invalid input schema: can\'t resolve reference https://shop.example/item.json from id #' })
})

t.test('a worker whose schema lists an enum, required or type in another order declares the same table (a Python set\'s order differs per process)', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  const schema = (order: string[], required = ['colour', 'size']): Record<string, unknown> => ({ type: 'object', required, properties: { colour: { enum: order }, size: { type: ['integer', 'null'] } } })
  const served = [declared('paint', schema(['red', 'green', 'blue']))]
  registry.update(served)
  const reordered = [declared('paint', { ...schema(['blue', 'red', 'green'], ['size', 'colour']), properties: { colour: { enum: ['blue', 'red', 'green'] }, size: { type: ['null', 'integer'] } } })]
  t.equal(registry.drift(reordered), undefined, 'no drift: it warned that task code changed on disk')
  t.ok(registry.isServedTable(declarationKey(reordered)), 'and pyfleet_workers_unlike_task_table does not count it')
  t.ok(registry.isServedTable(declarationKey(served)))
  const changed = [declared('paint', schema(['red', 'green']))]
  t.same(registry.drift(changed), { added: [], removed: [], changed: ['paint'] }, 'another enum is a change')
  t.notOk(registry.isServedTable(declarationKey(changed)))
  // Lists whose order means something stay ordered: examples, anyOf, prefix items.
  t.not(declarationKey({ examples: [1, 2] }), declarationKey({ examples: [2, 1] }))
  t.not(declarationKey({ anyOf: [{ type: 'string' }, { type: 'integer' }] }), declarationKey({ anyOf: [{ type: 'integer' }, { type: 'string' }] }))
})

t.test('a table compiles only the tasks whose declaration changed, unless a schema\'s $id or references tie it to the others', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  const withId = { $id: 'https://example.com/c.json', type: 'object' }
  registry.update([declared('a', { type: 'integer' }), declared('b', { type: 'string' }), declared('c', withId)])
  const [a, b, c] = ['a', 'b', 'c'].map((name) => registry.get(name))
  registry.update([declared('a', { type: 'integer', minimum: 1 }), declared('b', { type: 'string' }), declared('c', withId)])
  t.not(registry.get('a'), a, 'the task that changed is compiled again')
  t.equal(registry.get('b'), b, 'one that did not is taken as it was')
  t.not(registry.get('c'), c, 'one with an $id is compiled again')
  const e = declared('e', { type: 'integer' }, { outputSchema: { type: 'object' } })
  registry.update([e])
  const first = registry.get('e')
  registry.update([declared('f', { type: 'string' }), e])
  t.equal(registry.get('e'), first, 'with its output schema too')
})

t.test('patterns run in linear time (RE2); one RE2 does not take runs in JavaScript\'s engine without nested quantifiers, and is refused with them', async (t) => {
  const validate = compileBodyValidator({ type: 'object', properties: { a: { type: 'string', pattern: '^[0-9a-f]{4}$' }, b: { type: 'string', pattern: '^(a+)+$' }, c: { type: 'string', pattern: '^\\p{L}+$' } } })
  t.equal(validate({ a: '00ff', b: 'aaa', c: 'Ünïcödé' }), true, 'each pattern its own (Ajv keeps one engine object per distinct string)')
  t.equal(validate({ b: `${'a'.repeat(5000)}!` }), false, 'no backtracking: JavaScript\'s engine would not finish')
  t.equal(validate({ a: '00fg' }), false)
  const lookahead = compileBodyValidator({ type: 'string', pattern: '^(?=.*[0-9]).{8,}$' })
  t.same([lookahead('abcdefg1'), lookahead('abcdefgh')], [true, false])
  const registry = new TaskRegistry(loadConfig({}))
  t.throws(() => { registry.check([declared('bad.pattern', { type: 'object', properties: { s: { type: 'string', pattern: '^(?=(a+)+$)' } } })]) },
    { message: /^task bad\.pattern declares an invalid input schema: pattern "\^\(\?=\(a\+\)\+\$\)" cannot be run in linear time \(RE2 does not take it: .*\), and it repeats a group that holds a quantifier or an alternation, .*; rewrite it$/ })
})

t.test('a limit naming a task no worker declares says what it may be meant as: a typo is otherwise a limit silently not applied', async (t) => {
  const served = [declared('echo', { type: 'object' }), declared('shop.order', { type: 'object' })]
  const problem = (env: Record<string, string>): string | undefined => {
    const registry = new TaskRegistry(loadConfig(env))
    registry.update(structuredClone(served))
    return registry.unusedLimitsProblem()
  }
  t.equal(problem({ TASK_TIMEOUTS: 'ecoh=1000, Echo=2000', TASK_MODULES: 'shop' }),
    'TASK_TIMEOUTS names tasks no worker declares: ecoh (did you mean "echo"?), Echo (did you mean "echo"?) (the tasks are echo, shop.order)')
  t.equal(problem({ TASK_CONCURRENCY: 'shop.ordr=1, nothing.near=2', TASK_MODULES: 'shop' }),
    'TASK_CONCURRENCY names tasks no worker declares: shop.ordr (did you mean "shop.order"?), nothing.near (the tasks are echo, shop.order)')
  t.equal(problem({ TASK_TIMEOUTS: 'diag.work=400' }),
    'TASK_TIMEOUTS names tasks no worker declares: diag.work (the diag.* tasks are registered only with DIAG_TASKS=1) (the tasks are echo, shop.order)')
  // A task of one's own, with no TASK_MODULES at all: said once, after the names.
  t.equal(problem({ TASK_TIMEOUTS: 'greet=1000, farewell=2000' }),
    'TASK_TIMEOUTS names tasks no worker declares: greet, farewell (only the built-in tasks are served: name the modules of your own in TASK_MODULES) (the tasks are echo, shop.order)')
  t.equal(problem({ TASK_TIMEOUTS: 'echo=1000' }), undefined)
  // Serving: the same words in the warning, which names the unknown tasks as a field too.
  const registry = new TaskRegistry(loadConfig({ TASK_TIMEOUTS: 'ecoh=1000', TASK_MODULES: 'shop' }))
  registry.update(structuredClone(served))
  const warnings: Array<[Record<string, unknown>, string]> = []
  registry.warnAboutUnusedLimits({ warn: (fields: Record<string, unknown>, message: string) => { warnings.push([fields, message]) } } as unknown as Parameters<TaskRegistry['warnAboutUnusedLimits']>[0])
  t.same(warnings, [[{ unused: ['ecoh'], tasks: ['echo', 'shop.order'] }, 'TASK_TIMEOUTS names tasks no worker declares, ignored: ecoh (did you mean "echo"?)']])
})

t.test('an error\'s details cut what the client sent, as its message does: a 1 MB key does not come back whole', async (t) => {
  const validate = compileBodyValidator({ type: 'object', additionalProperties: false, properties: { values: { type: 'array' } } })
  const key = 'k'.repeat(1_000_000)
  t.equal(validate({ values: [], [key]: 1 }), false)
  const error = validationError(validate.errors, 'body') as Error & { details: Array<{ params: { additionalProperty: string } }> }
  t.equal(error.details[0].params.additionalProperty, `${'k'.repeat(197)}...`)
  t.ok(JSON.stringify(error.details).length < 1000)
})
