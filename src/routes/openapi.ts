// GET /api/openapi.json: the HTTP API as an OpenAPI 3.1 document, one operation per task
// with its own input schema, so that clients can be generated and browsed (Swagger UI,
// Redoc, openapi-generator) from what the workers declare. Made from the task table, and
// kept, as JSON, until a reload brings another: for 400 tasks it took 70-240 ms to make and
// write, with the event loop held, at every request.

import type { FastifyInstance } from 'fastify'
import { localTarget } from '../json-pointer.js'
import { ERROR_CODES } from '../errors.js'
import type { Task } from '../task-registry.js'
import { keptPerTable } from './per-table.js'
import { MSGPACK_TYPES } from './body.js'
import { viewComponents } from './openapi-schemas.js'
import { ERROR_SCHEMA, HEALTH_SCHEMA, QUEUE_STATS_SCHEMA, READY_SCHEMA, RELOAD_RESULT_SCHEMA, TASK_DESCRIPTION_SCHEMA, TASK_LIST_SCHEMA } from './service-schemas.js'

type Json = Record<string, unknown>

/** What the document says beyond the tasks. */
export interface ApiFacts {
  version: string
  /** POST /admin/reload is served (ADMIN_TOKEN is set). */
  adminRoutes: boolean
}

/** Statuses of pyfleet's errors (errors.ts), each with the codes it may carry; Fastify's own add a few (FST_ERR_*). */
const ERROR_STATUSES = [...new Set(ERROR_CODES.map(({ statusCode }) => statusCode))].sort((a, b) => a - b)
const ERROR_CONTENT = { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } }

/** A reference to one status's error response (components.responses), noted in `used`, which components lists. */
function error (status: number, used: Set<number>): Json {
  used.add(status)
  return { $ref: `#/components/responses/Status${status}` }
}

/** One status's error response, naming the codes errors.ts answers it with. */
function errorResponse (status: number): Json {
  const codes = ERROR_CODES.filter(({ statusCode }) => statusCode === status).map(({ code }) => `\`${code}\``)
  // server-timing: on the answers of calls that reached the queue (a task's 422, 500, 503 QUEUE_TIMEOUT...).
  const headers: Json = { 'x-request-id': { $ref: '#/components/headers/RequestId' }, 'server-timing': { $ref: '#/components/headers/ServerTiming' } }
  if (status === 503) headers['retry-after'] = { description: 'seconds to wait before trying again', schema: { type: 'integer' } }
  return { description: `an error: ${codes.join(', ')} (see its \`code\` and \`message\`)`, headers, content: ERROR_CONTENT }
}

/** Statuses a task call can answer besides 200 (404 is for names not in this document). */
const CALL_ERRORS = [400, 413, 415, 417, 422, 500, 501, 502, 503, 504]

/** Names safe as OpenAPI component keys and operationIds: a task name's characters, less the dot and dash. */
function identifier (name: string): string {
  return name.replace(/[^A-Za-z0-9_]/g, '_')
}

/** One operationId per task, unique although a.b, a_b and a-b read alike: the later ones get a number. */
function operationIds (tasks: readonly Task[]): Map<Task, string> {
  const ids = new Map<Task, string>()
  const taken = new Set<string>()
  for (const task of tasks) {
    const base = `task_${identifier(task.name)}`
    let id = base
    for (let n = 2; taken.has(id); n++) id = `${base}_${n}`
    taken.add(id)
    ids.set(task, id)
  }
  return ids
}

/**
 * Whether a property's schema (or the local definition it refers to) takes only an object,
 * or null: no query-string style carries one to the server, which reads `?where[x]=1` and
 * `?x=1` as options of their own names, so it is no query parameter.
 */
function onlyAnObject (schema: unknown, root: unknown): boolean {
  const type = (localTarget(schema, root) as { type?: unknown } | null | undefined)?.type
  return type === 'object' || (Array.isArray(type) && type.includes('object') && type.every((t) => t === 'object' || t === 'null'))
}

/**
 * A raw body's options: the input's other top-level fields, read from the query string.
 * Never required as parameters: a JSON or msgpack body carries them in the body instead,
 * and a query option beside one is refused.
 */
