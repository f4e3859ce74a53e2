// The shapes of the answers pyfleet itself makes (errors, the task list, /ready,
// /health, /api/queue-stats, a reload's result), as JSON Schemas for the OpenAPI
// document's components, so a generated client types them. Plain keywords only, read
// alike by JSON Schema 2020-12 (OpenAPI 3.1) and draft-07. The suite checks real answers
// against them (test/e2e/openapi-answers.test.ts): a field added to an answer and not
// here fails it.

type Schema = Record<string, unknown>

const integer = { type: 'integer', minimum: 0 }

/** An object whose every listed property is required. */
function record (properties: Record<string, Schema>, description?: string): Schema {
  return { type: 'object', ...(description === undefined ? {} : { description }), required: Object.keys(properties), properties }
}

/** An object of counts, every one required. */
function counts (names: string[], description?: string): Schema {
  return record(Object.fromEntries(names.map((name) => [name, integer])), description)
}

export const ERROR_SCHEMA: Schema = {
  type: 'object',
  required: ['statusCode', 'code', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string', description: 'what happened, for programs: INVALID_INPUT, QUEUE_FULL, ... (README, "HTTP API")' },
    error: { type: 'string', description: 'the status\'s reason phrase' },
    message: { type: 'string', description: 'what went wrong and what to change, for people' },
    details: { description: 'validation errors, a parse error\'s place, or a task\'s own details (422)' }
  }
}

export const TASK_DESCRIPTION_SCHEMA: Schema = record({
  name: { type: 'string' },
  description: { type: 'string', description: 'the docstring\'s first paragraph' },
  schema: { type: ['object', 'boolean'], description: 'the input\'s JSON schema (draft-07)' },
  outputSchema: { type: ['object', 'boolean', 'null'], description: 'the return value\'s JSON schema (draft-07), null when the task declares none' },
  timeoutMs: { type: 'integer', minimum: 1, description: 'the timeout in force (TASK_TIMEOUTS, or the task\'s own)' },
  raw: { type: 'array', items: { type: 'string' }, description: 'content types taken as a raw body' },
  rawField: { type: ['string', 'null'], description: 'the input field a raw body fills (the query string gives the others); null without raw types' },
  maxConcurrency: { type: 'integer', minimum: 1, description: 'calls of this task running at once, at most' }
})

export const TASK_LIST_SCHEMA: Schema = record({ tasks: { type: 'array', items: { $ref: '#/components/schemas/TaskDescription' } } })

export const HEALTH_SCHEMA: Schema = record({ status: { const: 'ok' } })

export const READY_SCHEMA: Schema = record({
  status: { enum: ['ready', 'stopping', 'draining', 'no workers'], description: 'stopping: SHUTDOWN_DELAY_MS runs after SIGTERM, calls are still served; draining: new calls are refused' },
  workers: { ...integer, description: 'workers running (idle or busy)' },
  waiting: { ...integer, description: 'calls waiting for a worker' }
})

const WORKER_SCHEMA = record({
  id: { type: 'integer', minimum: 1, description: 'the worker\'s slot, 1 to POOL_SIZE' },
  pid: { type: ['integer', 'null'], description: 'null while its slot starts a worker' },
  state: { enum: ['starting', 'idle', 'busy', 'stopping', 'dead'] },
  calls: { ...integer, description: 'calls this worker has answered' },
  rssBytes: integer,
  startedAt: { type: ['string', 'null'], format: 'date-time' },
  task: { type: ['string', 'null'], description: 'the task it runs now' }
})

export const QUEUE_STATS_SCHEMA: Schema = record({
  pool: counts(['size', 'min', 'max', 'available', 'borrowed', 'pending'], 'the pool\'s workers: available (idle) and borrowed (busy)'),
  queue: counts(['waiting', 'limit', 'bytes', 'limitBytes', 'rejected'], 'calls waiting for a worker, their bodies\' bytes, and those refused (QUEUE_FULL, QUEUE_TIMEOUT)'),
  receiving: counts(['bytes', 'limitBytes', 'refused'], 'request bodies being received, against RECEIVE_LIMIT_BYTES'),
  offload: counts(['minBytes', 'pendingJobs', 'pendingBodyBytes'], 'the offload thread: OFFLOAD_MIN_BYTES, and what waits for it'),
  tasks: counts(['completed', 'failed', 'timedOut', 'workerDied'], 'calls by outcome since start (failed counts 422 and 500 answers)'),
  workers: { type: 'array', items: WORKER_SCHEMA },
  restarts: counts(['crash', 'timeout', 'maxCalls', 'maxRss', 'protocol', 'reload'], 'workers replaced since start, by reason'),
  reloads: record({
    ok: integer,
    failed: integer,
    lastError: { type: ['string', 'null'], description: 'that the last reload failed, while it is the last, and what serves now (some or all workers on the previous code), without the cause, which the server log has; null once one succeeds' }
  }, 'reloads of the task code since start (SIGHUP, POST /admin/reload, RELOAD_ON_CHANGE)'),
  uptimeSeconds: { ...integer, description: 'seconds since the server process started (as process_start_time_seconds), the workers\' start included' }
})

export const RELOAD_RESULT_SCHEMA: Schema = record({
  oldPids: { type: 'array', items: { type: 'integer' } },
  newPids: { type: 'array', items: { type: 'integer' } },
  durationMs: { type: 'number', minimum: 0 },
  tasks: { type: 'array', items: { type: 'string' }, description: 'the tasks served now' }
})
