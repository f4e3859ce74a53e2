// buildApp(config): plugins, then routes, in a fixed order. It never listens,
// so tests can build many apps in one process; main.ts does the listening.

import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'
import type { Call } from './pool/call.js'
import metrics from './plugins/metrics.js'
import connectionLimit from './plugins/connection-limit.js'
import workerPool from './plugins/worker-pool.js'
import pressure from './plugins/pressure.js'
import errorHandler, { clientError, frameworkError, notFoundError } from './plugins/error-handler.js'
import { closeForStop, closeIfBodyIgnored, closingConnectionError, singleHeaderError, numberRequest } from './connection-reuse.js'
import taskRoutes from './routes/tasks.js'
import statsRoutes from './routes/stats.js'
import openApiRoutes from './routes/openapi.js'
import reloadOnChange from './plugins/reload-on-change.js'
import { version } from './version.js'
import healthRoutes from './routes/health.js'
import adminRoutes from './routes/admin.js'
import { RequestLog } from './request-log.js'
import { answerWritten, watchAnswer } from './abandoned.js'
import { LogDestination } from './log-destination.js'
import { expectationError, routeUnusualRequests, undecodableQuery } from './unusual-requests.js'
import { ReceiveLimit } from './routes/receive-limit.js'
import { RouteMethods } from './route-methods.js'
import { lookalikeMessage } from './setting-names.js'
import { PROBE_FILES } from './probe-listener.js'
import { traceLogFieldsOf, traceparentOf } from './trace-context.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The call this request made, once validated (for logs, metrics and server-timing). */
    pyfleetCall: Call | null
  }
  interface FastifyInstance {
    /** Request-body bytes being received, against RECEIVE_LIMIT_BYTES. */
    receiving: ReceiveLimit
    /** The methods the routes answer at a path, for a 405's Allow line. */
    routeMethods: RouteMethods
    /** A stop has been announced (SHUTDOWN_DELAY_MS): /ready says 503, calls are still served until the drain. */
    readonly stopAnnounced: boolean
    /** Announces the stop (main.ts, on SIGTERM or SIGINT, when SHUTDOWN_DELAY_MS is set). */
    announceStop: () => void
    /** Runs `listener` when the stop is announced (the answers already being made then close their connections). */
    whenStopAnnounced: (listener: () => void) => void
  }
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/

