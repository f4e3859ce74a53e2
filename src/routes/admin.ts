// POST /admin/reload: a rolling restart of the workers, for new task code.
// Registered only when ADMIN_TOKEN is set (otherwise the route does not exist: 404).

import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ForbiddenError, UnauthorizedError, WorkersUnavailableError } from '../errors.js'
import { ReloadFailedError } from '../pool/worker-pool.js'
import type { ReloadResult as PoolReloadResult } from '../pool/reloader.js'

/** Compares in constant time: hashing first makes both sides the same length. */
function sameSecret (given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

function authorize (request: FastifyRequest, token: string): void {
  const header = request.headers.authorization
  const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (match === null) throw new UnauthorizedError()
  if (!sameSecret(match[1], token)) throw new ForbiddenError()
}

export default async function adminRoutes (fastify: FastifyInstance, { token }: { token: string }): Promise<void> {
  fastify.post('/admin/reload', {
    // Before any body is read: a request without the token is refused without its upload.
    onRequest: (request, reply, done) => {
      try {
        authorize(request, token)
        done()
      } catch (error) {
        // A warning, with who asked: someone may be guessing the token (the request log line is only info).
        request.log.warn({ remoteAddress: request.socket.remoteAddress }, `admin request refused: ${(error as Error).message}`)
        if (error instanceof UnauthorizedError) reply.header('www-authenticate', 'Bearer realm="pyfleet admin"') // RFC 9110 §11.6.1
        done(error as Error)
      }
    }
  }, async () => await reloadWorkers(fastify, 'admin'))
}

/** A reload's result, with the tasks the new workers serve. */
export type ReloadResult = PoolReloadResult & { tasks: string[] }

/** Rolling reload, then the task table from the new workers. One asked for during another runs after it (pool/reloader.ts). */
export async function reloadWorkers (fastify: FastifyInstance, trigger: 'admin' | 'SIGHUP' | 'change'): Promise<ReloadResult> {
  fastify.log.info({ trigger }, 'reload started')
  try {
    // New task code whose table would not compile is refused before its worker takes a call.
    const result = await fastify.pool.reload((tasks) => { fastify.tasks.check(tasks) })
    fastify.tasks.update(fastify.pool.tasks)
    fastify.tasks.warnAboutUnusedLimits(fastify.log)
    fastify.metrics.declareTasks(fastify.tasks.names())
    const done = { ...result, tasks: fastify.tasks.names() }
    fastify.log.info({ trigger, ...done }, 'reload finished')
    return done
  } catch (error) {
    const state = !(error instanceof ReloadFailedError)
      ? 'the workers keep serving the previous code'
      : error.total === 0
        ? 'no worker is serving'
        : `${error.replaced} of ${error.total} workers replaced before it stopped; ${error.total === error.replaced
          ? 'none is left on the previous code (the one being replaced died meanwhile)'
          : `the other ${error.total - error.replaced} keep serving the previous code`}`
    // The cause in the line itself, not only in err: it is what a task author reads first (npm run dev).
    const message = `reload failed: ${(error as Error).message}; ${state}`
    fastify.log.error({ trigger, err: error }, message)
    throw new WorkersUnavailableError(message)
  }
}
