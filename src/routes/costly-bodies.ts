// A body refused as too costly to check (schema-cost.ts) is the client's 400, but also news
// for whoever runs the task: either someone is sending bodies shaped to cost, or the task's
// schema tries branches that each go down the whole body and needs rewriting. The request's
// own log line says only FST_ERR_VALIDATION, so each task's refusals are logged at warn, at
// most once a minute with the count since, rather than once per hostile request.

import type { FastifyBaseLogger } from 'fastify'
import { isTooCostly } from '../schema-cost.js'

/** The least time between two warnings for one task. */
export const WARN_EVERY_MS = 60_000

export class CostlyBodyWarnings {
  /** Per task: when it was last warned about, and refusals since. */
  readonly #tasks = new Map<string, { warnedAt: number, since: number }>()
  readonly #now: () => number

  constructor (now: () => number = performance.now.bind(performance)) {
    this.#now = now
  }

  /** Warns about `error` if it refused a body of `task` as too costly, unless the task was warned about less than a minute ago. */
  note (task: string, error: unknown, log: FastifyBaseLogger): void {
    if (!isTooCostly(error)) return
    const now = this.#now()
    const seen = this.#tasks.get(task)
    if (seen !== undefined && now - seen.warnedAt < WARN_EVERY_MS) {
      seen.since++
      return
    }
    const more = seen === undefined || seen.since === 0 ? '' : ` (and ${seen.since} more since the last such warning)`
    log.warn({ task }, `task ${task} refused a body as too costly to check against its input schema${more}: either a client sends bodies shaped to cost, or the schema tries branches that each go down into the same data and should choose one first (docs/writing-tasks.md)`)
    this.#tasks.set(task, { warnedAt: now, since: 0 })
  }
}
