// GET /api/openapi.json on a real server: a valid OpenAPI 3.1 document (checked by an
// OpenAPI validator), one operation per task with the task's own schema, and calls built
// from it alone are answered; unusual task names and schemas keep it valid.

import t from 'tap'
import { Validator } from '@seriousme/openapi-schema-validator'
import { readmeRows } from '../helpers/readme.js'
import { FIXTURES, getJson, startServer } from '../helpers/server.js'

interface Parameter { $ref?: string, name?: string, in?: string, required?: boolean, schema?: { $ref?: string } }
interface Operation { operationId: string, parameters: Parameter[], requestBody: { content: Record<string, { schema: { $ref?: string } }> }, responses: Record<string, unknown>, 'x-pyfleet-timeout-ms': number }
interface Document { openapi: string, paths: Record<string, { post?: Operation, get?: unknown }>, components: { schemas: Record<string, Record<string, unknown>> } }

async function valid (t: { same: (a: unknown, b: unknown, m: string) => unknown, equal: (a: unknown, b: unknown, m: string) => unknown }, document: Document): Promise<void> {
  const result = await new Validator().validate(document as unknown as Parameters<Validator['validate']>[0])
  t.same(result.errors, undefined, 'no validation errors')
  t.equal(result.valid, true, 'a valid OpenAPI 3.1 document')
}

/** The component a `#/components/schemas/<name>` reference names. */
function component (document: Document, ref: string | undefined): Record<string, unknown> | undefined {
  return document.components.schemas[String(ref).replace('#/components/schemas/', '')]
}

t.test('the document is valid OpenAPI 3.1, with one operation per task carrying its schema, timeout and content types', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_TIMEOUTS: 'echo=1234' })
  const document = await getJson(`${server.url}/api/openapi.json`) as Document
  await valid(t, document)
  t.equal(document.openapi, '3.1.0')
  t.notOk(document.paths['/admin/reload'], 'no admin route without ADMIN_TOKEN')
  t.notOk((document.components as { schemas: Record<string, unknown> }).schemas.ReloadResult, 'nor its answer\'s component, which nothing would use')
  const paths = document.paths as unknown as Record<string, { get: { responses: Record<string, { headers: Record<string, unknown> }> } }>
  t.ok(paths['/health'].get.responses[503].headers['retry-after'], 'the 503 of /health declares the Retry-After it carries')
  const other = (document.components as unknown as { responses: { Other: { description: string } } }).responses.Other
  t.match(other.description, /405 METHOD_NOT_ALLOWED whose Allow header lists the methods/, 'a wrong method\'s 405, which no operation describes, is said where a client reads of other answers')
  const { tasks } = await getJson(`${server.url}/api/tasks`) as { tasks: Array<{ name: string, schema: unknown, raw: string[], timeoutMs: number }> }
  for (const task of tasks) {
    const operation = document.paths[`/api/tasks/${task.name}`]?.post
    t.ok(operation, `${task.name} has an operation`)
    if (operation === undefined) continue
    // pyfleet's own keyword, `bytes`, is written as an extension there.
    const schema = JSON.parse(JSON.stringify(component(document, operation.requestBody.content['application/msgpack'].schema.$ref)).replaceAll('"x-pyfleet-bytes":', '"bytes":'))
    t.same(schema, task.schema, `${task.name}: its own input schema, for msgpack bodies`)
    t.same(Object.keys(operation.requestBody.content).sort(), ['application/json', 'application/msgpack', 'application/vnd.msgpack', 'application/x-msgpack', ...task.raw].sort(), `${task.name}: every content type it takes`)
    t.equal(operation['x-pyfleet-timeout-ms'], task.timeoutMs)
    t.ok(['200', '400', '422', '503', '504'].every((status) => status in operation.responses), `${task.name}: its answers`)
  }
  t.equal(document.paths['/api/tasks/echo']?.post?.['x-pyfleet-timeout-ms'], 1234, 'the timeout in force, not the declared one')
  const csv = document.paths['/api/tasks/csv.profile']?.post as unknown as { summary: string, description: string }
  const listed = tasks.find((task) => task.name === 'csv.profile') as unknown as { description: string }
  t.equal(csv.summary, listed.description, 'the summary is the description GET /api/tasks lists: the docstring\'s first paragraph')
  t.match(csv.description, /^Profile each column[^\n]*\n\nValues are trimmed;[\s\S]*Blank lines are skipped/, 'the description is the whole docstring, its paragraphs kept')
  t.notMatch(listed.description, /Blank lines/)
  const hash = document.paths['/api/tasks/hash.digest']?.post?.requestBody.content
  t.match(component(document, hash?.['application/json'].schema.$ref), { properties: { data: { anyOf: [{ type: 'string' }] } } }, 'a JSON body cannot carry binary: there bytes match nothing, so data is a string')
  t.match(component(document, hash?.['application/msgpack'].schema.$ref), { properties: { data: { anyOf: [{ type: 'string' }, { 'x-pyfleet-bytes': true }] } } }, 'a msgpack body can')
  t.same(Object.keys(document.components.schemas).filter((name) => name.startsWith('task_echo_')).sort(), ['task_echo_input', 'task_echo_output'], 'a schema without bytes is one component for both')
  t.ok(document.paths['/api/tasks/{name}']?.get, 'the description of one task')
  t.notOk('/admin/reload' in document.paths, 'admin routes only when they are served')
})

