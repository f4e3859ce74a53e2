// The tasks the workers declared, with what Node adds to them: compiled input
// validators, the effective timeout and concurrency limit. Routes look tasks up
// here; the pool only sees the PoolTask part.

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import type { FastifyBaseLogger } from 'fastify'
import { MAX_TIMER_MS, type Config } from './config.js'
import type { TaskInfo } from './pool/ready-message.js'
import type { PoolTask } from './pool/worker-pool.js'
import { ValidationError, withExtras } from './errors.js'
import { DefaultsChecker } from './schema-defaults.js'
import { distance } from './edit-distance.js'
import { isSchemaObject, mapSubschemas } from './schema-walk.js'

/** A task ready to be called from HTTP. */
export interface Task extends PoolTask {
  /** The docstring's first paragraph: the description GET /api/tasks lists. */
  readonly doc: string
  /** The whole docstring: the OpenAPI operation's description. */
  readonly docstring: string
  readonly schema: TaskInfo['schema']
  /** The return value's schema, null if the task declares none. */
  readonly outputSchema: TaskInfo['outputSchema']
  /** Checks a result against outputSchema; only with VALIDATE_RESULTS (and an outputSchema). */
  readonly validateResult: ValidateFunction | undefined
  readonly raw: readonly string[]
  readonly rawField: string | null
  /** The input's top-level field names, wherever the schema declares them (allOf, anyOf, $ref...). */
  readonly inputFields: ReadonlySet<string>
  /** Checks a JSON or msgpack body: no type coercion. */
  readonly validateBody: ValidateFunction
  /** Checks a raw body merged with query-string options, which are coerced to the schema's types. */
  readonly validateRaw: ValidateFunction
}

/** The shape GET /api/tasks lists. */
export interface TaskDescription {
  name: string
  description: string
  schema: TaskInfo['schema']
  /** null when the task declares none. */
  outputSchema: TaskInfo['outputSchema']
  timeoutMs: number
  raw: readonly string[]
  maxConcurrency: number
}

function makeAjv (coerceTypes: boolean, allErrors = false): Ajv {
  // strict: a typo in a task's schema fails at start instead of silently accepting anything.
  // validateFormats off: no format plugin is bundled, so "format" is an annotation only.
  const ajv = new Ajv({ strict: true, coerceTypes, allErrors, validateFormats: false, useDefaults: false })
  addKeywords(ajv)
  return ajv
}

/** The `bytes` keyword's check, with words of its own for the error (Ajv's would be "must pass "bytes" keyword validation"). */
function isBytes (expected: boolean, data: unknown): boolean {
  const matches = (data instanceof Uint8Array) === expected
  if (!matches) isBytes.errors = [{ keyword: 'bytes', message: expected ? 'must be binary (msgpack bin)' : 'must not be binary (msgpack bin)', params: { bytes: expected } }]
  return matches
}
isBytes.errors = [] as Array<Partial<ErrorObject>>

function addKeywords (ajv: Ajv): void {
  // {"bytes": true} matches binary values (msgpack bin, raw octet-stream bodies).
  ajv.addKeyword({ keyword: 'bytes', schemaType: 'boolean', errors: true, validate: isBytes })
}

/**
 * `schema` as compiled for checking values: `"bytes": false` beside every `type` that allows
 * "object" and says nothing of bytes, because Ajv takes a binary value (a Buffer) for an
 * object: a msgpack bin where a task expects a map would pass an open object schema and
 * reach the task as bytes, and a result's bytes would pass an output schema's object. The
 * schema served (GET /api/tasks, OpenAPI) stays the task's own. Left as they are: `not` and
 * `if`, whose schemas are tests, where "no object" would turn into its opposite
 * (`not: {"type": "object"}` would let a bin through, which Ajv alone refuses, and `if`
 * would send one to `else`).
 */
export function binaryIsNoObject (schema: unknown): unknown {
  if (!isSchemaObject(schema)) return schema
  const out = mapSubschemas(schema, (inner, keyword) => keyword === 'not' || keyword === 'if' ? inner : binaryIsNoObject(inner))
  const { type } = out
  if ((type === 'object' || (Array.isArray(type) && type.includes('object'))) && !('bytes' in out)) out.bytes = false
  return out
}

