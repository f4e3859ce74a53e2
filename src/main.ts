// The server's life: configuration, buildApp, listen, signals. With server.ts
// (which loads it), the only file with process-wide side effects (exit codes,
// signal handlers).

import { setMaxListeners } from 'node:events'
import { constants as osConstants } from 'node:os'
import { realpath } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, shutdownBackstopMs, type Config } from './config.js'
import { WorkerStartError } from './pool/worker-failures.js'
import { reloadWorkers } from './reload.js'
import { checkSetup } from './check.js'
import { canListen, listenAddress, loopbackInContainer } from './listen-address.js'
import { listenForProbes, PROBE_PATHS, type ProbeListener } from './probe-listener.js'
import { flushLogs } from './log-destination.js'
import { exitOnUncaught } from './last-resort.js'

const EXIT_START_FAILED = 1
/** How long a clean exit waits for the last log lines at most. */
const EXIT_LOG_FLUSH_MS = 1000
/**
 * A repeat of the first stop signal this soon is the same request delivered twice, not
 * an operator insisting: Ctrl-C signals the whole process group, so under `npm start`
 * the server gets it from the terminal and again from npm, which passes its own on.
 */
const REPEATED_SIGNAL_WINDOW_MS = 500
/**
 * The signals that drain and stop the server. SIGUSR2 is nodemon's restart signal (and
 * Node's default for it ended the server at once, cutting every call in flight): it drains
 * as SIGTERM does, then exits 0, and nodemon starts the new one.
 */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGUSR2']

function fatal (message: string): never {
  process.stderr.write(`pyfleet: ${message}\n`)
  process.exit(EXIT_START_FAILED)
}

/**
 * Exits once the log lines already written have reached stdout. pino writes
 * asynchronously, and process.exit() would make it flush what is still queued
 * synchronously, ahead of a write in flight: "stopped" printed before the
 * "worker exited" lines logged before it. With nothing left to do, the event loop
 * ends by itself once those writes are done; the timer is a backstop for a
 * handle that would keep it alive (it keeps nothing alive itself).
 */
function exitOnceLogged (code: number): void {
  process.exitCode = code
  setTimeout(() => { process.exit(code) }, EXIT_LOG_FLUSH_MS).unref()
}

/**
 * Fastify's start line, with the cap on open connections in effect: MAX_CONNECTIONS, or
 * lower where the open-file limit leaves less room (plugins/connection-limit.ts).
 */
function listeningText (maxConnections: number | undefined): (address: string) => string {
  const cap = maxConnections === undefined || maxConnections === 0 ? 'no cap on open connections' : `at most ${maxConnections} open connection${maxConnections === 1 ? '' : 's'}`
  return (address) => `Server listening at ${address} (${cap})`
}

export interface EarlySignals {
  /** What the command line asks for (server.ts answers --help and --version itself). */
  command: 'serve' | 'check'
  /** Signals that arrived while this module and its dependencies were loading, in order. */
  received: readonly NodeJS.Signals[]
  /** Removes server.ts's interim handlers; called once main's own are installed. */
  stopRemembering: () => void
}

/**
 * How long a failed start waits for its log lines to be written before its one line on stderr.
 * A cap, reached only when the reader of stdout is slow: the flush itself takes milliseconds.
 * 500 ms was passed on a loaded machine, and the reason line came before the lines explaining it.
 */
const LOG_FLUSH_BEFORE_FAILURE_MS = 2_000

/**
 * exitWithStartError, once the log lines already written (a worker's traceback, "worker
 * exited") are out: the one clear line comes last where stdout and stderr are read
 * together.
 */
async function exitWithStartErrorAfterLogs (error: unknown, config: Config): Promise<never> {
  await flushLogs(LOG_FLUSH_BEFORE_FAILURE_MS)
  exitWithStartError(error, config)
}

/** Why the app could not be built or could not listen, as the one line start-up failures get. */
function exitWithStartError (error: unknown, config: Config): never {
  if (error instanceof ConfigError || error instanceof WorkerStartError) fatal(error.message)
  const err = error as NodeJS.ErrnoException
  if (err.code === 'EADDRINUSE') fatal(`port ${config.port} on ${config.host} is in use: stop the other server or set PORT`)
  if (err.code === 'EACCES') fatal(`port ${config.port} on ${config.host} needs privileges this user lacks (ports below 1024 do): set PORT to 1024 or above`)
  // Resolving HOST, or binding to it, failed (a name with no address, an address not on this machine).
  if (['ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL'].includes(err.code ?? '')) fatal(`could not listen on HOST ${config.host}, PORT ${config.port}: ${err.message}`)
  fatal(`could not start: ${err.message}`)
}

