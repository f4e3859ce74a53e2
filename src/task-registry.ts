// The tasks the workers declared, with what Node adds to them: compiled input
// validators, the effective timeout and concurrency limit. Routes look tasks up
// here; the pool only sees the PoolTask part.

import { declarationKey } from './declaration-key.js'
import type { Ajv, ValidateFunction } from 'ajv'
import type { FastifyBaseLogger } from 'fastify'
import { MAX_TIMER_MS, type Config } from './config.js'
import type { TaskInfo } from './pool/ready-message.js'
import type { PoolTask } from './pool/worker-pool.js'
import { AnnotationChecker } from './schema-annotations.js'
import { didYouMean } from './edit-distance.js'
import { walkSchemas } from './schema-walk.js'
import { addKeywords, compileChecking, inputFields, makeAjv, ResultValidators, selfContained } from './schema-compile.js'

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
  /**
   * Checks a raw body merged with query-string options, which are coerced to the schema's
   * types; undefined for a task without raw types, which never needs it.
   */
  readonly validateRaw: ValidateFunction | undefined
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
  /** The input field a raw body fills; null for a task without raw types. */
  rawField: string | null
  maxConcurrency: number
}

/** How a worker's declared tasks differ from the table the server serves. */
export interface TaskDrift { added: string[], removed: string[], changed: string[] }


/**
 * Ajv's words for a schema that is not one, with the schema called what it is: Ajv checks it
 * as the data of its meta-schema, and says "schema is invalid: data/additionalProperties must
 * be object,boolean".
 */
function schemaProblem (error: Error, schema: unknown, ajv: Ajv): string {
  const unknown = /^strict mode: unknown keyword: "(.*)"$/.exec(error.message)
  if (unknown !== null) return `${error.message}${unknownKeywordHint(unknown[1], schema, ajv)}`
  const invalid = /^schema is invalid: /.exec(error.message)
  if (invalid === null) return error.message
  // Each of its errors starts with "data" (Ajv's name for what it checks), then the place: a property named data stays.
  return invalid[0] + error.message.slice(invalid[0].length).replace(/(^|, )data(?=[/ ])/g, '$1schema')
}

/**
 * Where an unknown keyword is (Ajv says only its name) and the keyword it may be a misspelling
 * of: in a table of hundreds of tasks, "minLenght" deep in one schema is otherwise a search.
 */
function unknownKeywordHint (keyword: string, schema: unknown, ajv: Ajv): string {
  const places: string[] = []
  walkSchemas(schema, (sub, pointer) => { if (Object.hasOwn(sub, keyword)) places.push(pointer === '' ? 'its root' : pointer) })
  const known = Object.keys(ajv.RULES.keywords).filter((name) => !name.startsWith('$') || keyword.startsWith('$'))
  const where = places.length === 0 ? '' : ` at ${places.slice(0, 3).join(', ')}${places.length > 3 ? ` and ${places.length - 3} more` : ''}`
  return `${where}${didYouMean(keyword, known)}`
}

export class TaskRegistry {
  readonly #config: Config
  #tasks = new Map<string, Task>()
  /** Each task as the workers declared it (JSON), to tell a later worker's declaration apart. */
  #declared = new Map<string, string>()
  /**
   * The last table compiled, and the declaration (JSON) it was compiled from. A reload checks
   * each new worker's tasks, then takes them: the same declaration five times with four
   * workers, each compile holding the event loop ~5-10 ms a task (400 tasks: 16 s each).
   */
  #lastCompiled: { declaration: string, tasks: Map<string, Task> } | undefined
  /**
   * The tasks of the tables compiled so far that a later table may take as they are, by their
   * declaration (JSON): a reload after an edit to one module of many compiles that module's
   * tasks, not every task again. Only those of the last table compiled are kept.
   */
  #reusable = new Map<string, Task>()
  /** The served table's declarationKey: a worker whose tasks have the same key serves the same tasks. */
  #servedKey = ''

  constructor (config: Config) {
    this.#config = config
  }

