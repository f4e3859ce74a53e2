// POST /admin/reload: a rolling restart of the workers, for new task code (src/reload.ts,
// which SIGHUP and RELOAD_ON_CHANGE use too). Registered only when ADMIN_TOKEN is set
// (otherwise the route does not exist: 404).

import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { BodyTooLargeError, ForbiddenError, UnauthorizedError } from '../errors.js'
import { readBody } from './body-reader.js'
import { reloadWorkers } from '../reload.js'
import { recordIfClientLeft } from '../abandoned.js'

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
  }, async (request, reply) => {
    const result = await reloadWorkers(fastify, 'admin', request.id)
    // A reload takes seconds: its caller may have left (a curl -m), and who reloaded must still be on record.
    recordIfClientLeft(request, reply)
    return result
  })
}
