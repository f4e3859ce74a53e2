// buildApp(config): plugins, then routes, in a fixed order. It never listens,
// so tests can build many apps in one process; server.ts does the listening.

import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'
import type { Call } from './pool/worker-pool.js'
import metrics from './plugins/metrics.js'
import workerPool from './plugins/worker-pool.js'
import pressure from './plugins/pressure.js'
import errorHandler from './plugins/error-handler.js'
import taskRoutes from './routes/tasks.js'
import statsRoutes from './routes/stats.js'
import healthRoutes from './routes/health.js'
import adminRoutes from './routes/admin.js'
import { RequestLog } from './request-log.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The call this request made, once validated (for logs, metrics and server-timing). */
    pyfleetCall: Call | null
  }
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/

/** The client's x-request-id when it is safe to log and echo, else a new one. */
function requestId (request: IncomingMessage): string {
  const given = request.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

const NODE_HEADERS_TIMEOUT_MS = 60_000
const NODE_CHECKING_INTERVAL_MS = 30_000

/**
 * Node's other receive timeouts, fitted to the request limit: how often it looks for
 * late requests (its default 30 s is coarse for a short limit: a tenth of it, at
 * least 100 ms), and the limit on headers alone, which must not exceed the limit on
 * the whole request or Node 20 never applies the latter before the former.
 */
function receiveTimeouts (requestTimeoutMs: number): { connectionsCheckingInterval: number, headersTimeout: number } {
  if (requestTimeoutMs === 0) return { connectionsCheckingInterval: NODE_CHECKING_INTERVAL_MS, headersTimeout: NODE_HEADERS_TIMEOUT_MS }
  return {
    connectionsCheckingInterval: Math.min(NODE_CHECKING_INTERVAL_MS, Math.max(100, Math.floor(requestTimeoutMs / 10))),
    headersTimeout: Math.min(NODE_HEADERS_TIMEOUT_MS, requestTimeoutMs)
  }
}

export interface BuildOptions {
  /** Overrides the logger (tests pass a stream to read log lines). */
  logger?: FastifyServerOptions['logger']
}

export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel },
    bodyLimit: config.bodyLimitBytes,
    genReqId: requestId,
    requestIdHeader: false,
    // One log line per request, when it completes, instead of Fastify's two.
    logController: new RequestLog(),
    // While draining, routes answer for themselves (503 WORKERS_UNAVAILABLE, /ready 503).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Avvio's default of 10 s would cap start-up (a task module may import for up to
    // the workers' own start timeout) and the shutdown drain (SHUTDOWN_GRACE_MS). Both
    // have their own bounds: START_TIMEOUT_MS per worker, and server.ts's backstop.
    pluginTimeout: 0,
    // Fastify turns Node's limit on receiving a request off (0); without one, a client
    // that stops mid-body holds its socket and the body received so far forever.
    // Node answers 408 and closes the connection. Running calls are not affected:
    // the clock stops once the whole request has arrived.
    requestTimeout: config.requestBodyTimeoutMs,
    http: receiveTimeouts(config.requestBodyTimeoutMs)
  })

  app.decorateRequest('pyfleetCall', null)
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    done()
  })

  await app.register(metrics)
  await app.register(errorHandler)
  await app.register(workerPool, { config })
  await app.register(pressure, { config })
  await app.register(taskRoutes)
  await app.register(statsRoutes)
  await app.register(healthRoutes)
  if (config.adminToken !== undefined) await app.register(adminRoutes, { token: config.adminToken })
  return app
}
