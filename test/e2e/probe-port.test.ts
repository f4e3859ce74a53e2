// PROBE_PORT: probes and scrapes on a port of their own, answered by the same routes,
// beyond MAX_CONNECTIONS' reach, through the shutdown's drain, closed at exit.

import t from 'tap'
import { createServer, connect, type Socket } from 'node:net'
import { callTask, startServerProcess, waitFor } from '../helpers/server.js'
import { rawExchange } from '../helpers/raw-http.js'

/** The probe port the server said it listens on. */
function probePortOf (output: string): number {
  const port = /probes and scrapes also answered at port (\d+) \(PROBE_PORT\)/.exec(output)?.[1]
  if (port === undefined) throw new Error(`no PROBE_PORT line in the output:\n${output}`)
  return Number(port)
}

async function get (port: number, path: string, method = 'GET'): Promise<string> {
  return await rawExchange(`http://127.0.0.1:${port}`, `${method} ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`)
}

/** The error connecting to the port ends in, or 'connected'. */
async function connectError (port: number): Promise<string> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (error: NodeJS.ErrnoException) => { resolve(error.code ?? error.message) })
  })
}

/** An idle connection to the server's main port, kept open (it holds one of MAX_CONNECTIONS' places). */
async function idleConnection (url: string): Promise<Socket> {
  const { hostname, port } = new URL(url)
  return await new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => { resolve(socket) })
    socket.once('error', reject)
  })
}

t.test('the probe routes answer on PROBE_PORT as on PORT, and nothing else does', async (t) => {
  const server = await startServerProcess(t, { PROBE_PORT: '0', POOL_SIZE: '1' })
  const port = probePortOf(server.output())
  t.not(String(port), new URL(server.url).port)
  for (const path of ['/health', '/ready', '/metrics', '/api/queue-stats', '/ready?verbose=1']) {
    t.match(await get(port, path), /^HTTP\/1\.1 200 /, `GET ${path}`)
  }
  t.match(await get(port, '/health', 'HEAD'), /^HTTP\/1\.1 200 /, 'HEAD /health')
  t.match(await get(port, '/ready'), /\r\nx-request-id: [0-9a-f-]{36}\r\n[\s\S]*"status":"ready"/, 'the same route: its header and its answer')
  const refused = await get(port, '/api/tasks')
  t.match(refused, /^HTTP\/1\.1 404 /)
  t.match(refused, /"code":"FST_ERR_NOT_FOUND".*"message":"PROBE_PORT serves GET \/health, \/ready, \/metrics, \/api\/queue-stats only; every route, these included, is on PORT"/)
  const post = await rawExchange(`http://127.0.0.1:${port}`, 'POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}')
  t.match(post, /^HTTP\/1\.1 404 /, 'no task is run there')
  const wrongMethod = await get(port, '/metrics', 'POST')
  t.match(wrongMethod, /^HTTP\/1\.1 405 /, 'a probe path with another method than GET or HEAD')
  t.match(wrongMethod, /\r\nallow: GET, HEAD\r\n[\s\S]*"code":"METHOD_NOT_ALLOWED"/)
  // Counted as the main port's requests are, under their route.
  const metrics = await get(port, '/metrics')
  t.match(metrics, /http_request_duration_seconds_count\{method="GET",route="\/health",status_code="200"\} [1-9]/)
  // The refusals reach no route: counted apart, the two 404s and the 405 above.
  t.match(metrics, /\npyfleet_probe_port_refused_total\{reason="not_served"\} 3\n/)
  t.match(metrics, /\npyfleet_probe_port_refused_total\{reason="at_cap"\} 0\n/)
})

