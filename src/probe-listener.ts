// PROBE_PORT: a second listener for the orchestrator's probes and Prometheus' scrapes
// alone. It answers GET (and HEAD) /health, /ready, /metrics and /api/queue-stats with the
// very routes of the main port (Fastify's own routing: the same hooks, log lines and
// metrics), and nothing else.
//
// Why: on the main port, probes and scrapes share MAX_CONNECTIONS with clients. A
// connection flood, or clients holding keep-alive connections up to the cap, had Node
// close the kubelet's liveness probe unanswered, and a replica that was only busy was
// restarted for it, dropping every call it was running. A port of its own is also one a
// NetworkPolicy can keep to the cluster's agents.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
import { closeSilentConnections } from './silent-connections.js'
import { sendProgress } from './plugins/connections.js'

export const PROBE_PATHS: readonly string[] = ['/health', '/ready', '/metrics', '/api/queue-stats']
const SERVED = new Set(PROBE_PATHS)

/**
 * Connections at most: probes and scrapes come from a few agents, each with a connection
 * or two. The cap bounds the files a client that reaches the port can take (past the
 * open-file limit Node exits); such a client can still fill it, so keep the port from
 * clients (a NetworkPolicy), as the docs say.
 */
const PROBE_MAX_CONNECTIONS = 64
/** The files the listener may hold: its connections, its socket, and the one Node accepts only to close at the cap. */
export const PROBE_FILES = PROBE_MAX_CONNECTIONS + 2
/**
 * A request's headers must arrive within this long (an agent sends its few lines at once),
 * checked this often: Node's 30 s between checks let 256 connections that sent nothing
 * hold a probe off for 30 s (a review), whatever the timeout said.
 */
const HEADERS_TIMEOUT_MS = 5_000
const CHECK_INTERVAL_MS = 1_000
/**
 * A connection whose answer has not moved for this long is closed: an agent reads its
 * answer at once. Without it, a client that pipelined scrapes and read none of the answers
 * held them in memory for good (PORT has RESPONSE_STALL_TIMEOUT_MS; this port had nothing
 * once a request had arrived, and Node's socket timeout did not fire on such a connection).
 * Looked at every CHECK_INTERVAL_MS.
 */
const STALL_TIMEOUT_MS = 10_000

/** Why PROBE_PORT turned a connection or request away (pyfleet_probe_port_refused_total). */
export type ProbeRefusal = 'not_served' | 'at_cap' | 'silent' | 'stalled'
export const PROBE_REFUSALS: readonly ProbeRefusal[] = ['not_served', 'at_cap', 'silent', 'stalled']

export interface ProbeListener {
  /** The port it listens on (PROBE_PORT, or the one the system chose for 0). */
  readonly port: number
  /** Stops listening and closes its connections: once the server is done with its drain. */
  close: () => Promise<void>
}

/**
 * Listens on `host`:`port` for the probe routes of `app`, which must be ready (its routes
 * registered). What it turns away is counted by `refused`: none of it reaches the app's
 * routes, so no other metric sees it, and a port held full means probes go unanswered.
 */
export async function listenForProbes (app: FastifyInstance, host: string, port: number, refused: (why: ProbeRefusal) => void = () => {}): Promise<ProbeListener> {
  // requireHostHeader off: a request without Host is answered in the error shape by the app's own check, as on PORT.
  const server = createServer({ requestTimeout: HEADERS_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS, connectionsCheckingInterval: CHECK_INTERVAL_MS, requireHostHeader: false }, (request, response) => {
    if (isProbe(request)) app.routing(request, response)
    else {
      refused('not_served')
      notServedHere(request, response)
    }
  })
  server.maxConnections = PROBE_MAX_CONNECTIONS
  server.on('drop', () => { refused('at_cap') })
  closeStalledConnections(server, () => { refused('stalled') })
  closeSilentConnections(server, HEADERS_TIMEOUT_MS, () => { refused('silent') })
  await listen(server, host, port)
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => { await close(server) }
  }
}

/** Closes connections whose answer has not moved for STALL_TIMEOUT_MS, and says so through `closed`. */
function closeStalledConnections (server: Server, closed: () => void): void {
  /** Socket -> its progress in sending when last looked at, and since when it has not moved. */
  const sockets = new Map<Socket, { sent: number, since: number }>()
  server.on('connection', (socket: Socket) => {
    sockets.set(socket, { sent: 0, since: performance.now() })
    socket.once('close', () => { sockets.delete(socket) })
  })
  const sweep = setInterval(() => {
    const now = performance.now() // not the wall clock: a step of it must not close a connection
    for (const [socket, seen] of sockets) {
      const sent = sendProgress(socket) // grows as the client reads
      if (socket.writableLength === 0 || sent !== seen.sent) { seen.sent = sent; seen.since = now; continue }
      if (now - seen.since >= STALL_TIMEOUT_MS) {
        sockets.delete(socket)
        closed()
        socket.destroy()
      }
    }
  }, CHECK_INTERVAL_MS)
  sweep.unref()
  server.once('close', () => { clearInterval(sweep) })
}

function isProbe (request: IncomingMessage): boolean {
  return (request.method === 'GET' || request.method === 'HEAD') && isProbePath(request)
}

function isProbePath (request: IncomingMessage): boolean {
  const url = request.url ?? ''
  const query = url.indexOf('?')
  return SERVED.has(query === -1 ? url : url.slice(0, query))
}

/**
 * In the error shape of every other answer, saying where the rest is served: a 404, or a
 * 405 for another method than GET or HEAD on a probe path (with Allow, as on PORT).
 */
function notServedHere (request: IncomingMessage, response: ServerResponse): void {
  const wrongMethod = isProbePath(request)
  const body = JSON.stringify({
    statusCode: wrongMethod ? 405 : 404,
    code: wrongMethod ? 'METHOD_NOT_ALLOWED' : 'FST_ERR_NOT_FOUND',
    error: wrongMethod ? 'Method Not Allowed' : 'Not Found',
    message: `PROBE_PORT serves GET ${PROBE_PATHS.join(', ')} only; every route, these included, is on PORT`
  })
  // Its body is not read: the connection closes rather than read whatever the client sends.
  response.writeHead(wrongMethod ? 405 : 404, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close', ...(wrongMethod ? { allow: 'GET, HEAD' } : {}) })
  response.end(request.method === 'HEAD' ? undefined : body)
}

async function listen (server: Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

async function close (server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  // Probes keep connections alive between checks: without this, close() waits for them.
  server.closeAllConnections()
  await closed
}
