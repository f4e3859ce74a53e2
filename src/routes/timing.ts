// The server-timing header of task responses: queue wait and run time in ms.

import type { Call } from '../pool/worker-pool.js'

export function serverTiming (call: Call): string {
  return `queue;dur=${call.queueMs.toFixed(3)}, run;dur=${call.runMs.toFixed(3)}`
}
