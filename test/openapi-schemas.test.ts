// How a task's schemas become the OpenAPI document's components (routes/openapi.ts), on
// the walk of schema-walk.ts: names and data are left alone, and `bytes` means in each
// view what that view can carry (nothing in a JSON body, a base64 string in a JSON
// answer, a bin in msgpack). test/e2e/openapi-answers.test.ts checks real answers.

import t from 'tap'
import { openApiDocument } from '../src/routes/openapi.js'
import { mapSubschemas, walkSchemas } from '../src/schema-walk.js'
import type { Task } from '../src/task-registry.js'

type Json = Record<string, any>

function documentOf (schema: unknown, outputSchema: unknown = null): { schemas: Json, operation: Json } {
  const task = { name: 't', doc: 'T.', docstring: 'T.', schema, outputSchema, raw: [], rawField: null, inputFields: new Set(), timeoutMs: 1000, maxConcurrency: 1 } as unknown as Task
  const document = openApiDocument([task], { version: '0', adminRoutes: false }) as Json
  return { schemas: document.components.schemas, operation: document.paths['/api/tasks/t'].post }
}

t.test('mapSubschemas: schemas under keywords and in name maps, never data or names', async (t) => {
  const seen: string[] = []
  mapSubschemas({
    type: 'object',
    properties: { enum: { type: 'string' }, bytes: true },
    enum: [{ type: 'object' }],
    default: { type: 'x' },
    dependencies: { a: ['b'], c: { required: ['d'] } },
    anyOf: [{ minimum: 1 }, false],
    not: { const: 1 }
  }, (inner, keyword) => { seen.push(`${keyword} ${JSON.stringify(inner)}`) })
  t.same(seen.sort(), [
    'anyOf false',
    'anyOf {"minimum":1}',
    'dependencies {"required":["d"]}',
    'not {"const":1}',
    'properties true',
    'properties {"type":"string"}'
  ])
  const pointers: string[] = []
  walkSchemas({ properties: { 'a/b': { items: [{ bytes: true }] } }, enum: [{ type: 'x' }], dependencies: { c: ['d'], e: { not: {} } } }, (_schema, pointer) => { pointers.push(pointer) })
  t.same(pointers, ['', '/properties/a~1b', '/properties/a~1b/items/0', '/dependencies/e', '/dependencies/e/not'], 'every subschema with its pointer, data and name lists left out')
})

t.test('a JSON body cannot carry binary: there bytes match nothing; a msgpack body\'s component keeps them', async (t) => {
  const { schemas, operation } = documentOf({ type: 'object', properties: { data: { anyOf: [{ type: 'string' }, { bytes: true }] }, only: { oneOf: [{ bytes: true }] }, bytes: true }, enum: [{ bytes: true }], default: { $ref: '#/x' } })
  // A branch of bytes is `false` there, and left out of its anyOf or oneOf: generators typed
  // `anyOf: [string, false]` as unknown. With no branch left, nothing matches.
  t.same(schemas.task_t_input, {
    type: 'object',
    properties: { data: { anyOf: [{ type: 'string' }] }, only: { not: {} }, bytes: true },
    enum: [{ bytes: true }],
    default: { $ref: '#/x' }
  }, 'names and data left as they are')
  t.same(schemas.task_t_input_msgpack.properties.data.anyOf[1], { 'x-pyfleet-bytes': true })
  t.same(operation.requestBody.content['application/json'].schema, { $ref: '#/components/schemas/task_t_input' })
  t.same(operation.requestBody.content['application/msgpack'].schema, { $ref: '#/components/schemas/task_t_input_msgpack' })
  const plain = documentOf({ type: 'object', properties: { n: { type: 'integer' } } })
  t.same(Object.keys(plain.schemas).filter((name) => name.startsWith('task_')), ['task_t_input'], 'without bytes, one component serves both')
  t.same(plain.operation.requestBody.content['application/msgpack'].schema, { $ref: '#/components/schemas/task_t_input' })
})