/** The client's x-request-id when it is safe to log and echo, else a new one. */
function requestId (request: IncomingMessage): string {
  const given = request.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/** A request's logger: its lines carry the request id and, when the client sent a valid `traceparent`, the trace's and its span's ids. */
const requestLogger: NonNullable<FastifyServerOptions['childLoggerFactory']> = (logger, bindings, options, request) => {
  const trace = traceLogFieldsOf(traceparentOf(request.headers.traceparent))
  return logger.child(trace === undefined ? bindings : { ...bindings, ...trace }, options)
}

const NODE_CHECKING_INTERVAL_MS = 30_000

/**
 * Node's receive timeouts for a limit on receiving a whole request. Given to Node
 * itself (not only set afterwards, as Fastify does) so that it derives its limit on
 * headers alone from it: min(60 s, limit), both off with 0. Without that, headers
 * keep their 60 s, and Node 20 never applies a shorter limit before it. How often
 * Node looks for late requests: its 30 s, unless that is coarse for the limit.
 */
function receiveTimeouts (requestTimeoutMs: number): { requestTimeout: number, connectionsCheckingInterval: number } {
  const interval = requestTimeoutMs === 0 ? NODE_CHECKING_INTERVAL_MS : Math.min(NODE_CHECKING_INTERVAL_MS, Math.max(100, Math.floor(requestTimeoutMs / 10)))
  return { requestTimeout: requestTimeoutMs, connectionsCheckingInterval: interval }
}

export interface BuildOptions {
  /** Overrides the logger (tests pass a stream to read log lines). */
  logger?: FastifyServerOptions['logger']
  /** Aborts the workers' start (main.ts: a SIGTERM while they are still importing). */
  startSignal?: AbortSignal
  /** `--check`: warnings about the task setup stop the start (see the worker-pool plugin). */
  strict?: boolean
  /**
   * The offload thread's script (job-runner.ts's own by default). In-process tests give the
   * built one: theirs, loaded through the test runner's TypeScript loader, compiled every module
   * again at each thread start (~2.5 s of CPU).
   */
  offloadScript?: URL
}

export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const destination = options.logger === undefined ? new LogDestination() : undefined
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel, stream: destination?.stream },
    bodyLimit: config.bodyLimitBytes,
    genReqId: requestId,
    requestIdHeader: false,
    childLoggerFactory: requestLogger,
    // One log line per request, when it completes, instead of Fastify's two.
    logController: new RequestLog(answerWritten),
    // While draining, routes answer for themselves (503 WORKERS_UNAVAILABLE, /ready 503).
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Avvio's default of 10 s would cap start-up (a task module may import for up to
    // the workers' own start timeout) and the shutdown drain (SHUTDOWN_GRACE_MS). Both
    // have their own bounds: WORKER_START_TIMEOUT_MS per worker (and a SIGTERM aborts the
    // start), and main.ts's backstop.
    pluginTimeout: 0,
    // Fastify turns Node's limit on receiving a request off (0); without one, a client
    // that stops mid-body holds its socket and the body received so far forever.
    // Node answers 408 and closes the connection. Running calls are not affected:
    // the clock stops once the whole request has arrived.
    requestTimeout: config.requestBodyTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Node's Host check answers an empty 400: the onRequest hook's singleHeaderError answers in the error shape.
    http: { ...receiveTimeouts(config.requestBodyTimeoutMs), requireHostHeader: false },
    frameworkErrors: frameworkError,
    clientErrorHandler: clientError,
    // Task names are at most 64 characters: a longer path segment is a 414, not a 404.
    routerOptions: { maxParamLength: 64 }
  })

  // Before the workers start (slow imports): the line is the first an operator sees.
  for (const lookalike of config.lookalikes) app.log.warn({ setting: lookalike.name, meant: lookalike.meant }, lookalikeMessage(lookalike))
  routeUnusualRequests(app.server)

  app.decorateRequest('pyfleetCall', null)
  // Before any route: every route, the HEAD routes Fastify adds included, is recorded.
  const routeMethods = new RouteMethods()
  app.addHook('onRoute', (route) => { routeMethods.add(route.url, route.method) })
  app.decorate('routeMethods', routeMethods)
  let stopAnnounced = false
  app.decorate('stopAnnounced', { getter: () => stopAnnounced })
  const stopListeners: Array<() => void> = []
  app.decorate('announceStop', () => {
    stopAnnounced = true
    for (const listener of stopListeners) listener()
  })
  app.decorate('whenStopAnnounced', (listener: () => void) => { stopListeners.push(listener) })
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    numberRequest(request, reply)
    watchAnswer(request, reply)
    closeIfBodyIgnored(request, reply)
    if (stopAnnounced) closeForStop(request, reply)
    // No route: answered here, before Fastify would read and parse a body nobody uses
    // (and before a 100 Continue would ask the client to send it).
    done(closingConnectionError(request) ?? singleHeaderError(request, reply) ?? expectationError(request) ?? (request.is404 ? notFoundError(request, reply) : undefined) ?? undecodableQuery(request))
  })

  await app.register(metrics)
  destination?.watch(app.log, app.metrics.logLinesDropped)
  await app.register(connectionLimit, { maxConnections: config.maxConnections, poolSize: config.poolSize, probeFiles: config.probePort === undefined ? 0 : PROBE_FILES })
  const receiving = new ReceiveLimit(config.receiveLimitBytes, config.bodyLimitBytes, app.metrics.receiveRefused)
  app.metrics.watchReceiving(receiving)
  app.decorate('receiving', receiving)
  await app.register(errorHandler)
  await app.register(workerPool, { config, startSignal: options.startSignal, strict: options.strict, offloadScript: options.offloadScript })
  await app.register(pressure, { config })
  await app.register(taskRoutes)
  await app.register(statsRoutes)
  await app.register(openApiRoutes, { version: await version(), adminRoutes: config.adminToken !== undefined })
  await app.register(healthRoutes)
  if (config.adminToken !== undefined) await app.register(adminRoutes, { token: config.adminToken })
  await app.register(reloadOnChange, { config })
  return app
}
