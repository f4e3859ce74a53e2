// How a task's schemas become the OpenAPI document's components (routes/openapi.ts), on
// the walk of schema-walk.ts: names and data are left alone, and `bytes` means in each
// view what that view can carry (nothing in a JSON body, a base64 string in a JSON
// answer, a bin in msgpack). test/e2e/openapi-answers.test.ts checks real answers.

import t from 'tap'
import { openApiDocument } from '../src/routes/openapi.js'
import { hasBytes, mapSubschemas } from '../src/schema-walk.js'
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
  t.ok(hasBytes({ properties: { a: { anyOf: [{ bytes: true }] } } }), 'bytes deep inside')
  t.notOk(hasBytes({ properties: { bytes: true } }), 'a property named bytes is not the keyword')
  t.notOk(hasBytes({ enum: [{ bytes: true }] }), 'nor is data shaped like it')
  t.notOk(hasBytes({ bytes: false }))
})

t.test('a JSON body cannot carry binary: there bytes match nothing; a msgpack body\'s component keeps them', async (t) => {
  const { schemas, operation } = documentOf({ type: 'object', properties: { data: { anyOf: [{ type: 'string' }, { bytes: true }] }, bytes: true }, enum: [{ bytes: true }], default: { $ref: '#/x' } })
  t.same(schemas.task_t_input, {
    type: 'object',
    properties: { data: { anyOf: [{ type: 'string' }, false] }, bytes: true },
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
  t.same(schemas.task_t_output_msgpack.properties.either, { oneOf: [{ 'x-pyfleet-bytes': true }, { type: 'string' }] }, 'the msgpack answer\'s is as declared')
})

t.test('every operation has a default answer: an error in the Error shape', async (t) => {
  const task = { name: 't', doc: '', docstring: '', schema: {}, outputSchema: null, raw: [], rawField: null, inputFields: new Set(), timeoutMs: 1, maxConcurrency: 1 } as unknown as Task
  const document = openApiDocument([task], { version: '0', adminRoutes: true }) as Json
  const operations = Object.values(document.paths as Json).flatMap((path) => Object.values(path as Json))
  t.ok(operations.length >= 9)
  t.ok(operations.every((operation) => operation.responses.default?.$ref === '#/components/responses/Other'), 'on each')
  t.same(document.components.responses.Other.content['application/json'].schema, { $ref: '#/components/schemas/Error' })
})
