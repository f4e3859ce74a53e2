// MAX_CONNECTIONS: Node's own cap on open client connections (net.Server's
// maxConnections), lowered to what the open-file limit leaves (open-file-limit.ts), and the
// count and log of the connections Node closes at it. What happens to the connections that
// are open (stalled readers, the drain) is connections.ts's.

import type { DropArgument } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { connectionCap, readOpenFileLimit, type ConnectionCap, type OpenFileShare } from '../open-file-limit.js'

/** At most one log line about dropped connections per this long, however many there are. */
const LOG_WINDOW_MS = 1_000

/**
 * The log of dropped connections. The first drop is logged at once; the drops after it
 * are counted, and logged together when the window ends, one line per window for as long
 * as they go on. A connection flood is thousands of drops a second, and a line each would
 * cost the server most when it can least afford it (which is why QUEUE_FULL's lines are
 * info: request-log.ts); here the lines are bounded instead.
 *
 * Warnings, unlike QUEUE_FULL's info lines: bounded to one a second, they cannot flood the
 * log, and a dropped client got no HTTP answer at all, so no request line and no
 * http_request_duration_seconds sample shows it. This line and the counter are its only
 * trace, and the line must show at LOG_LEVEL=warn, which leaves out the lines per request.
 */
class DropLog {
  readonly #log: FastifyBaseLogger
  readonly #maxConnections: number
  /** Where the cap comes from, as the line says it. */
  readonly #capSource: string
  #unlogged = 0
  #lastRemoteAddress: string | undefined
  #window: NodeJS.Timeout | undefined

  constructor (log: FastifyBaseLogger, cap: ConnectionCap) {
    this.#log = log
    this.#maxConnections = cap.maxConnections
    this.#capSource = cap.lowered === undefined
      ? 'MAX_CONNECTIONS'
      : `the most the open-file limit of ${cap.lowered.openFileLimit} leaves room for; MAX_CONNECTIONS=${cap.configured}`
  }

  dropped (remoteAddress: string | undefined): void {
    this.#unlogged++
    this.#lastRemoteAddress = remoteAddress
    if (this.#window === undefined) this.#flush()
  }

  /** The server is closing: the drops not logged yet are, now. */
  stop (): void {
    clearTimeout(this.#window)
    this.#window = undefined
    if (this.#unlogged > 0) this.#write()
  }

  /** Logs the drops not logged yet, if any, and opens the window before the next line. */
  readonly #flush = (): void => {
    this.#window = undefined
    if (this.#unlogged === 0) return
    this.#write()
    this.#window = setTimeout(this.#flush, LOG_WINDOW_MS).unref()
  }

  #write (): void {
    const dropped = this.#unlogged
    this.#unlogged = 0
    const what = dropped === 1 ? 'a new connection' : `${dropped} new connections`
    this.#log.warn({ dropped, maxConnections: this.#maxConnections, lastRemoteAddress: this.#lastRemoteAddress },
      `closed ${what} unanswered: ${this.#maxConnections === 1 ? '1 connection was' : `${this.#maxConnections} connections were`} open (${this.#capSource})`)
  }
}

export interface ConnectionLimitOptions {
  /** MAX_CONNECTIONS; 0: no cap of its own. */
  maxConnections: number
  /** POOL_SIZE: the workers' files are kept from the open-file limit too. */
  poolSize: number
  /** Files the PROBE_PORT listener may hold (probe-listener.ts), kept from the limit as well; 0 without one. */
  probeFiles?: number
}

/** A cap lower than this leaves health probes and scrapes little room beside clients. */
const FEW_CONNECTIONS = 16

/** The warning at start when the open-file limit lowers the cap: what was asked, what is used, why, and what to do. */
function loweredCapMessage ({ maxConnections, configured }: ConnectionCap, { openFileLimit, reservedFiles }: OpenFileShare, poolSize: number): string {
  const asked = configured === 0 ? 'MAX_CONNECTIONS=0 (no cap of its own) is capped by the open-file limit' : `MAX_CONNECTIONS=${configured} is more than the open-file limit leaves room for`
  const fix = configured === 0
    ? `For more, raise the limit (ulimit -n, or the container's nofile limit); to choose the cap yourself, set MAX_CONNECTIONS to ${maxConnections} or less`
    : `Raise the limit (ulimit -n, or the container's nofile limit) to at least ${configured + reservedFiles}, or set MAX_CONNECTIONS to ${maxConnections} or less`
  const few = maxConnections < FEW_CONNECTIONS ? ` With ${maxConnections}, health probes and scrapes compete with clients for a place (PROBE_PORT gives them a port of their own).` : ''
  return `${asked}: at most ${maxConnections} connection${maxConnections === 1 ? '' : 's'} will be open at once. The limit is ${openFileLimit} open files, and ${reservedFiles} are kept for the server itself and its ${poolSize} worker${poolSize === 1 ? '' : 's'} (Node exits when it runs out of files). ${fix}.${few}`
}

async function connectionLimitPlugin (fastify: FastifyInstance, { maxConnections, poolSize, probeFiles = 0 }: ConnectionLimitOptions): Promise<void> {
  const cap = connectionCap(maxConnections, poolSize, await readOpenFileLimit(), probeFiles)
  fastify.metrics.setConnectionCap(cap.maxConnections)
  const { lowered } = cap
  if (lowered !== undefined) {
    fastify.log.warn({ configured: cap.configured, maxConnections: cap.maxConnections, ...lowered }, loweredCapMessage(cap, lowered, poolSize))
  }
  // No cap: the property is left unset. Node 20 reads 0 as no cap too, but Node 21 and later
  // read it as a cap of 0, closing every connection (nodejs/node#48276).
  if (cap.maxConnections === 0) return
  // Node counts a connection from the moment it accepts it until the socket is destroyed,
  // and closes one accepted past the cap before anything reads from it, emitting 'drop'.
  fastify.server.maxConnections = cap.maxConnections
  const log = new DropLog(fastify.log, cap)
  fastify.server.on('drop', (data?: DropArgument) => {
    fastify.metrics.connectionDropped()
    log.dropped(data?.remoteAddress)
  })
  fastify.addHook('onClose', async () => { log.stop() })
}

export default fp(connectionLimitPlugin, { name: 'pyfleet-connection-limit', fastify: '5.x', dependencies: ['pyfleet-metrics'] })
