// MAX_CONNECTIONS on a real server and real sockets: a connection past the cap is
// closed unanswered while the open ones are served, a freed place is taken by the
// next, every drop is counted (read from a scrape) and the log says so at most once
// a second, and a drain at the cap still ends with every admitted call answered.
// Under a low open-file limit (server processes started under `ulimit -n`), the cap is
// lowered to what the limit leaves, and a flood that would end the process is dropped.

import { readFile } from 'node:fs/promises'
import t from 'tap'
import { reservedFiles } from '../../src/open-file-limit.js'
import { holdConnection, rawExchange, type HeldConnection } from '../helpers/raw-http.js'
import { callTask, startServer, startServerProcess, waitFor, type ServerProcess, type TestServer } from '../helpers/server.js'

const READY = 'GET /ready HTTP/1.1\r\nhost: x\r\n\r\n'
const HEALTH = 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n'
const SCRAPE = 'GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n'
const QUEUE_STATS = 'GET /api/queue-stats HTTP/1.1\r\nhost: x\r\n\r\n'
const ECHO = 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}'

function sample (scrape: string, name: string): number {
  const line = scrape.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1))
}

const dropped = (scrape: string): number => sample(scrape, 'pyfleet_http_connections_dropped_total')

/** A connection the server has accepted and answered once (so Node counts it); closed at teardown. */
async function servedConnection (t: { teardown: (fn: () => unknown) => void }, server: { url: string }): Promise<HeldConnection> {
  const connection = holdConnection(server.url)
  t.teardown(connection.destroy)
  const answer = await connection.request(READY)
  if (!answer.startsWith('HTTP/1.1 200 ')) throw new Error(`a connection under the cap was not served: ${JSON.stringify(answer.slice(0, 100))}`)
  return connection
}

async function openConnections (server: TestServer): Promise<number> {
  return await new Promise((resolve, reject) => {
    server.app.server.getConnections((error, count) => { if (error !== null) reject(error); else resolve(count) })
  })
}

const dropLines = (server: TestServer): Array<Record<string, any>> => server.logs.filter((line) => typeof line.dropped === 'number')

/** A server process's JSON log lines so far (a line still being written is left out). */
function processLogs (server: ServerProcess): Array<Record<string, any>> {
  const lines: Array<Record<string, any>> = []
  for (const text of server.output().split('\n')) {
    try { lines.push(JSON.parse(text)) } catch { /* not JSON, or not whole yet */ }
  }
  return lines
}

/** The start's warning that the open-file limit lowered the cap, if any. */
const capWarning = (logs: Array<Record<string, any>>): Record<string, any> | undefined => logs.find((line) => line.openFileLimit !== undefined)

/** This process's soft limit on open files, read here independently of the code under test. */
async function ownOpenFileLimit (): Promise<number> {
  const soft = /^Max open files\s+(\d+)/m.exec(await readFile('/proc/self/limits', 'utf8'))?.[1]
  if (soft === undefined) throw new Error('no numeric "Max open files" in /proc/self/limits')
  return Number(soft)
}

t.test('with MAX_CONNECTIONS=2 a third connection is closed unanswered while the two open ones are served; once one closes, a new one is served', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', MAX_CONNECTIONS: '2' })
  t.equal(capWarning(server.logs), undefined, 'a cap the open-file limit has room for is kept as it is, without a warning')
  const first = await servedConnection(t, server)
  const second = await servedConnection(t, server)

  const third = holdConnection(server.url)
  t.teardown(third.destroy)
  t.equal(await third.request(READY), '', 'the third connection is closed without an answer')

  t.match(await first.request(READY), /^HTTP\/1\.1 200 /, 'the first connection is still served')
  t.match(await second.request('POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}'),
    /^HTTP\/1\.1 200 [^]*\r\n\r\n\{"a":1\}$/, 'and so is the second, with a task call')
  const scrape = await first.request(SCRAPE)
  t.equal(dropped(scrape), 1, 'the drop is counted')
  t.equal(sample(scrape, 'pyfleet_http_connections'), 2, 'and the two open connections are in pyfleet_http_connections')
  await waitFor(() => dropLines(server).length === 1, 5000, 'the log line')
  t.match(dropLines(server)[0], { level: 40, dropped: 1, maxConnections: 2, lastRemoteAddress: /127\.0\.0\.1/, msg: 'closed a new connection unanswered: 2 connections were open (MAX_CONNECTIONS)' })

  second.destroy()
  await waitFor(async () => await openConnections(server) === 1, 5000, 'the server to see the second connection closed')
  const fourth = holdConnection(server.url)
  t.teardown(fourth.destroy)
  t.match(await fourth.request(READY), /^HTTP\/1\.1 200 /, 'a new connection takes the freed place')
  t.equal(dropped(await fourth.request(SCRAPE)), 1, 'and is not counted as dropped')
})

