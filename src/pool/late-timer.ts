// One rule for the pool's timers: how late a timer must fire to mean the event loop was
// held (another request's huge body being parsed, say), so that a reply that arrived
// meanwhile may be waiting unread (timers run before I/O). call-deadline.ts (a task's
// timeout), budget-timer.ts (a client's budget) and queued-calls.ts (a wait for a worker) then look
// for it before they act.

import { performance } from 'node:perf_hooks'

const LATE_TIMER_MS = 100

/** Whether a timer due at `dueAt` (performance.now()) fires late enough now to look for a reply first. */
export function firedLate (dueAt: number): boolean {
  return performance.now() - dueAt >= LATE_TIMER_MS
}
