// What a route makes from the whole task table (the OpenAPI document, the task list),
// written as JSON once per table instead of once per request: the table changes only
// with a reload, and for hundreds of tasks each made megabytes of JSON on the event loop.

import type { FastifyInstance } from 'fastify'
import type { Task } from '../task-registry.js'

/** A function giving `make(tasks)` as JSON, made again only after the table has changed. */
export function keptPerTable (fastify: FastifyInstance, make: (tasks: Task[]) => unknown): () => string {
  let kept: { table: ReadonlyMap<string, Task>, json: string } | undefined
  return () => {
    const table = fastify.tasks.table
    if (kept?.table !== table) kept = { table, json: JSON.stringify(make([...table.values()])) }
    return kept.json
  }
}