t.test('at MAX_CONNECTIONS the main port closes new connections, and probes on PROBE_PORT still answer', async (t) => {
  const server = await startServerProcess(t, { PROBE_PORT: '0', POOL_SIZE: '1', MAX_CONNECTIONS: '2' })
  const port = probePortOf(server.output())
  const held = [await idleConnection(server.url), await idleConnection(server.url)]
  t.teardown(() => { for (const socket of held) socket.destroy() })
  await waitFor(async () => /\npyfleet_http_connections 2\n/.test(await get(port, '/metrics')), 10_000, 'both connections counted')
  // The main port is full: Node closes a third connection unanswered.
  t.equal(await rawExchange(server.url, 'GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), '', 'a probe on PORT gets no answer')
  t.match(await get(port, '/health'), /^HTTP\/1\.1 200 /, 'on PROBE_PORT it does')
  t.match(await get(port, '/metrics'), /\npyfleet_http_connections_dropped_total 1\n/, 'and the scrape there shows the dropped one')
})

t.test('connections that send nothing cannot hold PROBE_PORT\'s places: closed within seconds, and a probe then answers', async (t) => {
  const server = await startServerProcess(t, { PROBE_PORT: '0', POOL_SIZE: '1' })
  const port = probePortOf(server.output())
  const probeUrl = `http://127.0.0.1:${port}`
  // Its cap is 64: every place taken by a client that sends nothing.
  const idle = await Promise.all(Array.from({ length: 64 }, async () => await idleConnection(probeUrl)))
  t.teardown(() => { for (const socket of idle) socket.destroy() })
  const closed = idle.map(async (socket) => await new Promise((resolve) => { if (socket.destroyed) resolve(true); else socket.once('close', resolve) }))
  // Node checked its 5 s limit on headers only every 30 s: a review saw probes unanswered for 30 s.
  await waitFor(async () => (await get(port, '/health')).startsWith('HTTP/1.1 200 '), 20_000, 'a probe to be answered again')
  await Promise.all(closed)
  t.pass('the idle connections were closed by the server, and the probe answered')
  // Counted: a probe port held full is what an operator must hear of.
  const metrics = await get(port, '/metrics')
  const count = (reason: string): number => Number(new RegExp(`\\npyfleet_probe_port_refused_total\\{reason="${reason}"\\} (\\d+)\\n`).exec(metrics)?.[1])
  // (Node's own check of the headers' timeout may close a few first, with a 408 of its own.)
  t.ok(count('silent') > 0 && count('silent') <= 64, `silent connections closed: ${count('silent')}`)
  t.ok(count('at_cap') >= 1, `the probes turned away at the cap meanwhile: ${count('at_cap')}`)
  // HTTP/1.1 without Host: the app's answer in the error shape, as on PORT, not Node's empty 400.
  const hostless = await rawExchange(probeUrl, 'GET /health HTTP/1.1\r\n\r\n')
  t.match(hostless, /^HTTP\/1\.1 400 [\s\S]*\r\nx-request-id: [\s\S]*"code":"MISSING_HOST_HEADER"/)
})

t.test('a client that pipelines scrapes and reads none of the answers is closed once nothing has moved for 10 s, and counted', async (t) => {
  const server = await startServerProcess(t, { PROBE_PORT: '0', POOL_SIZE: '1' })
  const port = probePortOf(server.output())
  // 2,000 scrapes in one write (~70 KB answers each): far more than the kernel's buffers hold.
  const socket = connect({ port, host: '127.0.0.1' })
  t.teardown(() => { socket.destroy() })
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.pause()
  socket.write('GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n'.repeat(2000))
  t.ok((await get(port, '/health')).startsWith('HTTP/1.1 200 '), 'a probe is answered meanwhile')
  // (The client, paused, sees the close only once it reads what came before it: the count says it.)
  await waitFor(async () => /\npyfleet_probe_port_refused_total\{reason="stalled"\} 1\n/.test(await get(port, '/metrics')), 30_000, 'the connection to be closed as stalled')
  t.pass('the server closed the connection nobody read, and counted it')
})

t.test('through a shutdown: /ready turns 503 on PROBE_PORT while admitted calls finish, and the port closes at exit', async (t) => {
  const server = await startServerProcess(t, { PROBE_PORT: '0', POOL_SIZE: '1' })
  const port = probePortOf(server.output())
  const running = callTask(server.url, 'diag.work', { sleep_ms: 2000 })
  await waitFor(async () => /"borrowed":1/.test(await get(port, '/api/queue-stats')), 10_000, 'the call to run')
  server.child.kill('SIGTERM')
  await waitFor(async () => /^HTTP\/1\.1 503 [\s\S]*"status":"draining"/.test(await get(port, '/ready')), 10_000, '/ready to say draining')
  t.match(await get(port, '/health'), /^HTTP\/1\.1 200 /, 'still live while it drains')
  t.equal((await running).status, 200, 'the admitted call finished')
  t.equal((await server.exited).code, 0)
  t.equal(await connectError(port), 'ECONNREFUSED', 'closed at exit')
})

t.test('a PROBE_PORT in use fails the start with one line, before the main port listens', async (t) => {
  const taken = createServer()
  await new Promise<void>((resolve) => { taken.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { taken.close() })
  const port = (taken.address() as { port: number }).port
  const server = await startServerProcess(t, { PROBE_PORT: String(port), POOL_SIZE: '1' })
  const { code } = await server.exited
  t.equal(code, 1)
  t.match(server.output(), new RegExp(`pyfleet: could not listen on PROBE_PORT ${port} \\(HOST 127\\.0\\.0\\.1\\): it is in use: stop the other server or choose another PROBE_PORT\\n`))
  t.notMatch(server.output(), /Server listening/)
})