t.test('connections that never send a byte do not hold MAX_CONNECTIONS\' places for ever: closed once a request\'s headers would have had to arrive', async (t) => {
  // REQUEST_BODY_TIMEOUT_MS=2000: headers get min(60 s, 2 s), and Node looks every 200 ms.
  const server = await startServerProcess(t, { POOL_SIZE: '1', MAX_CONNECTIONS: '2', REQUEST_BODY_TIMEOUT_MS: '2000', PROBE_PORT: '0' })
  // Scraped on PROBE_PORT, which the cap does not count.
  const probePort = /probes and scrapes also answered at port (\d+)/.exec(server.output())?.[1] as string
  const openNow = async (): Promise<number> => sample(await rawExchange(`http://127.0.0.1:${probePort}`, SCRAPE.replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n')), 'pyfleet_http_connections')
  await waitFor(async () => await openNow() === 0, 10_000, 'the start\'s own connections gone')
  // The client's own limit far past the server's: only the server can close them in time.
  const silent = [holdConnection(server.url, { timeoutMs: 120_000 }), holdConnection(server.url, { timeoutMs: 120_000 })]
  t.teardown(() => { for (const connection of silent) connection.destroy() })
  await waitFor(async () => await openNow() === 2, 10_000, 'both silent connections accepted')
  // Held for ever before: the server then answered nobody (a review, with probes).
  let closedBoth = false
  void Promise.all(silent.map(async (connection) => await connection.closed)).then(() => { closedBoth = true })
  await waitFor(() => closedBoth, 30_000, 'the server to close both silent connections')
  const after = holdConnection(server.url)
  t.teardown(after.destroy)
  t.match(await after.request(READY), /^HTTP\/1\.1 200 /, 'a new connection is served')
  // A connection that has sent its request is not closed by it, however long its call takes.
  const slow = await callTask(server.url, 'diag.work', { sleep_ms: 3000 })
  t.equal(slow.status, 200)
})

t.test('a flood of connections past the cap: every one is counted, and logged in lines at least about a second apart', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', MAX_CONNECTIONS: '1' })
  const held = await servedConnection(t, server)
  const flood = Array.from({ length: 20 }, () => holdConnection(server.url))
  for (const connection of flood) t.teardown(connection.destroy)
  const answers = await Promise.all(flood.map(async (connection) => await connection.request(READY)))
  t.same(new Set(answers), new Set(['']), 'none is answered')
  t.equal(dropped(await held.request(SCRAPE)), 20, 'every drop is counted')
  // The drops after the first are logged together when its second is up.
  const logged = (): number => dropLines(server).reduce((sum, line) => sum + (line.dropped as number), 0)
  await waitFor(() => logged() === 20, 5000, 'every drop in the log')
  const lines = dropLines(server)
  t.ok(lines.length < 20, `${lines.length} lines for 20 drops`)
  for (let i = 1; i < lines.length; i++) {
    // pino's time is Date.now(); the window is a 1 s timer, which starts from the event loop's cached clock.
    t.ok(lines[i].time - lines[i - 1].time >= 500, `line ${i + 1} comes ${lines[i].time - lines[i - 1].time} ms after the one before`)
  }
  t.match(lines.at(-1), { level: 40, maxConnections: 1, msg: /^closed (a new connection|\d+ new connections) unanswered: 1 connection was open \(MAX_CONNECTIONS\)$/ })
})

t.test('at the cap during a drain: the admitted call is answered, a new connection is dropped and counted, and the close ends', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', MAX_CONNECTIONS: '2', SHUTDOWN_GRACE_MS: '10000' })
  const idle = await servedConnection(t, server)
  const busy = holdConnection(server.url)
  t.teardown(busy.destroy)
  const body = '{"sleep_ms":3000}'
  const running = busy.request(`POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the call to run')
  const closing = server.close()
  await waitFor(() => server.app.pool.isDraining, 2000, 'the drain to begin')
  const late = holdConnection(server.url)
  t.teardown(late.destroy)
  t.equal(await late.request(READY), '', 'a connection past the cap is closed unanswered during the drain too')
  const answer = await running
  t.match(answer, /^HTTP\/1\.1 200 [^]*\r\nconnection: close\r\n/i, 'the admitted call is answered, closing its connection')
  await closing
  await idle.closed
  t.equal(dropped(await server.app.metrics.registry.metrics()), 1, 'the drop is counted')
  // Not a call: a connection never admitted is not in pyworker_calls_total.
  t.same((await server.app.metrics.counts()).calls, { ok: 1, rejected: 0, failed: 0, timeout: 0, worker_died: 0, queue_full: 0, queue_timeout: 0, cancelled: 0 })
})

t.test('MAX_CONNECTIONS=0 (no cap of its own) is capped at what the open-file limit leaves, with a warning that says so', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', MAX_CONNECTIONS: '0' })
  // The app runs in this process: its limit is this process's.
  const limit = await ownOpenFileLimit()
  const cap = limit - reservedFiles(1)
  t.equal(server.app.server.maxConnections, cap, 'Node\'s cap is the limit less the files kept for the server')
  t.match(capWarning(server.logs), {
    level: 40,
    configured: 0,
    maxConnections: cap,
    openFileLimit: limit,
    reservedFiles: reservedFiles(1),
    msg: `MAX_CONNECTIONS=0 (no cap of its own) is capped by the open-file limit: at most ${cap} connections will be open at once. The limit is ${limit} open files, and ${reservedFiles(1)} are kept for the server itself and its 1 worker (Node exits when it runs out of files). For more, raise the limit (ulimit -n, or the container's nofile limit); to choose the cap yourself, set MAX_CONNECTIONS to ${cap} or less.`
  })
  const held = await Promise.all(Array.from({ length: 3 }, async () => await servedConnection(t, server)))
  const scrape = await held[0].request(SCRAPE)
  t.equal(dropped(scrape), 0)
  t.equal(sample(scrape, 'pyfleet_http_connections_max'), cap, 'the cap in effect is a gauge')
  t.equal((await callTask(server.url, 'echo', 1)).status, 200)
})