t.test('a JSON answer\'s schema: bytes are base64 strings, and where a test would have to tell them from strings it says less', async (t) => {
  const { schemas } = documentOf({}, {
    type: 'object',
    properties: {
      blob: { bytes: true, description: 'b' },
      either: { oneOf: [{ bytes: true }, { type: 'string' }] },
      both: { anyOf: [{ type: 'string' }, { type: 'null' }], oneOf: [{ bytes: true }, { maxLength: 3 }] },
      notBytes: { not: { bytes: true } },
      notNumber: { not: { type: 'number' } },
      tested: { if: { bytes: true }, then: { maxLength: 8 }, else: { type: 'string' } },
      choice: { oneOf: [{ type: 'integer' }, { type: 'string' }] }
    }
  })
  const { properties } = schemas.task_t_output
  t.same(properties.blob, { 'x-pyfleet-bytes': true, description: 'b', type: 'string', contentEncoding: 'base64' })
  t.same(properties.either, { anyOf: [{ 'x-pyfleet-bytes': true, type: 'string', contentEncoding: 'base64' }, { type: 'string' }] }, 'oneOf over bytes and strings: anyOf')
  t.same(properties.both, { anyOf: [{ type: 'string' }, { type: 'null' }], allOf: [{ anyOf: [{ 'x-pyfleet-bytes': true, type: 'string', contentEncoding: 'base64' }, { maxLength: 3 }] }] }, 'beside an anyOf of its own')
  t.same(properties.notBytes, {}, 'not bytes: a JSON answer cannot say')
  t.same(properties.notNumber, { not: { type: 'number' } }, 'a not without bytes is kept')
  t.same(properties.tested, {}, 'an if on bytes, with its branches')
  t.same(properties.choice, { oneOf: [{ type: 'integer' }, { type: 'string' }] }, 'a oneOf without bytes is kept')
  // A validator that does not know x-pyfleet-bytes takes that branch for anything: a oneOf would refuse every string.
  const msgpack = schemas.task_t_output_msgpack.properties
  t.same(msgpack.either, { anyOf: [{ 'x-pyfleet-bytes': true }, { type: 'string' }] }, 'the msgpack answer\'s oneOf over bytes: anyOf too')
  t.same(msgpack.notBytes, {}, 'and its not over bytes')
  t.same(msgpack.choice, { oneOf: [{ type: 'integer' }, { type: 'string' }] }, 'a oneOf without bytes is kept there too')
})

t.test('every operation has a default answer: an error in the Error shape', async (t) => {
  const task = { name: 't', doc: '', docstring: '', schema: {}, outputSchema: null, raw: [], rawField: null, inputFields: new Set(), timeoutMs: 1, maxConcurrency: 1 } as unknown as Task
  const document = openApiDocument([task], { version: '0', adminRoutes: true }) as Json
  const operations = Object.values(document.paths as Json).flatMap((path) => Object.values(path as Json))
  t.ok(operations.length >= 9)
  t.ok(operations.every((operation) => operation.responses.default?.$ref === '#/components/responses/Other'), 'on each')
  t.same(document.components.responses.Other.content['application/json'].schema, { $ref: '#/components/schemas/Error' })
})

t.test('bytes reached through references count, and so do bytes: false and bytes in then or else', async (t) => {
  const blob = { bytes: true }
  const { schemas } = documentOf({}, {
    type: 'object',
    definitions: { blob },
    properties: {
      refOneOf: { oneOf: [{ $ref: '#/definitions/blob' }, { type: 'string' }] },
      refNot: { not: { $ref: '#/definitions/blob' } },
      notBinary: { not: { bytes: false } },
      elseBytes: { if: { type: 'string' }, then: { pattern: '^[a-z]+$' }, else: { bytes: true } },
      unique: { type: 'array', uniqueItems: true, items: { anyOf: [{ bytes: true }, { type: 'string' }] } },
      uniqueNumbers: { type: 'array', uniqueItems: true, items: { type: 'number' } }
    }
  })
  const { properties } = schemas.task_t_output
  t.same(properties.refOneOf, { anyOf: [{ $ref: '#/components/schemas/task_t_output.blob' }, { type: 'string' }] })
  t.same(schemas['task_t_output.blob'], { 'x-pyfleet-bytes': true, type: 'string', contentEncoding: 'base64' }, 'the definition, in the JSON answer\'s view')
  t.same(schemas['task_t_output_msgpack.blob'], { 'x-pyfleet-bytes': true }, 'and in msgpack\'s')
  t.same(properties.refNot, {})
  t.same(properties.notBinary, {})
  t.same(properties.elseBytes, {})
  t.same(properties.unique, { type: 'array', items: { anyOf: [{ 'x-pyfleet-bytes': true, type: 'string', contentEncoding: 'base64' }, { type: 'string' }] } }, 'bytes and a string are one string in JSON: not unique')
  t.same(properties.uniqueNumbers.uniqueItems, true)
  t.ok('task_t_output_msgpack' in schemas)
})