function queryOptions (task: Task, component: Json | undefined): Json[] {
  const properties = (task.schema as { properties?: Record<string, unknown> }).properties ?? {}
  const converted = (component?.properties ?? {}) as Json
  const required = new Set((task.schema as { required?: string[] }).required ?? [])
  return [...task.inputFields].filter((name) => name !== task.rawField && !onlyAnObject(Object.hasOwn(properties, name) ? properties[name] : undefined, task.schema)).sort().map((name) => ({
    name,
    in: 'query',
    required: false,
    description: `with a raw body (${task.raw.join(', ')}) only${required.has(name) ? ', and required then' : ''}; with JSON or msgpack, it goes in the body`,
    // A copy of the field's schema, not a $ref into the input's component: orval declared no
    // type for such a reference (a client that did not compile), and hey-api showed the field's
    // description in place of the parameter's (a client developer's review). Declared outside
    // `properties` (allOf, $ref...): anything, the body's schema checks it.
    schema: Object.hasOwn(converted, name) ? withoutDescription(converted[name]) : {}
  }))
}

/** A schema without its `description`: a parameter's own says what it is. */
function withoutDescription (schema: unknown): unknown {
  if (!isPlainObject(schema)) return schema
  const { description: _description, ...rest } = schema
  return rest
}

/**
 * A raw text body's examples: the raw field of each of the input's examples that holds it, as
 * a string, and nothing else. An example with options too is left out: they would be query
 * parameters, which the body's example cannot carry, and the body alone may answer otherwise.
 * Not for bytes: a JSON document can show an octet-stream body only as the base64 a JSON
 * input carries it as.
 */
function rawBodyExamples (task: Task): Json {
  const examples = (task.schema as { examples?: unknown }).examples
  if (task.rawField === null || !Array.isArray(examples)) return {}
  const field = task.rawField
  const texts = examples.filter((example) => isPlainObject(example) && Object.keys(example).length === 1).map((example) => (example as Json)[field]).filter((text) => typeof text === 'string')
  return texts.length === 0 ? {} : { examples: texts }
}

/** A task's operation; `components` are its schemas' (viewComponents). */
function taskOperation (task: Task, operationId: string, components: Json, used: Set<number>): Json {
  const summary = task.doc.split('\n')[0].trim() || task.name
  const input = `${operationId}_input`
  const output = `${operationId}_output`
  const content: Json = { 'application/json': { schema: firstRef(components, input) } }
  for (const type of MSGPACK_TYPES) content[type] = { schema: firstRef(components, `${input}_msgpack`, input) }
  const rawExamples = rawBodyExamples(task)
  for (const type of task.raw) {
    content[type] = { schema: type === 'application/octet-stream' ? { type: 'string', contentMediaType: type } : { type: 'string', ...rawExamples } }
  }
  const responses: Json = {
    200: {
      description: 'the task\'s return value: JSON, or msgpack with `Accept: application/msgpack` (in JSON, bytes are base64 strings and integers past 2^53 decimal strings)',
      headers: { 'x-request-id': { $ref: '#/components/headers/RequestId' }, 'server-timing': { $ref: '#/components/headers/ServerTiming' } },
      content: { 'application/json': { schema: firstRef(components, output) }, 'application/msgpack': { schema: firstRef(components, `${output}_msgpack`, output) } }
    }
  }
  for (const status of CALL_ERRORS) responses[status] = error(status, used)
  return {
    post: {
      operationId,
      summary,
      // The whole docstring: what a client's author reads (a raw task's options, edge cases).
      description: task.docstring,
      tags: ['tasks'],
      parameters: [
        { $ref: '#/components/parameters/RequestId' },
        { $ref: '#/components/parameters/RequestTimeout' },
        { $ref: '#/components/parameters/TraceParent' },
        { $ref: '#/components/parameters/TraceState' },
        { $ref: '#/components/parameters/Baggage' },
        ...(task.raw.length > 0 ? queryOptions(task, components[input] as Json | undefined) : [])
      ],
      requestBody: { required: true, content },
      responses,
      'x-pyfleet-timeout-ms': task.timeoutMs,
      'x-pyfleet-max-concurrency': task.maxConcurrency
    }
  }
}

