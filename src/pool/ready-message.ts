// The worker's first frame (SPEC section 4): {t: "ready", v, pid, python, tasks},
// decoded and checked field by field, so a runtime from another release, or a task
// table it got wrong, is refused with a line that names the task and the field.

import { Unpackr } from 'msgpackr'
import { decodeMessage, MSG_READY, PROTOCOL_VERSION, ProtocolError } from './protocol.js'

/** A task as the worker declares it in its ready message. */
export interface TaskInfo {
  name: string
  doc: string
  /** The whole docstring, cleaned (absent from workers before it was added: doc stands in). */
  docstring?: string
  schema: Record<string, unknown> | boolean
  /** The return value's schema; null when the task declares none (and from workers before it was added). */
  outputSchema: Record<string, unknown> | boolean | null
  timeoutMs: number | null
  raw: string[]
  rawField: string | null
  maxConcurrency: number | null
  /** The Python module that defines it (absent from workers before it was added). */
  module?: string | null
  /** The file and line of its declaration, "mytasks/shop.py, line 12" (absent from workers before it was added). */
  source?: string | null
}

export interface ReadyMessage {
  t: typeof MSG_READY
  v: number
  pid: number
  python: string
  tasks: TaskInfo[]
}

// The ready message's schemas are compiled by Ajv, whose keywords (maximum: 2**64 - 1)
// need numbers, not BigInt.
const readyUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', structuredClone: false })

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)?.slice(0, 50) ?? String(value)}`
}

/** What is wrong with one entry of a ready message's task list, naming the task and the field; undefined if nothing. */
function taskInfoProblem (task: unknown, index: number): string | undefined {
  if (typeof task !== 'object' || task === null || Array.isArray(task)) return `task ${index + 1} of the list is ${describe(task)}, not a map`
  const t = task as Record<string, unknown>
  if (typeof t.name !== 'string') return `task ${index + 1} of the list has a name that is ${describe(t.name)}`
  const wrong = (field: string, wanted: string): string => `task ${JSON.stringify(t.name)}: ${field} must be ${wanted}, not ${describe(t[field])}`
  if (typeof t.doc !== 'string') return wrong('doc', 'a string')
  if (!(t.docstring === undefined || typeof t.docstring === 'string')) return wrong('docstring', 'a string')
  if (!((typeof t.schema === 'object' && t.schema !== null && !Array.isArray(t.schema)) || typeof t.schema === 'boolean')) return wrong('schema', 'a map or a boolean')
  if (!(t.outputSchema === null || t.outputSchema === undefined || (typeof t.outputSchema === 'object' && !Array.isArray(t.outputSchema)) || typeof t.outputSchema === 'boolean')) return wrong('outputSchema', 'a map, a boolean or null')
  if (!(t.timeoutMs === null || (typeof t.timeoutMs === 'number' && t.timeoutMs > 0))) return wrong('timeoutMs', 'a positive number or null')
  if (!(Array.isArray(t.raw) && t.raw.every((r) => typeof r === 'string'))) return wrong('raw', 'a list of strings')
  if (!(t.rawField === null || typeof t.rawField === 'string')) return wrong('rawField', 'a string or null')
  if (!(t.maxConcurrency === null || t.maxConcurrency === undefined || (typeof t.maxConcurrency === 'number' && t.maxConcurrency >= 1))) return wrong('maxConcurrency', 'a number of at least 1, or null')
  if (!(t.module === null || t.module === undefined || typeof t.module === 'string')) return wrong('module', 'a string or null')
  if (!(t.source === null || t.source === undefined || typeof t.source === 'string')) return wrong('source', 'a string or null')
  return undefined
}

/** Decodes and checks the first frame of a worker. */
export function decodeReady (body: Uint8Array): ReadyMessage {
  const message = decodeMessage(body, readyUnpackr)
  if (message.t !== MSG_READY) throw new ProtocolError(`expected a ready message first, got ${JSON.stringify(message.t)}`)
  if (message.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`worker speaks protocol version ${String(message.v)}, this server speaks ${PROTOCOL_VERSION}: the workers/ directory and the server are from different releases`)
  }
  if (typeof message.pid !== 'number') throw new ProtocolError(`ready message has a pid that is ${describe(message.pid)}`)
  if (!Array.isArray(message.tasks)) throw new ProtocolError(`ready message has a task list that is ${describe(message.tasks)}`)
  for (const [index, task] of message.tasks.entries()) {
    const problem = taskInfoProblem(task, index)
    if (problem !== undefined) throw new ProtocolError(`ready message: ${problem}`)
  }
  for (const task of message.tasks as TaskInfo[]) {
    task.maxConcurrency ??= null
    task.outputSchema ??= null
  }
  return message as unknown as ReadyMessage
}