t.test('under an open-file limit of 200 the cap is lowered to what the limit leaves: a flood past it is dropped and counted, and the server stays up and serves', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1' }, { openFileLimit: 200 })
  const cap = 200 - reservedFiles(1)
  t.match(capWarning(processLogs(server)), {
    level: 40,
    configured: 10000,
    maxConnections: cap,
    openFileLimit: 200,
    reservedFiles: reservedFiles(1),
    msg: `MAX_CONNECTIONS=10000 is more than the open-file limit leaves room for: at most ${cap} connections will be open at once. The limit is 200 open files, and ${reservedFiles(1)} are kept for the server itself and its 1 worker (Node exits when it runs out of files). Raise the limit (ulimit -n, or the container's nofile limit) to at least ${10000 + reservedFiles(1)}, or set MAX_CONNECTIONS to ${cap} or less.`
  }, 'one warning at start, with the figures')
  t.match(server.output(), new RegExp(`"msg":"Server listening at http://127\\.0\\.0\\.1:\\d+ \\(at most ${cap} open connections\\)"`), 'the start line says the cap in effect')

  const held = await servedConnection(t, server)
  // Without the cap, these would take the process past its 200 files.
  const flood = Array.from({ length: 300 }, () => holdConnection(server.url))
  for (const connection of flood) t.teardown(connection.destroy)
  const answers = await Promise.all(flood.map(async (connection) => await connection.request(READY)))
  const unanswered = answers.filter((answer) => answer === '').length
  t.equal(answers.filter((answer) => answer.startsWith('HTTP/1.1 200 ')).length, cap - 1, 'the flood fills the places the held connection leaves')
  t.equal(unanswered, 300 - (cap - 1), 'and the rest are closed unanswered')
  const scrape = await held.request(SCRAPE)
  t.equal(dropped(scrape), unanswered, 'every drop is counted')
  t.equal(sample(scrape, 'pyfleet_http_connections_max'), cap, 'the cap in effect is a gauge')
  // The drops after the first are logged together a second later: meanwhile, with the cap's
  // connections open, under-pressure has read the process's memory (every second), which
  // at the open-file limit throws EMFILE and ends the process.
  const loggedDrops = (): number => processLogs(server).filter((line) => typeof line.dropped === 'number').reduce((sum, line) => sum + (line.dropped as number), 0)
  await waitFor(() => loggedDrops() === unanswered, 10_000, 'every drop in the log')
  t.match(processLogs(server).filter((line) => typeof line.dropped === 'number').at(-1), {
    maxConnections: cap,
    msg: new RegExp(`connections were open \\(the most the open-file limit of 200 leaves room for; MAX_CONNECTIONS=10000\\)$`)
  })
  t.match(await held.request(HEALTH), /^HTTP\/1\.1 200 /, '/health answers with the flood still open')
  t.match(await held.request(ECHO), /^HTTP\/1\.1 200 [^]*\r\n\r\n\{"a":1\}$/, 'and so does a task call')

  for (const connection of flood) connection.destroy()
  held.destroy()
  await waitFor(async () => (await fetch(`${server.url}/health`).then((r) => r.status, () => 0)) === 200, 10_000, 'a new connection to be served once the flood is gone')
  t.equal((await callTask(server.url, 'echo', { b: 2 })).status, 200, 'a task call on a new connection')
  t.equal(server.child.exitCode, null, 'the server is still running')
})