function isPlainObject (value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A reference to the first of `names` among `components`, or `{}` (anything): a task without an output schema. */
function firstRef (components: Json, ...names: string[]): Json {
  const name = names.find((n) => n in components)
  return name === undefined ? {} : { $ref: `#/components/schemas/${name}` }
}

/** A JSON answer with its x-request-id (every answer has one). */
function json (description: string, schema: Json = { type: 'object' }): Json {
  return { description, headers: { 'x-request-id': { $ref: '#/components/headers/RequestId' } }, content: { 'application/json': { schema } } }
}

function componentRef (name: string): Json {
  return { $ref: `#/components/schemas/${name}` }
}

/** The whole document, for these tasks. */
export function openApiDocument (tasks: readonly Task[], facts: ApiFacts): Json {
  const paths: Json = {}
  const taskSchemas: Json = {}
  const used = new Set<number>()
  const ids = operationIds(tasks)
  for (const task of tasks) {
    const operationId = ids.get(task) ?? task.name
    const components = {
      ...viewComponents(task.schema, `${operationId}_input`, 'jsonBody'),
      ...(task.outputSchema === null ? {} : viewComponents(task.outputSchema, `${operationId}_output`, 'jsonAnswer'))
    }
    Object.assign(taskSchemas, components)
    paths[`/api/tasks/${task.name}`] = taskOperation(task, operationId, components, used)
  }
  paths['/api/tasks'] = { get: { operationId: 'listTasks', tags: ['tasks'], summary: 'every task, with its input schema, raw content types, timeout and concurrency limit', responses: { 200: json('the tasks', componentRef('TaskList')) } } }
  paths['/api/tasks/{name}'] = { get: { operationId: 'describeTask', tags: ['tasks'], summary: 'one task\'s description', parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' } }], responses: { 200: json('the task', componentRef('TaskDescription')), 404: error(404, used) } } }
  paths['/api/openapi.json'] = { get: { operationId: 'openApi', tags: ['service'], summary: 'this document', responses: { 200: json('OpenAPI 3.1') } } }
  paths['/api/queue-stats'] = { get: { operationId: 'queueStats', tags: ['service'], summary: 'a snapshot of the pool, the queue and the workers', responses: { 200: json('the snapshot', componentRef('QueueStats')) } } }
  paths['/health'] = { get: { operationId: 'health', tags: ['service'], summary: 'liveness: 503 while the event loop, heap or RSS is past its limit', responses: { 200: json('live', componentRef('Health')), 503: { description: 'under pressure: `FST_UNDER_PRESSURE`, with Retry-After', headers: { 'x-request-id': { $ref: '#/components/headers/RequestId' }, 'retry-after': { description: 'seconds to wait before trying again', schema: { type: 'integer' } } }, content: ERROR_CONTENT } } } }
  paths['/ready'] = { get: { operationId: 'ready', tags: ['service'], summary: 'readiness: 503 while no worker can serve or the server drains', responses: { 200: json('ready', componentRef('Ready')), 503: json('not ready', componentRef('Ready')) } } }
  paths['/metrics'] = { get: { operationId: 'metrics', tags: ['service'], summary: 'Prometheus text exposition', responses: { 200: { description: 'the metrics', headers: { 'x-request-id': { $ref: '#/components/headers/RequestId' } }, content: { 'text/plain': { schema: { type: 'string' } } } } } } }
  if (facts.adminRoutes) {
    paths['/admin/reload'] = { post: { operationId: 'reload', tags: ['admin'], summary: 'replaces every worker with new task code, one replacement starting at a time; no call fails', security: [{ adminToken: [] }], responses: { 200: json('the workers replaced: old and new pids, the time it took, the tasks now served', componentRef('ReloadResult')), 401: error(401, used), 403: error(403, used), 503: error(503, used) } } }
  }
  // Any route may answer what its operation does not list: a request pipelined behind an
  // answer that closes the connection gets a 400, a task a reload removed since this
  // document was read a 404.
  for (const path of Object.values(paths) as Json[]) {
    for (const operation of Object.values(path) as Array<{ responses: Json }>) operation.responses.default = { $ref: '#/components/responses/Other' }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'pyfleet',
      version: facts.version,
      license: { name: 'MIT', identifier: 'MIT' },
      description: 'Python tasks on a pool of warm workers. Each task is one operation: POST its input as JSON, msgpack or, where it declares one, a raw body whose options come from the query string.'
    },
    servers: [{ url: '/' }],
    // The task routes need no credentials; /admin/reload says what it needs.
    security: [],
    tags: [
      { name: 'tasks', description: 'the tasks the workers serve, and how to call them' },
      { name: 'service', description: 'the server\'s own state: health, readiness, metrics' },
      ...(facts.adminRoutes ? [{ name: 'admin', description: 'operations that need ADMIN_TOKEN' }] : [])
    ],
    paths,
    components: {
      schemas: {
        ...taskSchemas,
        Error: ERROR_SCHEMA,
        TaskDescription: TASK_DESCRIPTION_SCHEMA,
        TaskList: TASK_LIST_SCHEMA,
        Health: HEALTH_SCHEMA,
        Ready: READY_SCHEMA,
        QueueStats: QUEUE_STATS_SCHEMA,
        // Only with the route that answers it: linters flag a component nothing uses.
        ...(facts.adminRoutes ? { ReloadResult: RELOAD_RESULT_SCHEMA } : {})
      },
      responses: {
        ...Object.fromEntries(ERROR_STATUSES.filter((status) => used.has(status)).map((status) => [`Status${status}`, errorResponse(status)])),
        Other: { description: 'another error, in the same shape: a request pipelined behind an answer that closes the connection (400), a task a reload has removed since this document was read (404)... A method a path does not have, which no operation here describes, is a 405 METHOD_NOT_ALLOWED whose Allow header lists the methods it has.', headers: { 'x-request-id': { $ref: '#/components/headers/RequestId' } }, content: ERROR_CONTENT }
      },
      parameters: {
        RequestId: { name: 'x-request-id', in: 'header', required: false, description: 'your id for the request (at most 128 of A-Z a-z 0-9 . _ -), echoed back and logged by the worker; one that does not match is not refused but replaced by one made for the request, which the answer carries', schema: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' } },
        RequestTimeout: { name: 'x-request-timeout-ms', in: 'header', required: false, description: 'one budget for queue wait and run, capped at the task\'s timeout: 503 QUEUE_TIMEOUT if it runs out queued, 504 TASK_TIMEOUT if running', schema: { type: 'integer', minimum: 1 } },
        TraceParent: { name: 'traceparent', in: 'header', required: false, description: 'W3C Trace Context (as OpenTelemetry sends it): its trace id and span id are logged with every line about the request (traceId, spanId), and the task can send it on (pyfleet.trace_headers()); an invalid one (all-zero ids too) is ignored', schema: { type: 'string', pattern: '^(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}|(0[1-9a-f]|[1-9a-e][0-9a-f]|f[0-9a-e])-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?)$' } },
        TraceState: { name: 'tracestate', in: 'header', required: false, description: 'W3C Trace Context, with a valid traceparent only: sent on by the task with it (pyfleet.trace_headers()), at most 512 characters (entries left out past that); not logged', schema: { type: 'string' } },
        Baggage: { name: 'baggage', in: 'header', required: false, description: 'W3C Baggage: sent on by the task (pyfleet.trace_headers()), up to 8,192 bytes; not logged', schema: { type: 'string', maxLength: 8192 } }
      },
      headers: {
        RequestId: { description: 'the request\'s id: yours, or one made for it; on every answer', required: true, schema: { type: 'string', minLength: 1 } },
        ServerTiming: { description: 'queue;dur=<ms>, run;dur=<ms>: on answers to calls that reached the queue (queue alone for one refused before it ran)', schema: { type: 'string', pattern: '^queue;dur=[0-9.]+(, run;dur=[0-9.]+)?$' } }
      },
      ...(facts.adminRoutes ? { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' } } } : {})
    }
  }
}

export default async function openApiRoutes (fastify: FastifyInstance, { version, adminRoutes }: ApiFacts): Promise<void> {
  const document = keptPerTable(fastify, (tasks) => openApiDocument(tasks, { version, adminRoutes }))
  fastify.get('/api/openapi.json', async (request, reply) => await reply.type('application/json; charset=utf-8').send(document()))
}
