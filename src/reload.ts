// A reload of the task code, whoever asked for it (POST /admin/reload, SIGHUP,
// RELOAD_ON_CHANGE): the pool's rolling reload (pool/reloader.ts), then the task table,
// limits and metrics from the new workers, and the log lines and error that say how it went.

import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { WorkersUnavailableError } from './errors.js'
import { ReloadFailedError } from './pool/worker-pool.js'
import type { ReloadResult as PoolReloadResult } from './pool/reloader.js'

/** A reload's result, with the tasks the new workers serve. */
export type ReloadResult = PoolReloadResult & { tasks: string[] }

/**
 * The reload waiting to begin behind the one running (the pool's follow-up), as its first
 * requester reports it: the whole of it, task table included, for the requests that share it.
 */
const followUps = new WeakMap<FastifyInstance, Promise<ReloadResult>>()

/** Rolling reload, then the task table from the new workers. One asked for during another runs after it (pool/reloader.ts). */
export async function reloadWorkers (fastify: FastifyInstance, trigger: 'admin' | 'SIGHUP' | 'change', requestId?: string): Promise<ReloadResult> {
  // An admin request's id, on the reload's lines too: its request line and the reload it asked for are then one grep.
  const log = requestId === undefined ? fastify.log : fastify.log.child({ requestId })
  // Announced (SHUTDOWN_DELAY_MS): the drain comes next, and would stop the new workers
  // at once; SIGHUP is refused then as well (main.ts).
  if (fastify.stopAnnounced) {
    const message = 'reload refused: the server is stopping (SHUTDOWN_DELAY_MS, then the drain); the workers keep serving the code they have'
    log.warn({ trigger }, message)
    throw new WorkersUnavailableError(message)
  }
  // Asked for while the next reload waits to begin, this request shares it: the reload is
  // logged and counted once, by the request that asked for it first, and this one gets its
  // answer. Counted per request, two admin requests and a SIGHUP made three `reload finished`
  // lines and pyfleet_reloads_total 3 for two reloads (a review).
  const waiting = fastify.pool.reloadWaiting ? followUps.get(fastify) : undefined
  if (waiting !== undefined) return await shareReload(waiting, log, trigger)
  const becomesFollowUp = fastify.pool.isReloading
  const reload = runReload(fastify, log, trigger)
  if (becomesFollowUp) {
    followUps.set(fastify, reload)
    const forget = (): void => { if (followUps.get(fastify) === reload) followUps.delete(fastify) }
    reload.then(forget, forget)
  }
  return await reload
}

async function shareReload (reload: Promise<ReloadResult>, log: FastifyBaseLogger, trigger: string): Promise<ReloadResult> {
  log.info({ trigger }, 'reload asked for while the next one waits to begin: this request shares it')
  try {
    const done = await reload
    log.info({ trigger, ...done }, 'the reload this request shared finished')
    return done
  } catch (error) {
    // Said at its level, and counted, by the request that asked for it first; this answer has it too.
    log.info({ trigger }, `the reload this request shared failed: ${(error as Error).message}`)
    throw error
  }
}

async function runReload (fastify: FastifyInstance, log: FastifyBaseLogger, trigger: string): Promise<ReloadResult> {
  log.info({ trigger }, 'reload started')
  try {
    // New task code whose table would not compile is refused before its worker takes a call.
    const result = await fastify.pool.reload((tasks) => { fastify.tasks.check(tasks) })
    fastify.tasks.update(fastify.pool.tasks)
    fastify.tasks.warnAboutUnusedLimits(fastify.log)
    fastify.metrics.declareTasks(fastify.tasks.all())
    const done = { ...result, tasks: fastify.tasks.names() }
    fastify.metrics.reloaded('ok')
    log.info({ trigger, ...done }, 'reload finished')
    return done
  } catch (error) {
    // A shutdown during the reload (SIGTERM after SIGHUP) is the operator's own doing, not a
    // failure of the code: a warning without the stack. Its workers are stopping, so none
    // counts as serving: "no worker is serving" would claim an outage.
    const draining = fastify.pool.isDraining
    const state = !(error instanceof ReloadFailedError)
      ? 'the workers keep serving the previous code'
      : error.total === 0
        ? (draining ? 'the shutdown stops the workers' : 'no worker is serving')
        : `${error.replaced} of ${error.total} workers replaced before it stopped; ${draining
          ? 'the shutdown stops them all'
          : error.total === error.replaced
            ? 'none is left on the previous code (the one being replaced died meanwhile)'
            : `the other ${error.total - error.replaced} ${error.total - error.replaced === 1 ? 'keeps' : 'keep'} serving the previous code`}`
    // The cause in the line itself, not only in err: it is what a task author reads first (npm run dev).
    const message = `reload failed: ${(error as Error).message}; ${state}`
    if (draining) log.warn({ trigger }, message)
    else {
      log.error({ trigger, err: error }, message)
      // /api/queue-stats, which any client may read, gets the outcome without the cause: a task
      // module's import error may quote a connection string or a token. The log line has it, as
      // has the 503 of POST /admin/reload, whose caller holds ADMIN_TOKEN.
      fastify.metrics.reloaded('failed', `reload failed (the cause is in the server log's "reload failed" line); ${state}`)
    }
    throw new WorkersUnavailableError(message)
  }
}
