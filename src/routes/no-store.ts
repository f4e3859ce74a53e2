// `Cache-Control: no-store` for the answers that change from one second to the next
// (GET /health, /ready, /metrics, /api/queue-stats). They had no caching headers at all,
// and RFC 9111 §4.2.2 lets a cache give a 200 to a GET heuristic freshness: a CDN or
// caching proxy in front could serve a stale "ready" to a load balancer, or stale
// metrics. Task answers are POSTs, which caches do not reuse.

import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'

/** A route's onRequest hook: its answer, errors included, is not to be stored. */
export function noStore (_request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  reply.header('cache-control', 'no-store')
  done()
}
