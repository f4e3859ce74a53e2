// What a route makes from the whole task table (the OpenAPI document, the task list),
// written as JSON once per table instead of once per request: the table changes only
// with a reload, and for hundreds of tasks each made megabytes of JSON on the event loop.

import type { FastifyInstance } from 'fastify'
import type { Task } from '../task-registry.js'

/**
 * A function giving `make(tasks)` as JSON bytes, made again only after the table has
 * changed. Bytes, not a string: each answer then refers to the one buffer, where Node joins
 * a string answer to its headers, a copy per answer (pipelined requests nobody reads each
 * held one).
 */
export function keptPerTable (fastify: FastifyInstance, make: (tasks: Task[]) => unknown): () => Buffer {
  let kept: { table: ReadonlyMap<string, Task>, json: Buffer } | undefined
  return () => {
    const table = fastify.tasks.table
    if (kept?.table !== table) kept = { table, json: Buffer.from(JSON.stringify(make([...table.values()]))) }
    return kept.json
  }
}
