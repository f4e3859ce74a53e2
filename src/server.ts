// Process entry. It catches signals before anything else is loaded, then loads
// the server (main.ts) with a dynamic import. Loading Fastify and the rest takes
// ~150 ms; with static imports, a SIGTERM in that window (a pod deleted as it
// starts) met Node's default action and ended the process with 143 instead of a
// clean 0, and a SIGHUP killed it. So only node: built-ins may be imported here.

const SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP']
const received: NodeJS.Signals[] = []
const remember = (signal: NodeJS.Signals): void => { received.push(signal) }
for (const signal of SIGNALS) process.on(signal, remember)

const { main } = await import('./main.js')
await main({
  received,
  stopRemembering: () => { for (const signal of SIGNALS) process.off(signal, remember) }
})
