// The server-timing header of task responses: queue wait and run time in ms.

import type { Call } from '../pool/worker-pool.js'

/** `queue` is the wait before the call ran: for a worker, and for the offload thread first when its body was large. */
export function serverTiming (call: Call): string {
  return `queue;dur=${(call.queueMs + (call.waitedMs ?? 0)).toFixed(3)}, run;dur=${call.runMs.toFixed(3)}`
}
