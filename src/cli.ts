// The server's command line. Everything is configured by environment variables
// (config.ts); the command line only chooses what to do: serve (no argument),
// check the configuration and the task modules, or tell how. An argument it does
// not know stops it: `--port 8080` must not start a server on 5000 instead.

export type Command = 'serve' | 'check' | 'help' | 'version'

export const USAGE = `Usage: node dist/server.js [--check | --help | --version]   (or: npm start -- [option])

Serves pyfleet: HTTP on HOST:PORT, and POOL_SIZE Python workers running the tasks
of TASK_MODULES. It is configured by environment variables only (README, "Configuration").

  (no option)   serve until SIGTERM, SIGINT or SIGUSR2 (drain, then exit 0); SIGHUP reloads the workers
  --check       check the configuration, start the workers once (so every task module is
                imported and every schema compiled), print the task table, stop; exit 0
                if all is well, 1 with the reason otherwise. Serves nothing.
  --help        print this
  --version     print pyfleet's version
`

const FLAGS: Readonly<Record<string, Command>> = { '--check': 'check', '--help': 'help', '-h': 'help', '--version': 'version' }

/** What the command line asks for; throws an Error naming the argument it does not take. */
export function commandFrom (args: readonly string[]): Command {
  if (args.length === 0) return 'serve'
  const unknown = args.find((arg) => !Object.hasOwn(FLAGS, arg))
  if (unknown !== undefined) {
    throw new Error(`unknown argument ${JSON.stringify(unknown)}: pyfleet is configured by environment variables (PORT=8080, not --port 8080)`)
  }
  if (args.length > 1) throw new Error(`one option at a time: ${args.join(' ')}`)
  return FLAGS[args[0]]
}
