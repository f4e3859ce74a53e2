// GET /ready: 200 while at least one worker can take calls and the server is not
// stopping (announced, SHUTDOWN_DELAY_MS, or draining), 503 otherwise. (GET /health is
// plugins/pressure.ts's.)

import type { FastifyInstance } from 'fastify'
import { noteExpected } from '../request-log.js'
import { noStore } from './no-store.js'

export default async function healthRoutes (fastify: FastifyInstance): Promise<void> {
  fastify.get('/ready', { logLevel: 'warn', onRequest: noStore }, async (_request, reply) => {
    const workers = fastify.pool.liveWorkers
    const draining = fastify.pool.isDraining
    const stopping = fastify.stopAnnounced && !draining
    const ready = workers > 0 && !draining && !stopping
    // Asked for (a signal): no warning per check. 'no workers' is an outage, and stays one.
    if (draining || stopping) noteExpected(reply)
    return reply.status(ready ? 200 : 503).send({
      status: ready ? 'ready' : draining ? 'draining' : stopping ? 'stopping' : 'no workers',
      workers,
      waiting: fastify.pool.waiting
    })
  })
}
