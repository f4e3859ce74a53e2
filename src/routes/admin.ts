// POST /admin/reload: a rolling restart of the workers, for new task code.
// Registered only when ADMIN_TOKEN is set (otherwise the route does not exist: 404).

import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { BodyTooLargeError, ForbiddenError, UnauthorizedError, WorkersUnavailableError } from '../errors.js'
import { readBody } from './body-reader.js'
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

/** The admin routes read no body: one a client sends anyway (curl -d '', a JSON {}) is read and dropped, up to this. */
const IGNORED_BODY_LIMIT_BYTES = 64 * 1024

export default async function adminRoutes (fastify: FastifyInstance, { token }: { token: string }): Promise<void> {
  // Whatever its content type (curl -d sends a form's), a body means nothing here and must not
  // decide the answer: Fastify's default parsers refused most types with a 415 and an empty
  // JSON body with a 400. Read and dropped, untyped (the onRequest hook drops its content type).
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', (request, payload, done) => {
    readBody(request, payload, IGNORED_BODY_LIMIT_BYTES, (error) => {
      const tooLarge = (error as { code?: string } | null)?.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
      done(tooLarge ? new BodyTooLargeError(`${request.url.split('?')[0]} reads no body; one over ${IGNORED_BODY_LIMIT_BYTES} bytes is refused`) : error, undefined)
    })
  })
  fastify.post('/admin/reload', {
    // Before any body is read: a request without the token is refused without its upload.
    onRequest: (request, reply, done) => {
      try {
        authorize(request, token)
        // Nor its type: Fastify refuses one that is no media type ("json") before any parser sees it.
        delete request.headers['content-type']
        done()
      } catch (error) {
        // A warning, with who asked: someone may be guessing the token (the request log line is only info).
        request.log.warn({ remoteAddress: request.socket.remoteAddress }, `admin request refused: ${(error as Error).message}`)
        if (error instanceof UnauthorizedError) reply.header('www-authenticate', 'Bearer realm="pyfleet admin"') // RFC 9110 §11.6.1
        done(error as Error)
      }
    }
  }, async (request) => await reloadWorkers(fastify, 'admin', request.id))
}

/** A reload's result, with the tasks the new workers serve. */
export type ReloadResult = PoolReloadResult & { tasks: string[] }

/** Rolling reload, then the task table from the new workers. One asked for during another runs after it (pool/reloader.ts). */
export async function reloadWorkers (fastify: FastifyInstance, trigger: 'admin' | 'SIGHUP' | 'change', requestId?: string): Promise<ReloadResult> {
  // An admin request's id, on the reload's lines too: its request line and the reload it asked for are then one grep.
  const log = requestId === undefined ? fastify.log : fastify.log.child({ requestId })
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
        : `${error.replaced} of ${error.total} workers replaced before it stopped; ${error.total === error.replaced
          ? 'none is left on the previous code (the one being replaced died meanwhile)'
          : `the other ${error.total - error.replaced} keep serving the previous code`}`
    // The cause in the line itself, not only in err: it is what a task author reads first (npm run dev).
    const message = `reload failed: ${(error as Error).message}; ${state}`
    if (draining) log.warn({ trigger }, message)
    else {
      log.error({ trigger, err: error }, message)
      fastify.metrics.reloaded('failed', message)
    }
    throw new WorkersUnavailableError(message)
  }
}
