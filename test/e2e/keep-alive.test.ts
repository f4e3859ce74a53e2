// KEEP_ALIVE_TIMEOUT_MS: how long an idle keep-alive connection stays open. A proxy or load
// balancer in front must close its idle connections first (README, "Behind a reverse proxy"),
// so the setting is raised above theirs: it must then be what closes an idle connection, not
// the limits on receiving a request (REQUEST_BODY_TIMEOUT_MS, Node's headers timeout).

import t from 'tap'
import { holdConnection } from '../helpers/raw-http.js'
import { startServer } from '../helpers/server.js'

const GET_HEALTH = 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n'

t.test('an idle keep-alive connection is closed once KEEP_ALIVE_TIMEOUT_MS has passed, and each answer says how long it may idle', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', KEEP_ALIVE_TIMEOUT_MS: '2000' })
  const connection = holdConnection(server.url)
  t.teardown(connection.destroy)
  const answer = await connection.request(GET_HEALTH)
  t.match(answer, /^HTTP\/1\.1 200 /)
  t.match(answer, /\r\nkeep-alive: timeout=2\r\n/i, 'the client is told, in seconds')
  const idleFrom = performance.now()
  await connection.closed
  const idleMs = performance.now() - idleFrom
  t.ok(idleMs >= 1_500, `closed by the server after ${Math.round(idleMs)} ms idle, not before the setting's 2 s`)
})

t.test('a keep-alive timeout longer than the request limits: the idle connection outlives them and serves its next request', async (t) => {
  // REQUEST_BODY_TIMEOUT_MS also bounds the headers (Node's headersTimeout): neither may close a
  // connection that is idle between requests, as a load balancer keeping 600 s needs.
  const server = await startServer(t, { POOL_SIZE: '1', KEEP_ALIVE_TIMEOUT_MS: '5000', REQUEST_BODY_TIMEOUT_MS: '1000' })
  const connection = holdConnection(server.url)
  t.teardown(connection.destroy)
  t.match(await connection.request(GET_HEALTH), /^HTTP\/1\.1 200 [^]*\r\nkeep-alive: timeout=5\r\n/i)
  let closedEarly = false
  void connection.closed.then(() => { closedEarly = true })
  await new Promise((resolve) => setTimeout(resolve, 2_500))
  t.notOk(closedEarly, 'still open after 2.5 s idle, past REQUEST_BODY_TIMEOUT_MS and its checks')
  t.match(await connection.request(GET_HEALTH), /^HTTP\/1\.1 200 /, 'and the same connection serves the next request')
})

t.test('by default an idle connection may stay 72 s (Fastify\'s default, above nginx\'s and AWS\'s 60 s)', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const connection = holdConnection(server.url)
  t.teardown(connection.destroy)
  t.match(await connection.request(GET_HEALTH), /\r\nkeep-alive: timeout=72\r\n/i)
})

t.test('the answer to a body that does not parse, which keeps the connection, says how long it may idle too', async (t) => {
  // pyfleet sets `connection` on these itself, and Node then wrote no keep-alive line.
  const server = await startServer(t, { POOL_SIZE: '1', KEEP_ALIVE_TIMEOUT_MS: '5000' })
  const connection = holdConnection(server.url)
  t.teardown(connection.destroy)
  const answer = await connection.request('POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 3\r\n\r\n{"a')
  t.match(answer, /^HTTP\/1\.1 400 [^]*\r\nconnection: keep-alive\r\n/i)
  t.match(answer, /\r\nkeep-alive: timeout=5\r\n/i)
  t.match(answer, /"code":"INVALID_INPUT"/)
  t.match(await connection.request(GET_HEALTH), /^HTTP\/1\.1 200 /, 'and the connection serves the next request')
})
