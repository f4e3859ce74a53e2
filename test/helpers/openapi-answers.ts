// Checks a real answer against what GET /api/openapi.json says its operation answers:
// the status is one the operation lists, the content type one that status lists, the
// body valid against that content's schema (with JSON Schema 2020-12, OpenAPI 3.1's
// dialect, so the document's own rewriting of task schemas is checked too), and the
// declared headers present where required and valid where present.

import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import { Unpackr } from 'msgpackr'

type Json = Record<string, any>

export interface Answer { status: number, headers: Headers, body: Buffer }

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' })

/** `~` and `/` escaped for a JSON pointer. */
function escaped (key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1')
}

/**
 * In pyfleet's own components (not a task's schemas, which belong to the task), an object
 * with listed properties may have no others: a field an answer gains without the
 * document saying so is a finding.
 */
function closed (schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed)
  if (schema === null || typeof schema !== 'object') return schema
  const out: Json = Object.fromEntries(Object.entries(schema).map(([key, inner]) => [key, closed(inner)]))
  if ('properties' in out && !('additionalProperties' in out)) out.additionalProperties = false
  return out
}

/** An Ajv for 2020-12 holding the document, whose schemas it compiles by pointer. */
function validatorOf (document: Json): Ajv2020 {
  // strict: false for OpenAPI's own keywords around the schemas, and extensions in them.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false, formats: { 'date-time': DATE_TIME } })
  ajv.addSchema(document, 'openapi')
  return ajv
}

const DATE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/

export class DocumentedAnswers {
  readonly #document: Json
  /** A generic validator, as a generated client would have, for JSON; one that knows pyfleet's x-pyfleet-bytes, for msgpack. */
  readonly #ajv: { json: Ajv2020, msgpack: Ajv2020 }
  readonly #validators = new Map<string, ValidateFunction>()

  constructor (document: Json) {
    const schemas = Object.fromEntries(Object.entries(document.components.schemas as Json).map(([name, schema]) => [name, name.startsWith('task_') ? schema : closed(schema)]))
    this.#document = { ...document, components: { ...document.components, schemas } }
    this.#ajv = { json: validatorOf(this.#document), msgpack: validatorOf(this.#document) }
    // In msgpack, a bin (a Uint8Array once decoded) is what {"x-pyfleet-bytes": true} means, and only that.
    this.#ajv.msgpack.addKeyword({ keyword: 'x-pyfleet-bytes', schemaType: 'boolean', validate: (bytes: boolean, value: unknown) => bytes === value instanceof Uint8Array })
  }

  /** The operation serving `method path`: under the path as written, else under a template (`/api/tasks/{name}`) that matches it. */
  #operation (method: string, path: string): { key: string, operation: Json } | undefined {
    const paths = this.#document.paths as Json
    const templates = Object.keys(paths).filter((template) => template.includes('{') && new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path))
    const key = [path, ...templates].find((candidate) => paths[candidate]?.[method.toLowerCase()] !== undefined)
    return key === undefined ? undefined : { key, operation: paths[key][method.toLowerCase()] }
  }

  /** `{ $ref: '#/...' }` followed inside the document; the pointer of what it names. */
  #resolved (node: Json, pointer: string): { node: Json, pointer: string } {
    if (typeof node.$ref !== 'string') return { node, pointer }
    const target = node.$ref.slice(1)
    const found = target.split('/').slice(1).reduce((at: Json, key: string) => at[key.replace(/~1/g, '/').replace(/~0/g, '~')], this.#document)
    return { node: found, pointer: target }
  }

  #validator (pointer: string, kind: 'json' | 'msgpack'): ValidateFunction {
    let validate = this.#validators.get(`${kind} ${pointer}`)
    if (validate === undefined) {
      validate = this.#ajv[kind].compile({ $ref: `openapi#${pointer}` })
      this.#validators.set(`${kind} ${pointer}`, validate)
    }
    return validate
  }

  #problemsOfValue (pointer: string, value: unknown, what: string, kind: 'json' | 'msgpack' = 'json'): string[] {
    const validate = this.#validator(pointer, kind)
    if (validate(value)) return []
    return (validate.errors ?? []).map((error) => `${what}${error.instancePath} ${error.message ?? ''} (${error.schemaPath})`)
  }

  /** Where a request body (a JSON value, or msgpack's decoded) fails the schema the document gives it; empty when it passes. */
  requestProblems (method: string, path: string, type: string, value: unknown): string[] {
    const found = this.#operation(method, path)
    if (found === undefined) return [`no operation for ${method} ${path}`]
    const content = found.operation.requestBody?.content?.[type]
    if (content === undefined) return [`${method} ${found.key} takes no ${type} body`]
    const pointer = `/paths/${escaped(found.key)}/${method.toLowerCase()}/requestBody/content/${escaped(type)}/schema`
    return this.#problemsOfValue(pointer, value, 'request body', type.includes('msgpack') ? 'msgpack' : 'json')
  }

  /** What the answer to `method path` does that the document does not say; empty when it conforms. */
  problems (method: string, path: string, answer: Answer): string[] {
    const found = this.#operation(method, path)
    if (found === undefined) return [`no operation for ${method} ${path}`]
    const responses = found.operation.responses as Json
    const base = `/paths/${escaped(found.key)}/${method.toLowerCase()}/responses`
    const status = String(answer.status) in responses ? String(answer.status) : 'default' in responses ? 'default' : undefined
    if (status === undefined) return [`status ${answer.status} is not among ${method} ${found.key}'s (${Object.keys(responses).join(', ')})`]
    const response = this.#resolved(responses[status], `${base}/${status}`)
    const problems: string[] = []
    for (const [name, declared] of Object.entries((response.node.headers ?? {}) as Json)) {
      const header = this.#resolved(declared as Json, `${response.pointer}/headers/${escaped(name)}`)
      const value = answer.headers.get(name)
      if (value === null) {
        if (header.node.required === true) problems.push(`header ${name} is required and missing`)
        continue
      }
      if (header.node.schema === undefined) continue
      const typed = header.node.schema.type === 'integer' ? Number(value) : value
      problems.push(...this.#problemsOfValue(`${header.pointer}/schema`, typed, `header ${name}`))
    }
    const content = response.node.content as Json | undefined
    if (content === undefined) {
      if (answer.body.length > 0) problems.push(`a ${answer.body.length}-byte body where none is documented`)
      return problems
    }
    const type = (answer.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase()
    if (!(type in content)) return [...problems, `content type ${type} is not among ${Object.keys(content).join(', ')}`]
    const text = answer.body.toString('utf8')
    const msgpack = type.includes('msgpack')
    const value = type === 'application/json' ? JSON.parse(text) : msgpack ? unpackr.unpack(answer.body) : text
    problems.push(...this.#problemsOfValue(`${response.pointer}/content/${escaped(type)}/schema`, value, 'body', msgpack ? 'msgpack' : 'json'))
    return problems
  }
}

/** fetch, kept as an Answer (the body read whole). */
export async function answerOf (url: string, init?: RequestInit): Promise<Answer> {
  const response = await fetch(url, init)
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) }
}

/** A raw HTTP/1.1 answer (rawExchange's text, one answer with a content-length body) as an Answer. */
export function parsedAnswer (raw: string): Answer {
  const end = raw.indexOf('\r\n\r\n')
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n')
  const headers = new Headers()
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
  }
  const length = Number(headers.get('content-length') ?? 0)
  return { status: Number(statusLine.split(' ')[1]), headers, body: Buffer.from(raw.slice(end + 4)).subarray(0, length) }
}
