// Process entry. It catches signals before anything else is loaded, then loads
// the server (main.ts) with a dynamic import. Loading Fastify and the rest takes
// ~150 ms; with static imports, a SIGTERM in that window (a pod deleted as it
// starts) met Node's default action and ended the process with 143 instead of a
// clean 0, and a SIGHUP killed it. So only node: built-ins may be imported here.

import { url } from 'node:inspector'
import type { Command } from './cli.js'

// SIGUSR2 stops the server as SIGTERM does (main.ts): remembered from the start, as they are.
const SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGUSR2', 'SIGHUP']
const received: NodeJS.Signals[] = []
const remember = (signal: NodeJS.Signals): void => { received.push(signal) }
for (const signal of SIGNALS) process.on(signal, remember)

// SIGUSR1 would open Node's inspector on 127.0.0.1:9229 (Node's default action), where any
// local process could run code in the server: a task can send it (os.kill(os.getppid(), ...)).
// A listener of its own turns that off for good. To debug, start Node with --inspect instead.
// (Started with --inspect, the inspector is open already and the signal changes nothing: no advice then.)
process.on('SIGUSR1', () => {
  if (url() === undefined) process.stderr.write('pyfleet: SIGUSR1 ignored: a signal does not open the inspector here; start node with --inspect to debug\n')
})

// The command line first: --help, --version and a wrong argument are answered without
// loading the server (~0.15 s instead of ~0.45 s of CPU). cli.ts and version.ts import only
// node: built-ins.
const { commandFrom, USAGE } = await import('./cli.js')
let command: Command
try {
  command = commandFrom(process.argv.slice(2))
} catch (error) {
  process.stderr.write(`pyfleet: ${(error as Error).message}; --help lists the options\n`)
  process.exit(1)
}
if (command === 'help' || command === 'version') {
  process.stdout.write(command === 'help' ? USAGE : `pyfleet ${await (await import('./version.js')).version()}\n`)
  process.exit(0)
}

const { main } = await import('./main.js')
await main({
  command,
  received,
  stopRemembering: () => { for (const signal of SIGNALS) process.off(signal, remember) }
})
