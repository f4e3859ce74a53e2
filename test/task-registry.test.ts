// inputFields: which query parameters beside a JSON body name a field of the task's input;
// validationError: what a 400 says about the first thing wrong with an input.

import t from 'tap'
import { Ajv } from 'ajv'
import { binaryIsNoObject, compileBodyValidator, inputFields, validationError } from '../src/schema-compile.js'

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