t.test('a raw task\'s options are query parameters, never required as such, and a call made from the document alone is answered', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', ADMIN_TOKEN: 'openapi-test-token-5173' })
  const document = await getJson(`${server.url}/api/openapi.json`) as Document
  t.ok(document.paths['/admin/reload'], 'the admin route, when ADMIN_TOKEN is set')
  t.ok((document.components as { schemas: Record<string, unknown> }).schemas.ReloadResult, 'and its answer\'s component')
  const csv = document.paths['/api/tasks/csv.profile']?.post
  const query = (csv?.parameters ?? []).filter((parameter) => parameter.in === 'query')
  t.ok(query.length > 0, 'csv.profile takes options in the query string')
  t.notOk(query.some((parameter) => parameter.name === 'csv'), 'not the field the raw body becomes')
  t.ok(query.every((parameter) => parameter.required === false), 'none required: a JSON body carries them instead')
  const header = query.find((parameter) => parameter.name === 'header')
  // A copy of the field's schema, without its description (the parameter has its own): not a
  // $ref into the input's component, for which orval declared no type.
  const input = component(document, csv?.requestBody.content['application/json'].schema.$ref) as { properties: Record<string, Record<string, unknown>> }
  const { description: _description, ...headerSchema } = input.properties.header
  t.same(header?.schema, headerSchema, 'each option with its schema')
  t.notMatch(JSON.stringify(csv?.parameters), /\$ref":"#\/components\/schemas\//, 'no reference into a component')
  const answer = await fetch(`${server.url}/api/tasks/csv.profile?header=true`, { method: 'POST', headers: { 'content-type': 'text/csv' }, body: 'a,b\n1,x\n2,y\n' })
  t.equal(answer.status, 200, 'the call the document describes is answered')
})

/** Equal as JSON values, numbers to floating point's rounding (a fit's 1.0000000000000004 is the example's 1). */
function nearlyEqual (found: unknown, wanted: unknown): boolean {
  if (typeof found === 'number' && typeof wanted === 'number') return Math.abs(found - wanted) <= 1e-9 * Math.max(1, Math.abs(found), Math.abs(wanted))
  if (Array.isArray(found) && Array.isArray(wanted)) return found.length === wanted.length && found.every((item, i) => nearlyEqual(item, wanted[i]))
  if (typeof found === 'object' && found !== null && typeof wanted === 'object' && wanted !== null && !Array.isArray(found) && !Array.isArray(wanted)) {
    const keys = Object.keys(wanted)
    return Object.keys(found).length === keys.length && keys.every((key) => key in found && nearlyEqual((found as Record<string, unknown>)[key], (wanted as Record<string, unknown>)[key]))
  }
  return found === wanted
}