function compileChecking (ajv: Ajv, schema: TaskInfo['schema']): ValidateFunction {
  return ajv.compile(binaryIsNoObject(schema) as TaskInfo['schema'])
}

/**
 * A validator for JSON and msgpack bodies of `schema`, as the table's validateBody, on
 * an Ajv of its own: the offload thread compiles the schemas it meets with it.
 */
export function compileBodyValidator (schema: TaskInfo['schema']): ValidateFunction {
  return compileChecking(makeAjv(false), schema)
}

/**
 * A validator of results for `schema` (a task's output schema), as the table's validateResult:
 * the offload thread's. All errors, not the first: VALIDATE_RESULTS is for a task's author,
 * who would otherwise mend one field per call.
 */
export function compileResultValidator (schema: NonNullable<TaskInfo['outputSchema']>): ValidateFunction {
  return compileChecking(makeAjv(false, true), schema)
}

/** A validator for a raw body merged with its query-string options, as the table's validateRaw (coercing). */
export function compileRawValidator (schema: TaskInfo['schema']): ValidateFunction {
  return compileChecking(makeAjv(true), schema)
}

/** Formats Ajv errors as Fastify does: "body/values/0 must be number". */
export function validationError (errors: ErrorObject[] | null | undefined, dataVar: string | ((instancePath: string) => string), schema?: unknown): Error {
  const list = errors ?? []
  const first = mostSpecific(list)
  const place = typeof dataVar === 'string' ? (path: string) => `${dataVar}${path}` : dataVar
  const message = first === undefined ? `${place('')} is invalid` : `${place(first.instancePath)} ${explain(first, schema)}`
  return withExtras(new ValidationError(message), {
    details: list.map((e) => ({ instancePath: e.instancePath, keyword: e.keyword, params: e.params, message: e.message }))
  })
}

/** How a worker's declared tasks differ from the table the server serves. */
export interface TaskDrift { added: string[], removed: string[], changed: string[] }

/**
 * The error to name in the message: the one deepest in the value. Under anyOf/oneOf
 * Ajv reports every branch's first failure, then the summary; for ["sha512"] against
 * "a string, or an array of known names" the array branch's "/0 must be equal to one
 * of the allowed values" says what is wrong, the string branch's "must be string" does not.
 */
export function mostSpecific (errors: ErrorObject[]): ErrorObject | undefined {
  let best: ErrorObject | undefined
  for (const error of errors) {
    if (error.keyword === 'anyOf' || error.keyword === 'oneOf') continue
    if (best === undefined || error.instancePath.split('/').length > best.instancePath.split('/').length) best = error
  }
  return best ?? errors[0]
}

/** Patterns up to this long are shown beside the description that explains them. */
const SHORT_PATTERN_CHARS = 40

/**
 * Ajv's words for one error, and what they alone would leave out. A pattern is a regular
 * expression a client should not have to read: when the property has a description (the
 * task author's words, as GET /api/tasks/<name> shows them), that is said instead, with
 * the pattern beside it only when it is short.
 */
function explain (error: ErrorObject, schema: unknown): string {
  const description = error.keyword === 'pattern' ? describedAt(schema, error.instancePath) : undefined
  if (description !== undefined) {
    // A short pattern says what a description may not ("the user's name"); a long one is noise.
    const { pattern } = error.params as { pattern?: unknown }
    return `is not valid: ${description}${typeof pattern === 'string' && pattern.length <= SHORT_PATTERN_CHARS ? ` (must match pattern ${JSON.stringify(pattern)})` : ''}`
  }
  return `${error.message ?? 'is invalid'}${allowed(error)}`
}

/** The description the schema gives the value at instancePath (properties and items followed), if any. */
function describedAt (schema: unknown, instancePath: string): string | undefined {
  let node = schema
  for (const segment of instancePath.split('/').slice(1)) {
    if (typeof node !== 'object' || node === null) return undefined
    const key = segment.replace(/~1/g, '/').replace(/~0/g, '~')
    const { properties, items } = node as { properties?: Record<string, unknown>, items?: unknown }
    if (typeof properties === 'object' && properties !== null && Object.hasOwn(properties, key)) node = properties[key]
    else if (/^\d+$/.test(key) && typeof items === 'object' && items !== null && !Array.isArray(items)) node = items
    else return undefined
  }
  const description = (node as { description?: unknown } | null)?.description
  return typeof description === 'string' && description !== '' ? description : undefined
}