  /**
   * Replaces the table with what workers declared. Throws if a schema does not
   * compile, naming the task, so start-up fails with a clear line.
   */
  update (infos: readonly TaskInfo[]): void {
    this.#tasks = this.#compileOnce(infos)
    this.#declared = new Map(infos.map((info) => [info.name, JSON.stringify(info)]))
    this.#servedKey = declarationKey(infos)
  }

  /** True if `key`, the declarationKey of a worker's tasks, is the table served's. */
  isServedTable (key: string): boolean {
    return key === this.#servedKey
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
      // Not for a list in another order only (an enum made from a Python set: declaration-key.ts).
      else if (before !== JSON.stringify(info) && declarationKey(JSON.parse(before)) !== declarationKey(info)) drift.changed.push(info.name)
    }
    for (const name of this.#declared.keys()) if (!seen.has(name)) drift.removed.push(name)
    return drift.added.length + drift.removed.length + drift.changed.length === 0 ? undefined : drift
  }

  /** Throws as update() would, and changes nothing: a reload checks new workers' tasks with it. */
  check (infos: readonly TaskInfo[]): void {
    this.#compileOnce(infos)
  }

  /**
   * The table for `infos`, compiled once for a declaration met again (each new worker of a
   * reload declares what the one before it did, and a reload of unchanged code what is served).
   * Settings are read once at start, so a declaration compiles to the same table every time.
   */
  #compileOnce (infos: readonly TaskInfo[]): Map<string, Task> {
    const declaration = JSON.stringify(infos)
    if (this.#lastCompiled?.declaration === declaration) return this.#lastCompiled.tasks
    const tasks = this.#compile(infos)
    this.#lastCompiled = { declaration, tasks }
    return tasks
  }

  /** The table served, as one object that changes only when the table does (a reload): what is made from it can be kept until then. */
  get table (): ReadonlyMap<string, Task> {
    return this.#tasks
  }

  #compile (infos: readonly TaskInfo[]): Map<string, Task> {
    // Fresh Ajv instances for each table: Ajv caches every schema it compiles, for
    // good, and refuses a second schema with the same $id, so shared instances
    // would grow with every reload and break on a task schema that has an $id.
    const strict = makeAjv(false)
    const coercing = makeAjv(true)
    const annotations = new AnnotationChecker(addKeywords)
    const results = new ResultValidators()
    const tasks = new Map<string, Task>()
    const reusable = new Map<string, Task>()
    for (const info of infos) {
      const declaration = JSON.stringify(info)
      const before = this.#reusable.get(declaration)
      if (before !== undefined) {
        tasks.set(info.name, before)
        reusable.set(declaration, before)
        continue
      }
      let validateBody: ValidateFunction
      let validateRaw: ValidateFunction | undefined
      // A schema with an $id, or a reference out of itself, gets an Ajv of its own, as output schemas
      // do and as the offload thread compiles every one: on the shared one, two tasks' schemas of one
      // $id stopped the start ("already exists"), and a reference into another task's schema
      // resolved on the event loop but not on the thread (a large body's 500).
      const own = !selfContained(info.schema)
      try {
        validateBody = compileChecking(own ? makeAjv(false) : strict, info.schema)
        // Only raw bodies have query-string options to coerce: a third of the start-up's compiling, spared for the others.
        validateRaw = info.raw.length > 0 ? compileChecking(own ? makeAjv(true) : coercing, info.schema) : undefined
        annotations.check(info.schema)
      } catch (error) {
        throw new Error(`task ${info.name}${whereDeclared(info)} declares an invalid input schema: ${schemaProblem(error as Error, info.schema, strict)}`)
      }
      // Compiled whether or not results are checked: a schema Ajv refuses stops the start either way.
      let validateResult: ValidateFunction | undefined
      // Tolerant of a table made without the field (tests, embedders), as of null.
      const outputSchema = info.outputSchema ?? null
      if (outputSchema !== null) {
        try {
          // On an Ajv shared with other output schemas only where that changes nothing (ResultValidators).
          validateResult = results.compile(outputSchema)
          // Its defaults and examples are published as the input's are, and checked the same way.
          annotations.check(outputSchema)
        } catch (error) {
          throw new Error(`task ${info.name}${whereDeclared(info)} declares an invalid output schema: ${schemaProblem(error as Error, outputSchema, strict)}`)
        }
      }
      const limit = this.#config.taskConcurrency[info.name] ?? info.maxConcurrency ?? this.#config.poolSize
      const task: Task = Object.freeze({
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
      })
      tasks.set(info.name, task)
      // Compiled on this table's Ajv instances, where a schema's $id, or a reference to another
      // schema's, resolves among this table's schemas: such a task is compiled again with the next.
      if (selfContained(info.schema) && (outputSchema === null || selfContained(outputSchema))) reusable.set(declaration, task)
    }
    this.#reusable = reusable
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
    for (const { setting, unused } of this.#unusedLimits()) log.warn({ unused, tasks: this.names() }, `${setting} names tasks no worker declares, ignored: ${this.#namesWithHints(unused)}`)
  }

