// Process entry. It catches signals before anything else is loaded, then loads
// the server (main.ts) with a dynamic import. Loading Fastify and the rest takes
// ~150 ms; with static imports, a SIGTERM in that window (a pod deleted as it
// starts) met Node's default action and ended the process with 143 instead of a
// clean 0, and a SIGHUP killed it. So only node: built-ins may be imported here.

import { url } from 'node:inspector'

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

const { main } = await import('./main.js')
await main({
  received,
  stopRemembering: () => { for (const signal of SIGNALS) process.off(signal, remember) }
})
