// The server-timing header of task responses: queue wait and run time in ms.

import type { Call } from '../pool/worker-pool.js'

/**
 * `queue` is the wait before the call ran: for a worker, and for the offload thread first when
 * its body was large. `run` only for a call that ran: a call refused before it ran
 * (QUEUE_FULL, QUEUE_TIMEOUT) has `queue` alone, not a run of no time.
 */
export function serverTiming (call: Call): string {
  const queue = `queue;dur=${(call.queueMs + (call.waitedMs ?? 0)).toFixed(3)}`
  return call.runMs > 0 ? `${queue}, run;dur=${call.runMs.toFixed(3)}` : queue
}
