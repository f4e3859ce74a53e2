// GET /api/queue-stats (JSON snapshot) and GET /metrics (Prometheus text).
// Both read the same live state: the pool's snapshot and the metric counters.

import type { FastifyInstance } from 'fastify'
import { noStore } from './no-store.js'
import { recordIfClientLeft } from '../abandoned.js'
import { acceptsGzip, GzipOnce } from './scrape-encoding.js'

export default async function statsRoutes (fastify: FastifyInstance): Promise<void> {
  // Logged at warn only, as /metrics: a dashboard polls it every few seconds.
  fastify.get('/api/queue-stats', { logLevel: 'warn', onRequest: noStore }, async () => {
    // Current memory, as the /metrics gauge reads it, not the last sample (0 before the first scrape).
    await fastify.pool.sampleMemory()
    const snapshot = fastify.pool.snapshot()
    const { calls, restarts, receiveRefused, reloads } = await fastify.metrics.counts()
    return {
      pool: snapshot.pool,
      queue: { ...snapshot.queue, rejected: calls.queue_full + calls.queue_timeout },
      receiving: { bytes: fastify.receiving.bytes, limitBytes: fastify.receiving.limitBytes, refused: receiveRefused },
      offload: { minBytes: fastify.offloader.minBytes, pendingJobs: fastify.offloader.pendingJobs, pendingBodyBytes: fastify.offloader.pendingBodyBytes },
      tasks: {
        completed: calls.ok,
        failed: calls.rejected + calls.failed,
        timedOut: calls.timeout,
        workerDied: calls.worker_died
      },
      workers: snapshot.workers,
      restarts: {
        crash: restarts.crash,
        timeout: restarts.timeout,
        maxCalls: restarts.max_calls,
        maxRss: restarts.max_rss,
        protocol: restarts.protocol,
        reload: restarts.reload
      },
      reloads,
      // The process's, as process_start_time_seconds says: counted from this route's registration it
      // left out the workers' start, up to WORKER_START_TIMEOUT_MS of task imports.
      uptimeSeconds: Math.round(process.uptime())
    }
  })

  // Scrapes that come while one is being rendered share the rendering after it, as bytes: a
  // client that pipelined 1,000 scrapes in one 34 KB write, and read none of the answers, had
  // 1,000 renders of ~4 ms each hold the event loop, and 1,000 copies of the ~70 KB text held
  // in memory (a string answer is joined to its headers; a buffer is sent as it is). Not the
  // rendering under way: prom-client reads most values as it begins, so a scrape that came
  // after a call had been answered could be given counts from before that call.
  const registry = fastify.metrics.registry
  let rendering: Promise<Buffer> | undefined
  let following: Promise<Buffer> | undefined
  const startRendering = (): Promise<Buffer> => {
    const started: Promise<Buffer> = registry.metrics().then((text) => Buffer.from(text)).finally(() => {
      if (rendering === started) rendering = undefined
    })
    rendering = started
    return started
  }
  const render = async (): Promise<Buffer> => {
    if (rendering === undefined) return await startRendering()
    following ??= rendering.then(() => {}, () => {}).then(() => {
      following = undefined
      return startRendering()
    })
    return await following
  }
  const gzipped = new GzipOnce()
  fastify.get('/metrics', { logLevel: 'warn', onRequest: noStore }, async (request, reply) => {
    const text = await render()
    // Vary: a cache in front must not give the gzip to a client that did not ask for it.
    reply.header('vary', 'accept-encoding')
    const body = acceptsGzip(request.headers['accept-encoding']) ? await gzipped.of(text) : text
    if (body !== text) reply.header('content-encoding', 'gzip')
    // A scrape cut off by Prometheus's scrape_timeout while it was rendered: its 499 says so.
    recordIfClientLeft(request, reply)
    return reply.type(registry.contentType).send(body)
  })
}
