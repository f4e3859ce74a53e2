// The totals /api/queue-stats shows, read from the metric counters themselves (no second
// set of counters that could drift): calls by outcome, restarts by reason, receive refusals, reloads.

import type { Families } from './metric-families.js'
import { CALL_OUTCOMES, RESTART_REASONS, type CallOutcome, type RestartReason } from '../pool/worker-pool.js'

export interface PoolCounts {
  calls: Record<CallOutcome, number>
  restarts: Record<RestartReason, number>
  /** Requests refused with 503 RECEIVE_FULL (not calls: their bodies were not read whole). */
  receiveRefused: number
  /** Reloads of the task code by outcome, and why the last one failed (null: it did not, or none ran). */
  reloads: { ok: number, failed: number, lastError: string | null }
}

/** Totals by outcome and by restart reason, read from the counters themselves; `lastReloadError` as Metrics keeps it. */
export async function poolCounts (families: Families, lastReloadError: string | null): Promise<PoolCounts> {
  const calls = Object.fromEntries(CALL_OUTCOMES.map((o) => [o, 0])) as Record<CallOutcome, number>
  for (const { labels, value } of families.calls.children) calls[labels.outcome as CallOutcome] += value
  const restarts = Object.fromEntries(RESTART_REASONS.map((r) => [r, 0])) as Record<RestartReason, number>
  for (const { labels, value } of (await families.restarts.get()).values) restarts[labels.reason as RestartReason] += value
  const receiveRefused = (await families.receiveRefused.get()).values[0]?.value ?? 0
  const reloads = { ok: 0, failed: 0, lastError: lastReloadError }
  for (const { labels, value } of (await families.reloads.get()).values) reloads[labels.outcome as 'ok' | 'failed'] += value
  return { calls, restarts, receiveRefused, reloads }
}