  /** What warnAboutUnusedLimits would log, as one line, or undefined: `--check` stops on it. */
  unusedLimitsProblem (): string | undefined {
    // Not "ignored", as the warning says: here they stop the check.
    const found = this.#unusedLimits()
    return found.length === 0 ? undefined : `${found.map(({ setting, unused }) => `${setting} names tasks no worker declares: ${this.#namesWithHints(unused)}`).join('; ')} (the tasks are ${this.names().join(', ')})`
  }

  /**
   * Unknown names in a limit, each with what it may be meant as: a limit that a typo sends
   * nowhere is only a warning when serving, and the limit is then silently not applied.
   */
  #namesWithHints (names: string[]): string {
    const named = names.map((name) => name + this.#nameHint(name)).join(', ')
    return this.#config.taskModules.length === 0 && names.every((name) => this.#nameHint(name) === '') ? named + this.#modulesHint() : named
  }

  #unusedLimits (): Array<{ setting: string, unused: string[] }> {
    const found = []
    for (const [setting, values] of [['TASK_CONCURRENCY', this.#config.taskConcurrency], ['TASK_TIMEOUTS', this.#config.taskTimeouts]] as const) {
      const unused = Object.keys(values).filter((name) => !this.#tasks.has(name))
      if (unused.length > 0) found.push({ setting, unused })
    }
    return found
  }

  /** Why a task name may be unknown: a diag task without DIAG_TASKS, a typo of a served name, or no TASK_MODULES. */
  missingTaskHint (name: string): string {
    if (name === '') return ' (the path ends in a slash, with no name after /api/tasks/)'
    return this.#nameHint(name) || this.#modulesHint()
  }

  /** A diag task without DIAG_TASKS, or the served names a name may be a typo of; '' if neither. */
  #nameHint (name: string): string {
    if (name.startsWith('diag.') && !this.#config.diagTasks) return ' (the diag.* tasks are registered only with DIAG_TASKS=1)'
    return didYouMean(name, this.#tasks.keys())
  }

  #modulesHint (): string {
    return this.#config.taskModules.length === 0 ? ' (only the built-in tasks are served: name the modules of your own in TASK_MODULES)' : ''
  }

  describe (task: Task): TaskDescription {
    return { name: task.name, description: task.doc, schema: task.schema, outputSchema: task.outputSchema, timeoutMs: task.timeoutMs, raw: task.raw, rawField: task.rawField, maxConcurrency: task.maxConcurrency }
  }

  list (): TaskDescription[] {
    return [...this.#tasks.values()].map((t) => this.describe(t))
  }
}

/**
 * Where a task is declared, for the messages about it: " (at mytasks/shop.py, line 12)", as the
 * worker's own messages say it, or " (in module mytasks.shop)" where the worker cannot tell the
 * file (a callable without code); "" if neither.
 */
function whereDeclared (info: TaskInfo): string {
  if (typeof info.source === 'string') return ` (at ${info.source})`
  return typeof info.module === 'string' ? ` (in module ${info.module})` : ''
}
