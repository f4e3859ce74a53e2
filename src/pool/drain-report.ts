// The one line the shutdown says before it stops the workers: what its grace left
// unfinished (or that nothing was). The drain itself is worker-pool.ts's.

import type { FastifyBaseLogger } from 'fastify'
import type { Admission } from './admission.js'

/** What the shutdown's grace left unfinished, said before the workers are stopped. */
export function reportDrain (log: FastifyBaseLogger, admission: Admission, graceMs: number, stopGraceMs: number): void {
  const running = admission.runningForClients
  const queued = admission.waiting
  if (running + queued === 0) {
    log.info('every admitted call finished before the workers were stopped')
    return
  }
  // A running call is not lost yet: its worker finishes it if it can before its SIGTERM.
  log.warn({ running, queued, shutdownGraceMs: graceMs, workerStopGraceMs: stopGraceMs },
    `the shutdown's grace (SHUTDOWN_GRACE_MS=${graceMs}) ran out: ${queued} queued call(s) refused (503); ${running} running call(s) have WORKER_STOP_GRACE_MS=${stopGraceMs} more to finish before their workers are stopped (then 502)`)
}