t.test('every built-in task\'s examples, read from the document, are answered with its output example, as JSON and as a raw body', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', DIAG_TASKS: '1' })
  const document = await getJson(`${server.url}/api/openapi.json`) as Document
  const { tasks } = await getJson(`${server.url}/api/tasks`) as { tasks: Array<{ name: string, rawField: string | null }> }
  // Every built-in task is checked below, diag.work among them: those README's table lists
  // (builtin-tasks.test.ts keeps that table to the tasks the workers declare), so a new one needs no edit here.
  const builtIn = (await readmeRows('## The built-in tasks')).map((row) => /^\| `([^`]+)`/.exec(row)?.[1])
  t.ok(builtIn.includes('diag.work') && builtIn.length > 1, `README's built-in tasks: ${builtIn.join(', ')}`)
  t.same(tasks.map(({ name }) => name).sort(), builtIn.sort(), 'the tasks served are README\'s built-in tasks (a new one: add its row to README\'s "The built-in tasks")')
  for (const { name, rawField } of tasks) {
    const operation = document.paths[`/api/tasks/${name}`]?.post as unknown as { requestBody: { content: Record<string, { schema: { $ref?: string, examples?: unknown[] } }> }, responses: { 200: { content: Record<string, { schema: { $ref?: string } }> } } }
    const inputs = component(document, operation.requestBody.content['application/json'].schema.$ref)?.examples as unknown[] | undefined
    const outputs = component(document, operation.responses[200].content['application/json'].schema.$ref)?.examples as unknown[] | undefined
    t.ok(Array.isArray(inputs) && inputs.length > 0, `${name}: an input example`)
    t.equal(outputs?.length, inputs?.length, `${name}: an output example for each`)
    for (const [i, input] of (inputs ?? []).entries()) {
      const wanted = outputs?.[i]
      const answer = await fetch(`${server.url}/api/tasks/${name}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) })
      t.equal(answer.status, 200, `${name}: example ${i} is answered`)
      const found = await answer.json() as Record<string, unknown>
      if (name === 'diag.work') {
        // Its pid and its count of spins differ at each call: the fields and what it did are the example's.
        t.same(Object.keys(found).sort(), Object.keys(wanted as object).sort(), `${name}: example ${i}'s fields`)
        t.match(found, { slept_ms: (wanted as Record<string, unknown>).slept_ms, cpu_ms: (wanted as Record<string, unknown>).cpu_ms })
      } else {
        t.ok(nearlyEqual(found, wanted), `${name}: example ${i} answers its output example`, { found, wanted })
      }
      // The same input as a raw body, its other fields in the query string, as the document's raw examples show it.
      const text = rawField === null ? undefined : (input as Record<string, unknown>)[rawField]
      for (const [type, media] of Object.entries(operation.requestBody.content)) {
        if (typeof text !== 'string' || type === 'application/octet-stream' || !media.schema.examples?.includes(text)) continue
        const query = new URLSearchParams(Object.entries(input as Record<string, unknown>).filter(([key]) => key !== rawField).map(([key, value]) => [key, String(value)]))
        const raw = await fetch(`${server.url}/api/tasks/${name}?${query.toString()}`, { method: 'POST', headers: { 'content-type': type }, body: text })
        t.equal(raw.status, 200, `${name}: example ${i} as ${type}`)
        t.ok(nearlyEqual(await raw.json(), wanted), `${name}: example ${i} as ${type} answers the same`)
      }
    }
  }
  t.same(Object.entries(document.paths).filter(([, path]) => Object.values(path.post?.requestBody.content ?? {}).some((media) => (media.schema as { examples?: unknown }).examples !== undefined && media.schema.$ref === undefined)).map(([path]) => path).sort(),
    ['/api/tasks/csv.profile', '/api/tasks/text.stats', '/api/tasks/xml.import'], 'the raw text bodies have examples of their own; octet-stream has none')
})

