// What the server does with an exception nothing caught: a bug, thrown from a timer's
// callback or an event listener (a worker's pipe, a socket), or a promise's rejection nobody
// handled. Node's default printed the stack on stderr and exited 1: the server's log, which
// is what operators read and alert on, said nothing, and the stack was not a JSON line a
// collector could index. After such an exception the process is in a state nobody planned
// (Node's documentation says to do only synchronous cleanup and exit), so the server does
// not try to serve on or to drain: it logs one fatal line and exits 1. Its workers' process
// groups, the processes their tasks started included, are killed on the way out
// (worker-process.ts' exit hook; the workers would die anyway, by PR_SET_PDEATHSIG), calls in
// flight get a reset connection, and the supervisor (a container's restart policy, systemd's
// Restart=) starts a fresh server. The log's batch is written at exit, by pino's exit hook
// (log-exit-flush.ts), and a fatal line it cannot write goes to stderr.

import type { FastifyBaseLogger } from 'fastify'

/** The exit status after an uncaught exception: Node's own. */
export const EXIT_UNCAUGHT = 1

/**
 * `log()`: the server's logger once there is one; before it (the app being built), or with
 * LOG_LEVEL=silent, the line goes to stderr, as the start's other failures do.
 */
export function exitOnUncaught (log: () => FastifyBaseLogger | undefined): void {
  process.on('uncaughtException', (error: unknown, origin: NodeJS.UncaughtExceptionOrigin) => {
    const what = origin === 'unhandledRejection' ? 'a promise rejection nobody handled' : 'an uncaught exception'
    try {
      const logger = log()
      // LOG_LEVEL=silent would swallow the line: the stack then goes to stderr, as Node's default did.
      if (logger !== undefined && logger.level !== 'silent') {
        logger.fatal({ err: error, origin }, `${what}: exiting with ${EXIT_UNCAUGHT} (calls in flight are lost, workers end with the server). Unless err names a cause outside pyfleet (a limit reached, stderr closed), it is a bug: please report it with this line`)
      } else {
        process.stderr.write(`pyfleet: ${what}${logger === undefined ? ' during start-up' : ''}, exiting with ${EXIT_UNCAUGHT}: ${plainStack(error)}\n`)
      }
    } catch (failure) {
      // The logger itself threw (the error's own getters can, in pino's serializer): a plain line, whatever it costs.
      try {
        process.stderr.write(`pyfleet: ${what}, exiting with ${EXIT_UNCAUGHT}; logging it failed too (${String(failure)}): ${plainStack(error)}\n`)
      } catch { /* stderr gone: the exit status is all that is left */ }
    } finally {
      process.exit(EXIT_UNCAUGHT)
    }
  })
}

/** The error's stack, or what it is, read so that no getter of it can throw past here. */
function plainStack (error: unknown): string {
  try {
    return error instanceof Error ? String(error.stack ?? error.message) : String(error)
  } catch {
    return 'an error that cannot be shown'
  }
}
