// inputFields: which query parameters beside a JSON body name a field of the task's input.

import t from 'tap'
import { inputFields } from '../src/task-registry.js'

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