t.test('names that read alike, references inside schemas, fields under allOf and tuple items keep the document valid', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'openapi_tasks', PYTHONPATH: FIXTURES })
  const document = await getJson(`${server.url}/api/openapi.json`) as Document
  await valid(t, document)
  const ids = Object.values(document.paths).flatMap((path) => Object.values(path as Record<string, { operationId: string }>)).map((operation) => operation.operationId)
  t.equal(new Set(ids).size, ids.length, 'operationIds are unique')
  t.same([document.paths['/api/tasks/odd.a-b']?.post?.operationId, document.paths['/api/tasks/odd.a_b']?.post?.operationId].sort(), ['task_odd_a_b', 'task_odd_a_b_2'])
  const withRef = component(document, document.paths['/api/tasks/odd.ref']?.post?.requestBody.content['application/json'].schema.$ref)
  t.match(withRef, { properties: { mode: { $ref: '#/components/schemas/task_odd_ref_input.Mode' } } }, 'a reference to a definition points to its component')
  t.notOk('definitions' in (withRef ?? {}), 'which is not inside the task\'s: openapi-typescript would type it as a property')
  t.match(component(document, '#/components/schemas/task_odd_ref_input.Mode'), { enum: Array })
  const tuple = component(document, document.paths['/api/tasks/odd.tuple']?.post?.requestBody.content['application/json'].schema.$ref)
  t.same(tuple, { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], minItems: 2, items: false }, 'a draft-07 tuple in OpenAPI 3.1\'s dialect')
  const rawRef = document.paths['/api/tasks/odd.raw_ref']?.post?.parameters.filter((parameter) => parameter.in === 'query')
  t.same(rawRef?.map((parameter) => parameter.name), ['mode'], 'an option declared under allOf is a query parameter too')
  const answer = await fetch(`${server.url}/api/tasks/odd.raw_ref?mode=fast`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' })
  t.same(await answer.json(), { text: 'hi', mode: 'fast' }, 'as the server takes it')
  const options = document.paths['/api/tasks/odd.required_option']?.post?.parameters.filter((parameter) => parameter.in === 'query')
  t.same(options?.map((parameter) => parameter.name), ['lang'], 'an object option, which no query string can carry, is no query parameter (a JSON body carries it)')
  const option = options?.find((parameter) => parameter.name === 'lang')
  t.match(option, { required: false, description: /required then/ }, 'a required option is required with a raw body only')
  const json = await fetch(`${server.url}/api/tasks/odd.required_option`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"text":"hi","lang":"en"}' })
  t.equal(json.status, 200, 'a JSON body carries it without the query string')
})

t.test('a task\'s output schema is its 200\'s schema: bytes as base64 strings in JSON, binary in msgpack; none declared is anything', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'output_tasks', PYTHONPATH: FIXTURES })
  const document = await getJson(`${server.url}/api/openapi.json`) as Document
  await valid(t, document)
  type Content = Record<string, { schema: { $ref?: string } }>
  const answers = (name: string): Content => ((document.paths[`/api/tasks/${name}`]?.post?.responses['200'] ?? {}) as { content: Content }).content
  const shaped = answers('out.shaped')
  const forJson = component(document, shaped['application/json'].schema.$ref) as { required: string[], properties: Record<string, Record<string, unknown>> }
  t.same(forJson.required, ['n'], 'the declared schema')
  t.match(forJson.properties.blob, { type: 'string', contentEncoding: 'base64', 'x-pyfleet-bytes': true }, 'bytes, as JSON answers write them')
  const forMsgpack = component(document, shaped['application/msgpack'].schema.$ref) as { properties: Record<string, Record<string, unknown>> }
  t.same(forMsgpack.properties.blob, { 'x-pyfleet-bytes': true, description: 'binary data' }, 'bytes, as msgpack answers carry them')
  t.same(answers('out.undeclared')['application/json'].schema, {}, 'no output schema: anything')
  const described = await getJson(`${server.url}/api/tasks/out.shaped`)
  t.same(JSON.parse(JSON.stringify(forMsgpack).replaceAll('"x-pyfleet-bytes":', '"bytes":')), described.outputSchema, 'the same schema GET /api/tasks lists')
  const ided = answers('out.ided')
  t.notOk('$id' in (component(document, ided['application/json'].schema.$ref) ?? {}), 'no $id in a component: the input and both answers hold the same schema, and a document may hold an $id once')
  // In JSON a base64 string cannot be told from a string: oneOf could match no answer there.
  const oneOf = component(document, answers('out.oneof')['application/json'].schema.$ref) as { properties: { data: Record<string, unknown> } }
  t.same(oneOf.properties.data, { anyOf: [{ 'x-pyfleet-bytes': true, type: 'string', contentEncoding: 'base64' }, { type: 'string' }], description: 'either' }, 'bytes under oneOf: anyOf in the JSON answer\'s schema')
  const oneOfMsgpack = component(document, answers('out.oneof')['application/msgpack'].schema.$ref) as { properties: { data: Record<string, unknown> } }
  // A validator that does not know x-pyfleet-bytes takes that branch for anything: oneOf would refuse every string there too.
  t.same(oneOfMsgpack.properties.data, { anyOf: [{ 'x-pyfleet-bytes': true }, { type: 'string' }], description: 'either' }, 'and anyOf in the msgpack answer\'s')
})
