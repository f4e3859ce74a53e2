// x-request-timeout-ms: a client's end-to-end budget for one call (SPEC §1), read from its header.

import type { FastifyRequest } from 'fastify'
import { InvalidInputError } from '../errors.js'

const TIMEOUT_HEADER = 'x-request-timeout-ms'

/** The budget in ms, undefined without the header; throws a 400 for one that is not a whole number of at least 1. */
export function budgetMs (request: FastifyRequest): number | undefined {
  const budget = budgetOrNaN(request)
  if (Number.isNaN(budget)) {
    // Node joins a header sent twice with ", ": the message said only that it was no number.
    const raw = String(request.headers[TIMEOUT_HEADER])
    const twice = /^\s*\d+\s*(,\s*\d+\s*)+$/.test(raw) ? ` (it was sent more than once: ${raw.slice(0, 60)}; send one)` : ''
    throw new InvalidInputError(`${TIMEOUT_HEADER} must be a whole number of milliseconds, at least 1 (a larger one than the task's timeout is capped by it)${twice}`)
  }
  return budget
}

/**
 * The budget in ms, undefined without the header, NaN for one that is not valid (whose 400
 * comes later: a body's own error is answered first). Any length: a budget past the task's
 * timeout (or QUEUE_TIMEOUT_MS) is capped by it, as SPEC says, not refused; every timer
 * takes the smaller of the two.
 */
export function budgetOrNaN (request: FastifyRequest): number | undefined {
  const raw = request.headers[TIMEOUT_HEADER]
  if (raw === undefined) return undefined
  const value = Array.isArray(raw) ? raw[0] : raw
  return /^\d+$/.test(value.trim()) && Number(value) >= 1 ? Number(value) : NaN
}
