// Process entry: configuration, buildApp, listen, signals. The only file with
// process-wide side effects (exit codes, signal handlers).

import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'
import { WorkerStartError } from './pool/python-worker.js'
import { reloadWorkers } from './routes/admin.js'

const EXIT_START_FAILED = 1

function fatal (message: string): never {
  process.stderr.write(`pyfleet: ${message}\n`)
  process.exit(EXIT_START_FAILED)
}

async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (error) {
    if (error instanceof ConfigError) fatal(`bad configuration: ${error.message}`)
    throw error
  }

  let app
  try {
    app = await buildApp(config)
    await app.listen({ host: config.host, port: config.port })
  } catch (error) {
    if (error instanceof ConfigError || error instanceof WorkerStartError) fatal(error.message)
    const err = error as NodeJS.ErrnoException
    if (err.code === 'EADDRINUSE') fatal(`port ${config.port} on ${config.host} is in use: stop the other server or set PORT`)
    fatal(`could not start: ${err.message}`)
  }

  let stopping = false
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      app.log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    app.log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: finishing admitted calls')
    // Backstop: drain is bounded by the grace periods; this catches anything that is not.
    setTimeout(() => {
      app.log.error('shutdown did not finish in time; exiting')
      process.exit(1)
    }, config.shutdownGraceMs + 2 * config.workerStopGraceMs + 5_000).unref()
    app.close().then(() => {
      app.log.info('stopped')
      process.exit(0)
    }, (error: Error) => {
      app.log.error({ err: error }, 'error while shutting down')
      process.exit(1)
    })
  }
  // Handlers only start work; what happens is the app's business.
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('SIGHUP', () => {
    if (stopping) return
    reloadWorkers(app, 'SIGHUP').catch(() => { /* logged by reloadWorkers */ })
  })
}

await main()