/** Listens on PROBE_PORT (app ready first: its routes answer there), or fails the start with one line. */
async function probesOn (app: FastifyInstance, host: string, port: number): Promise<ProbeListener> {
  await app.ready()
  try {
    const probes = await listenForProbes(app, host, port, app.metrics.probeRefused)
    app.log.info({ probePort: probes.port, paths: PROBE_PATHS }, `probes and scrapes also answered at port ${probes.port} (PROBE_PORT): ${PROBE_PATHS.join(', ')}`)
    return probes
  } catch (error) {
    throw probePortError(error, host, port)
  }
}

/** The one line for a PROBE_PORT that cannot be listened on. */
function probePortError (error: unknown, host: string, port: number): ConfigError {
  const err = error as NodeJS.ErrnoException
  const why = err.code === 'EADDRINUSE' ? 'it is in use: stop the other server or choose another PROBE_PORT' : err.code === 'EACCES' ? 'ports below 1024 need privileges this user lacks: use 1024 or above' : err.message
  return new ConfigError(`could not listen on PROBE_PORT ${port} (HOST ${host}): ${why}`)
}

export async function main (early: EarlySignals): Promise<void> {
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (error) {
    if (error instanceof ConfigError) fatal(`bad configuration: ${error.message}`)
    throw error
  }
  if (early.command === 'check') await runCheck(config, early)
  else await serve(config, early)
}

/** `--check`: starts the workers once, prints the task table as it would be served, and exits. */
async function runCheck (config: Config, early: EarlySignals): Promise<void> {
  // Signals keep their default action: Ctrl-C ends a check stuck in a slow import at once,
  // and one that came while the code was loading ends it now, as it would have then.
  early.stopRemembering()
  const earlyStop = early.received.find((signal) => STOP_SIGNALS.includes(signal))
  if (earlyStop !== undefined) process.kill(process.pid, earlyStop)
  // Except that the interpreter probe runs in a session of its own, out of Ctrl-C's reach,
  // and with no parent-death signal (workers have one): it is killed first, then the check
  // exits as the signal's default would, with 128 + its number (raised again, the signal
  // met libuv's handler, still in place, and was lost).
  const checking = new AbortController()
  const stopCheck = (signal: NodeJS.Signals): void => {
    checking.abort()
    process.exit(128 + osConstants.signals[signal])
  }
  for (const signal of STOP_SIGNALS) process.on(signal, stopCheck)
  const report = await checkSetup(config, checking.signal).catch((error: unknown) => exitWithStartError(error, config))
  process.stdout.write(report)
  exitOnceLogged(0)
}