/** What the message alone would leave out: an enum's values, the name of a property no schema allows, what a boolean is written as. */
function allowed (error: ErrorObject): string {
  const params = error.params as { allowedValues?: unknown[], additionalProperty?: unknown, type?: unknown }
  // A query string's booleans especially: 1, yes and on are not among them.
  if (error.keyword === 'type' && params.type === 'boolean') return ' (true or false)'
  if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) return `: ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`
  if (error.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') return ` (${JSON.stringify(params.additionalProperty.slice(0, 100))})`
  return ''
}

/**
 * The property names a schema declares for its top-level object: its own `properties`,
 * and those of every subschema that applies to the same object (allOf, anyOf, oneOf,
 * if/then/else, and a local $ref such as "#/definitions/In"). Cycles are followed once.
 */
export function inputFields (schema: unknown): ReadonlySet<string> {
  const fields = new Set<string>()
  const seen = new Set<unknown>()
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node)) return
    seen.add(node)
    const s = node as Record<string, unknown>
    if (typeof s.properties === 'object' && s.properties !== null) for (const name of Object.keys(s.properties)) fields.add(name)
    for (const key of ['allOf', 'anyOf', 'oneOf']) if (Array.isArray(s[key])) for (const sub of s[key] as unknown[]) visit(sub)
    for (const key of ['if', 'then', 'else']) visit(s[key])
    if (typeof s.$ref === 'string' && s.$ref.startsWith('#/')) {
      let target: unknown = schema
      for (const part of s.$ref.slice(2).split('/')) target = (target as Record<string, unknown> | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')]
      visit(target)
    }
  }
  visit(schema)
  return fields
}

export class TaskRegistry {
  readonly #config: Config
  #tasks = new Map<string, Task>()
  /** Each task as the workers declared it (JSON), to tell a later worker's declaration apart. */
  #declared = new Map<string, string>()

  constructor (config: Config) {
    this.#config = config
  }

  /**
   * Replaces the table with what workers declared. Throws if a schema does not
   * compile, naming the task, so start-up fails with a clear line.
   */
  update (infos: readonly TaskInfo[]): void {
    this.#tasks = this.#compile(infos)
    this.#declared = new Map(infos.map((info) => [info.name, JSON.stringify(info)]))
  }