t.test('references by $id and anchor point into the component, and no $id is left; dependencies in 2020-12\'s words', async (t) => {
  const { schemas } = documentOf({
    $id: 'https://example.com/in.json',
    type: 'object',
    definitions: { mode: { $id: '#mode', enum: ['a', 'b'] }, item: { $id: 'item.json', type: 'integer' } },
    properties: {
      m: { $ref: '#mode' },
      i: { $ref: 'item.json' },
      self: { $ref: 'https://example.com/in.json#/definitions/item' },
      root: { $ref: 'https://example.com/in.json' },
      outside: { $ref: 'https://example.org/other.json' }
    },
    dependencies: { a: ['b'], c: { required: ['d'] } }
  })
  const input = schemas.task_t_input
  const base = '#/components/schemas/task_t_input'
  // The definitions at the top are components of their own (openapi-typescript typed $defs as a property, and could not follow refs into definitions).
  t.same(input.properties, { m: { $ref: `${base}.mode` }, i: { $ref: `${base}.item` }, self: { $ref: `${base}.item` }, root: { $ref: base }, outside: { $ref: 'https://example.org/other.json' } })
  t.same([input.definitions, schemas['task_t_input.mode'], schemas['task_t_input.item']], [undefined, { enum: ['a', 'b'] }, { type: 'integer' }], 'moved out of the task\'s component')
  t.notOk(JSON.stringify(schemas).includes('"$id"'), 'no $id anywhere: the document may hold each once')
  const nested = documentOf({ type: 'object', definitions: { b: { type: 'number' } }, properties: { x: { $id: 'http://example.com/x.json', definitions: { b: { type: 'string' } }, properties: { y: { $ref: '#/definitions/b' } } }, z: { $ref: '#/definitions/b' } } }).schemas.task_t_input
  t.equal(nested.properties.x.properties.y.$ref, `${base}/properties/x/definitions/b`, 'inside a subschema with an $id of its own, #/... is that subschema\'s, as Ajv reads it')
  t.equal(nested.properties.z.$ref, `${base}.b`, 'and the root\'s outside it')
  t.same([input.dependentRequired, input.dependentSchemas, input.dependencies], [{ a: ['b'] }, { c: { required: ['d'] } }, undefined])
  // A draft-07 $schema beside the 2020-12 words: `items: false` would read as "no items" to a tool that honours it.
  const drafted = documentOf({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'array', items: [{ type: 'number' }], additionalItems: false }).schemas.task_t_input
  t.same(drafted, { type: 'array', prefixItems: [{ type: 'number' }], items: false }, 'no $schema left')
})

t.test('a bytes schema holding definitions keeps them in a JSON body\'s component, for references into them', async (t) => {
  const { schemas } = documentOf({ type: 'object', properties: { blob: { bytes: true, definitions: { name: { type: 'string' } } }, name: { $ref: '#/properties/blob/definitions/name' } } })
  t.same(schemas.task_t_input.properties.blob, { not: {}, definitions: { name: { type: 'string' } } })
  t.same(schemas.task_t_input.properties.name, { $ref: '#/components/schemas/task_t_input/properties/blob/definitions/name' })
})

t.test('a raw text body\'s examples are the input examples that hold the raw field alone; options need the query string', async (t) => {
  const schema = {
    type: 'object',
    properties: { text: { type: 'string' }, top: { type: 'integer' } },
    examples: [{ text: 'alone' }, { text: 'with an option', top: 3 }, { top: 1 }, 'not an object', { text: 7 }]
  }
  const task = { name: 'raw.t', doc: '', docstring: '', schema, outputSchema: null, raw: ['text/plain', 'application/octet-stream'], rawField: 'text', inputFields: new Set(['text', 'top']), timeoutMs: 1, maxConcurrency: 1 } as unknown as Task
  const content = (openApiDocument([task], { version: '0', adminRoutes: false }) as Json).paths['/api/tasks/raw.t'].post.requestBody.content
  t.same(content['text/plain'].schema, { type: 'string', examples: ['alone'] })
  t.same(content['application/octet-stream'].schema, { type: 'string', contentMediaType: 'application/octet-stream' }, 'no example of bytes')
  const none = { ...task, schema: { ...schema, examples: [{ text: 'with an option', top: 3 }] } } as unknown as Task
  t.same((openApiDocument([none], { version: '0', adminRoutes: false }) as Json).paths['/api/tasks/raw.t'].post.requestBody.content['text/plain'].schema, { type: 'string' })
})

t.test('a raw task\'s query options: a copy of each field\'s schema, and only of its own fields (toString is a name like any other)', async (t) => {
  const schema = {
    type: 'object',
    required: ['text'],
    properties: { text: { type: 'string' }, limit: { type: 'integer', minimum: 1, description: 'the field\'s own words' } },
    allOf: [{ type: 'object', properties: { toString: { type: 'boolean' }, hasOwnProperty: { type: 'integer' } } }]
  }
  const task = { name: 't', doc: 'T.', docstring: 'T.', schema, outputSchema: null, raw: ['text/plain'], rawField: 'text', inputFields: new Set(['text', 'limit', 'toString', 'hasOwnProperty']), timeoutMs: 1000, maxConcurrency: 1 } as unknown as Task
  const document = openApiDocument([task], { version: '0', adminRoutes: false }) as Json
  const query = Object.fromEntries((document.paths['/api/tasks/t'].post.parameters as Json[]).filter((p) => p.in === 'query').map((p) => [p.name, p.schema]))
  t.same(query, { hasOwnProperty: {}, limit: { type: 'integer', minimum: 1 }, toString: {} }, 'declared outside properties: anything (the body\'s schema checks it); never Object.prototype\'s')
  t.notMatch(JSON.stringify(document.paths), /"\$ref":"#\/components\/schemas\/task_t_input\/properties/, 'no reference into the component')
})
