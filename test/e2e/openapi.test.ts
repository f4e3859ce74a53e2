// GET /api/openapi.json on a real server: a valid OpenAPI 3.1 document (checked by an
// OpenAPI validator), one operation per task with the task's own schema, and a call
// built from it alone is answered.

import t from 'tap'
import { Validator } from '@seriousme/openapi-schema-validator'
import { getJson, startServer } from '../helpers/server.js'

interface Operation { operationId: string, parameters: Array<{ $ref?: string, name?: string, in?: string, required?: boolean, schema?: unknown }>, requestBody: { content: Record<string, { schema: unknown }> }, responses: Record<string, unknown>, 'x-pyfleet-timeout-ms': number }
interface Document { openapi: string, info: { version: string }, paths: Record<string, { post?: Operation, get?: unknown }> }

t.test('the document is valid OpenAPI 3.1, with one operation per task carrying its schema, timeout and raw types', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_TIMEOUTS: 'echo=1234' })
  const document = await getJson(`${server.url}/api/openapi.json`) as Document
  const result = await new Validator().validate(document as unknown as Parameters<Validator['validate']>[0])
  t.same(result.errors, undefined, 'no validation errors')
  t.equal(result.valid, true)
  t.equal(document.openapi, '3.1.0')
  const { tasks } = await getJson(`${server.url}/api/tasks`) as { tasks: Array<{ name: string, schema: unknown, raw: string[], timeoutMs: number }> }
  for (const task of tasks) {
    const operation = document.paths[`/api/tasks/${task.name}`]?.post
    t.ok(operation, `${task.name} has an operation`)
    if (operation === undefined) continue
    t.same(operation.requestBody.content['application/json'].schema, task.schema, `${task.name}: its own input schema`)
    t.same(Object.keys(operation.requestBody.content).sort(), ['application/json', 'application/msgpack', ...task.raw].sort(), `${task.name}: every content type it takes`)
    t.equal(operation['x-pyfleet-timeout-ms'], task.timeoutMs)
    t.ok(['200', '400', '422', '503', '504'].every((status) => status in operation.responses), `${task.name}: its answers`)
  }
  t.equal(document.paths['/api/tasks/echo']?.post?.['x-pyfleet-timeout-ms'], 1234, 'the timeout in force, not the declared one')
  t.notOk('/admin/reload' in document.paths, 'admin routes only when they are served')
})

t.test('a raw task\'s options are query parameters, and a call made from the document alone is answered', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', ADMIN_TOKEN: 'a'.repeat(32) })
  const document = await getJson(`${server.url}/api/openapi.json`) as Document
  t.ok(document.paths['/admin/reload'], 'the admin route, when ADMIN_TOKEN is set')
  const csv = document.paths['/api/tasks/csv.profile']?.post
  const query = (csv?.parameters ?? []).filter((parameter) => parameter.in === 'query')
  t.ok(query.length > 0, 'csv.profile takes options in the query string')
  t.notOk(query.some((parameter) => parameter.name === 'csv'), 'not the field the raw body becomes')
  const header = query.find((parameter) => parameter.name === 'header')
  t.match(header, { schema: { type: 'boolean' } }, 'each option with its schema')
  const answer = await fetch(`${server.url}/api/tasks/csv.profile?header=true`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: 'a,b\n1,x\n2,y\n' })
  t.equal(answer.status, 200, 'the call the document describes is answered')
})