  /**
   * How `infos` (a worker's declaration) differ from the table served, or undefined if
   * they do not. A worker started outside a reload (crash replacement, recycling) loads
   * the code on disk as it is now, which someone may have edited since the table was read.
   */
  drift (infos: readonly TaskInfo[]): TaskDrift | undefined {
    const drift: TaskDrift = { added: [], removed: [], changed: [] }
    const seen = new Set<string>()
    for (const info of infos) {
      seen.add(info.name)
      const before = this.#declared.get(info.name)
      if (before === undefined) drift.added.push(info.name)
      else if (before !== JSON.stringify(info)) drift.changed.push(info.name)
    }
    for (const name of this.#declared.keys()) if (!seen.has(name)) drift.removed.push(name)
    return drift.added.length + drift.removed.length + drift.changed.length === 0 ? undefined : drift
  }

  /** Throws as update() would, and changes nothing: a reload checks new workers' tasks with it. */
  check (infos: readonly TaskInfo[]): void {
    this.#compile(infos)
  }

  #compile (infos: readonly TaskInfo[]): Map<string, Task> {
    // Fresh Ajv instances for each table: Ajv caches every schema it compiles, for
    // good, and refuses a second schema with the same $id, so shared instances
    // would grow with every reload and break on a task schema that has an $id.
    const strict = makeAjv(false)
    const coercing = makeAjv(true)
    const defaults = new DefaultsChecker(addKeywords)
    const tasks = new Map<string, Task>()
    for (const info of infos) {
      let validateBody: ValidateFunction
      let validateRaw: ValidateFunction
      try {
        validateBody = compileChecking(strict, info.schema)
        validateRaw = compileChecking(coercing, info.schema)
        defaults.check(info.schema)
      } catch (error) {
        const where = typeof info.module === 'string' ? ` (in module ${info.module})` : ''
        throw new Error(`task ${info.name}${where} declares an invalid input schema: ${(error as Error).message}`)
      }
      // Compiled whether or not results are checked: a schema Ajv refuses stops the start either way.
      let validateResult: ValidateFunction | undefined
      // Tolerant of a table made without the field (tests, embedders), as of null.
      const outputSchema = info.outputSchema ?? null
      if (outputSchema !== null) {
        try {
          // An Ajv of its own, as the offload thread compiles it: a $ref to another task's $id
          // would resolve here and not there, and tasks sharing an $id'd schema would clash.
          validateResult = compileResultValidator(outputSchema)
        } catch (error) {
          const where = typeof info.module === 'string' ? ` (in module ${info.module})` : ''
          throw new Error(`task ${info.name}${where} declares an invalid output schema: ${(error as Error).message}`)
        }
      }
      const limit = this.#config.taskConcurrency[info.name] ?? info.maxConcurrency ?? this.#config.poolSize
      tasks.set(info.name, Object.freeze({
        name: info.name,
        doc: info.doc,
        docstring: info.docstring ?? info.doc,
        schema: info.schema,
        outputSchema,
        validateResult: this.#config.validateResults ? validateResult : undefined,
        timeoutMs: Math.min(this.#config.taskTimeouts[info.name] ?? info.timeoutMs ?? this.#config.taskTimeoutMs, MAX_TIMER_MS),
        maxConcurrency: Math.max(1, Math.min(limit, this.#config.poolSize)),
        raw: Object.freeze([...info.raw]),
        rawField: info.rawField,
        inputFields: inputFields(info.schema),
        validateBody,
        validateRaw
      }))
    }
    return tasks
  }

  get (name: string): Task | undefined {
    return this.#tasks.get(name)
  }

  names (): string[] {
    return [...this.#tasks.keys()]
  }

  all (): Task[] {
    return [...this.#tasks.values()]
  }

  /**
   * Warns about TASK_CONCURRENCY and TASK_TIMEOUTS entries that name no registered task
   * (a typo, or a task not loaded): they are ignored, which an operator would otherwise not notice.
   */
  warnAboutUnusedLimits (log: FastifyBaseLogger): void {
    for (const { setting, unused } of this.#unusedLimits()) log.warn({ unused, tasks: this.names() }, `${setting} names tasks no worker declares, ignored: ${unused.join(', ')}`)
  }

  /** What warnAboutUnusedLimits would log, as one line, or undefined: `--check` stops on it. */
  unusedLimitsProblem (): string | undefined {
    // Not "ignored", as the warning says: here they stop the check.
    const found = this.#unusedLimits()
    return found.length === 0 ? undefined : `${found.map(({ setting, unused }) => `${setting} names tasks no worker declares: ${unused.join(', ')}`).join('; ')} (the tasks are ${this.names().join(', ')})`
  }

  #unusedLimits (): Array<{ setting: string, unused: string[] }> {
    const found = []
    for (const [setting, values] of [['TASK_CONCURRENCY', this.#config.taskConcurrency], ['TASK_TIMEOUTS', this.#config.taskTimeouts]] as const) {
      const unused = Object.keys(values).filter((name) => !this.#tasks.has(name))
      if (unused.length > 0) found.push({ setting, unused })
    }
    return found
  }

  /** Why a name that is not served may be missing, when pyfleet can tell: the diag tasks are off. */
  /** Why a task name may be unknown: a diag task without DIAG_TASKS, a typo of a served name, or no TASK_MODULES. */
  missingTaskHint (name: string): string {
    if (name.startsWith('diag.') && !this.#config.diagTasks) return ' (the diag.* tasks are registered only with DIAG_TASKS=1)'
    const near = [...this.#tasks.keys()].filter((known) => known.toLowerCase() === name.toLowerCase() || distance(name, known, 2) <= 2)
    if (near.length > 0) return ` (did you mean ${near.slice(0, 3).map((known) => JSON.stringify(known)).join(' or ')}?)`
    return this.#config.taskModules.length === 0 ? ' (only the built-in tasks are served: name the modules of your own in TASK_MODULES)' : ''
  }

  describe (task: Task): TaskDescription {
    return { name: task.name, description: task.doc, schema: task.schema, outputSchema: task.outputSchema, timeoutMs: task.timeoutMs, raw: task.raw, maxConcurrency: task.maxConcurrency }
  }

  list (): TaskDescription[] {
    return [...this.#tasks.values()].map((t) => this.describe(t))
  }
}
