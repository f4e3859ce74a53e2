// MAX_CONNECTIONS on a real server and real sockets: a connection past the cap is
// closed unanswered while the open ones are served, a freed place is taken by the
// next, every drop is counted (read from a scrape) and the log says so at most once
// a second, and a drain at the cap still ends with every admitted call answered.

import t from 'tap'
import { holdConnection, type HeldConnection } from '../helpers/raw-http.js'
import { callTask, startServer, waitFor, type TestServer } from '../helpers/server.js'

const READY = 'GET /ready HTTP/1.1\r\nhost: x\r\n\r\n'
const SCRAPE = 'GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n'

function dropped (scrape: string): number {
  const line = scrape.split('\n').find((l) => l.startsWith('pyfleet_http_connections_dropped_total '))
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1))
}

/** A connection the server has accepted and answered once (so Node counts it); closed at teardown. */
async function servedConnection (t: { teardown: (fn: () => unknown) => void }, server: TestServer): Promise<HeldConnection> {
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

t.test('with MAX_CONNECTIONS=2 a third connection is closed unanswered while the two open ones are served; once one closes, a new one is served', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', MAX_CONNECTIONS: '2' })
  const first = await servedConnection(t, server)
  const second = await servedConnection(t, server)

  const third = holdConnection(server.url)
  t.teardown(third.destroy)
  t.equal(await third.request(READY), '', 'the third connection is closed without an answer')

  t.match(await first.request(READY), /^HTTP\/1\.1 200 /, 'the first connection is still served')
  t.match(await second.request('POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}'),
    /^HTTP\/1\.1 200 [^]*\r\n\r\n\{"a":1\}$/, 'and so is the second, with a task call')
  t.equal(dropped(await first.request(SCRAPE)), 1, 'the drop is counted')
  await waitFor(() => dropLines(server).length === 1, 5000, 'the log line')
  t.match(dropLines(server)[0], { level: 40, dropped: 1, maxConnections: 2, lastRemoteAddress: /127\.0\.0\.1/, msg: 'closed a new connection unanswered: 2 connections were open (MAX_CONNECTIONS)' })

  second.destroy()
  await waitFor(async () => await openConnections(server) === 1, 5000, 'the server to see the second connection closed')
  const fourth = holdConnection(server.url)
  t.teardown(fourth.destroy)
  t.match(await fourth.request(READY), /^HTTP\/1\.1 200 /, 'a new connection takes the freed place')
  t.equal(dropped(await fourth.request(SCRAPE)), 1, 'and is not counted as dropped')
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
  t.match(lines.at(-1), { level: 40, maxConnections: 1, msg: /^closed (a new connection|\d+ new connections) unanswered: 1 connections were open \(MAX_CONNECTIONS\)$/ })
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

t.test('without a cap (MAX_CONNECTIONS=0) Node caps nothing and nothing is dropped', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', MAX_CONNECTIONS: '0' })
  t.equal(server.app.server.maxConnections, undefined, 'the property is left unset: Node 21+ would read 0 as "drop every connection"')
  const held = await Promise.all(Array.from({ length: 3 }, async () => await servedConnection(t, server)))
  t.equal(dropped(await held[0].request(SCRAPE)), 0)
  t.equal((await callTask(server.url, 'echo', 1)).status, 200)
})