/** Serves until SIGTERM, SIGINT or SIGUSR2, then drains and exits; SIGHUP reloads the task code. */
async function serve (config: Config, early: EarlySignals): Promise<void> {
  let app: FastifyInstance | undefined
  exitOnUncaught(() => app?.log)
  /** The first stop signal (STOP_SIGNALS), once one has come: the server is stopping. */
  let firstStop: { signal: NodeJS.Signals, at: number } | undefined
  /** The shutdown is over; the process only lets its last log lines out. */
  let stopped = false
  // A stop while the workers are still starting (slow task imports) ends their start at once.
  const starting = new AbortController()
  setMaxListeners(0, starting.signal) // one listener per starting worker; POOL_SIZE may pass Node's warning at 10
  let closing = false
  /** The PROBE_PORT listener, once it listens: it answers through the drain, and closes after it. */
  let probes: ProbeListener | undefined
  const close = (instance: FastifyInstance): void => {
    // Once: a stop that came while listen() was under way closes from stop() and after listen().
    if (closing) return
    closing = true
    // Backstop: drain is bounded by the grace periods; this catches anything that is not.
    const backstop = setTimeout(() => {
      instance.log.error('shutdown did not finish in time; exiting')
      process.exit(1)
    }, shutdownBackstopMs(config)).unref()
    const end = (code: number): void => {
      clearTimeout(backstop)
      stopped = true
      exitOnceLogged(code)
    }
    instance.close().then(async () => {
      await probes?.close()
      instance.log.info('stopped')
      end(0)
    }, (error: Error) => {
      instance.log.error({ err: error }, 'error while shutting down')
      end(1)
    })
  }
  const stop = (signal: NodeJS.Signals): void => {
    if (stopped) return
    if (firstStop !== undefined) {
      if (signal === firstStop.signal && performance.now() - firstStop.at < REPEATED_SIGNAL_WINDOW_MS) return
      process.stderr.write(`pyfleet: second ${signal}: exiting now\n`)
      process.exit(1)
    }
    firstStop = { signal, at: performance.now() }
    if (app === undefined) {
      // No logger yet: a plain line, as for a stop before start-up. main() exits once buildApp gives up.
      process.stderr.write(`pyfleet: ${signal} during start-up: stopping the workers that are starting\n`)
      starting.abort()
      return
    }
    if (config.shutdownDelayMs > 0 && app.server.listening) {
      // Lame duck: load balancers that read /ready stop sending before any call is refused.
      // (Not while listen() is under way: nobody is sending yet, and the close after it must not wait.)
      const announced = app
      announced.announceStop()
      announced.log.info({ signal, delayMs: config.shutdownDelayMs }, `stopping in ${config.shutdownDelayMs} ms (SHUTDOWN_DELAY_MS): /ready answers 503 so that load balancers stop sending; calls are served until then`)
      setTimeout(() => { drain(announced, signal) }, config.shutdownDelayMs)
      return
    }
    drain(app, signal)
  }
  const drain = (instance: FastifyInstance, signal: NodeJS.Signals): void => {
    instance.log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: finishing admitted calls')
    close(instance)
  }
  // Installed before anything starts, so a stop during start-up (a pod deleted
  // while its workers spawn) still ends in a clean exit 0.
  for (const signal of STOP_SIGNALS) process.on(signal, stop)
  process.on('SIGHUP', () => {
    // Said, not silently dropped: an operator who sent it would wonder whether it arrived.
    if (firstStop !== undefined) {
      if (app === undefined) process.stderr.write('pyfleet: SIGHUP ignored: the server is stopping\n')
      else app.log.warn('SIGHUP ignored: the server is shutting down')
      return
    }
    if (app === undefined) { process.stderr.write('pyfleet: SIGHUP during start-up ignored: nothing is serving yet to reload; send it again once the server listens\n'); return }
    reloadWorkers(app, 'SIGHUP').catch(() => { /* logged by reloadWorkers */ })
  })
  early.stopRemembering()
  // A stop that came while the code was still loading: nothing has started, nothing to drain.
  const earlyStop = early.received.find((signal) => STOP_SIGNALS.includes(signal))
  if (earlyStop !== undefined) {
    process.stderr.write(`pyfleet: ${earlyStop} before start-up: exiting\n`)
    process.exit(0)
  }
  // Said as one a moment later is (it was dropped without a word).
  if (early.received.includes('SIGHUP')) process.stderr.write('pyfleet: SIGHUP during start-up ignored: nothing is serving yet to reload; send it again once the server listens\n')

  try {
    const host = await listenAddress(config.host)
    // Tried before the workers start (their imports may take a minute), and again for real after.
    await canListen(host, config.port)
    if (config.probePort !== undefined) await canListen(host, config.probePort).catch((error: unknown) => { throw probePortError(error, host, config.probePort as number) })
    app = await buildApp(config, { startSignal: starting.signal })
    // Probes first: a PROBE_PORT in use fails the start before any client is served.
    if (firstStop === undefined && config.probePort !== undefined) probes = await probesOn(app, host, config.probePort)
    if (firstStop === undefined) await app.listen({ host, port: config.port, listenTextResolver: listeningText(app.server.maxConnections) })
    const unreachable = await loopbackInContainer(config.host)
    if (unreachable !== undefined) app.log.warn({ host: config.host }, unreachable)
  } catch (error) {
    if (firstStop !== undefined) {
      process.stderr.write('pyfleet: stopped during start-up\n')
      process.exit(0)
    }
    return await exitWithStartErrorAfterLogs(error, config)
  }
  if (firstStop !== undefined) {
    app.log.info('stopped during start-up')
    close(app)
  }
}

// Run as `node dist/main.js`, this module would define main() and exit 0 with nothing
// started, not a word said (a reviewer lost time to it): the entry point is server.js,
// which catches signals before it loads this.
// Compared by real path: `node dist/main` and a symlink to it run it too (a review).
const entry = process.argv[1]
if (entry !== undefined && await realpath(entry).catch(async () => await realpath(`${entry}.js`)).then((path) => pathToFileURL(path).href === import.meta.url, () => false)) {
  fatal('dist/main.js is not the entry point: start the server with node dist/server.js (or npm start)')
}