t.test('connections within the cap that ask for /api/queue-stats at once hold one /proc file per worker between them, not one per request', async (t) => {
  // Each request reads every worker's RSS from /proc. 100 connections asking at once held
  // 400 files with four workers, and under-pressure found none free: the process exited.
  const server = await startServerProcess(t, { POOL_SIZE: '4' }, { openFileLimit: 200 })
  t.equal(capWarning(processLogs(server))?.maxConnections, 200 - reservedFiles(4))
  const connections = await Promise.all(Array.from({ length: 100 }, async () => await servedConnection(t, server)))
  let answered = 0
  // 100 at once, over and over: the 400 files were held by one round already.
  const target = 5_000
  await Promise.all(connections.map(async (connection) => {
    while (answered < target) {
      if (!(await connection.request(QUEUE_STATS)).startsWith('HTTP/1.1 200 ')) return
      answered++
    }
  }))
  t.ok(answered >= target, `${answered} answers`)
  t.match(await connections[0].request(HEALTH), /^HTTP\/1\.1 200 /, '/health answers')
  t.match(await connections[1].request(ECHO), /^HTTP\/1\.1 200 [^]*\r\n\r\n\{"a":1\}$/, 'and so does a task call')
  t.equal(server.child.exitCode, null, 'the server is still running')
})

t.test('an open-file limit that leaves no room past the server\'s own files: it starts anyway, one connection at a time, with a warning', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1' }, { openFileLimit: 64 })
  t.match(capWarning(processLogs(server)), {
    configured: 10000,
    maxConnections: 1,
    openFileLimit: 64,
    msg: /at most 1 connection will be open at once[^]* With 1, health probes and scrapes compete with clients for a place \(PROBE_PORT gives them a port of their own\)\.$/
  })
  const held = await servedConnection(t, server)
  const second = holdConnection(server.url)
  t.teardown(second.destroy)
  t.equal(await second.request(READY), '', 'a second connection is closed unanswered')
  t.match(await held.request(ECHO), /^HTTP\/1\.1 200 [^]*\{"a":1\}$/, 'the first is served')
  t.equal(dropped(await held.request(SCRAPE)), 1)
})
