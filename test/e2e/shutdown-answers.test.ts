// The real server process's answers around a SIGTERM: calls that come during the drain,
// answers still being written, bodies still arriving, pipelined requests, and a stdout
// nobody reads. (The drain of calls itself, and SHUTDOWN_DELAY_MS: shutdown.test.ts.)

import t from 'tap'
import { connect } from 'node:net'
import { callTask, startServerProcess, waitFor } from '../helpers/server.js'
import { serverEndOf } from '../helpers/kernel-sockets.js'

t.test('a stdout nobody reads does not keep a stopped server from exiting', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1' })
  // From here on nothing reads the server's stdout: the pipe fills, and lines wait behind it.
  server.child.stdout.pause()
  const before = server.output().length
  // A 6 KB line a task prints, logged, and the call's own line: 50 calls write about five
  // times what a pipe holds (64 KiB). (800 echo calls of ~330-byte lines took 14 s of CI.)
  const print = 'x'.repeat(6000)
  for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 10 }, async () => await callTask(server.url, 'diag.work', { print })))
  t.equal(server.output().length, before, 'nothing more was read')
  server.child.kill('SIGTERM')
  // Node's exit waited for a write(2) blocked on the full pipe, and pino's own write at exit
  // retried for ever: the process never ended. A bound, not a timing: once the drain is done,
  // it waits at most 5 s for a stdout that takes nothing (log-exit-flush.ts, EXIT_STALL_MS).
  const ended = await Promise.race([server.exited, new Promise<'still running'>((resolve) => setTimeout(() => { resolve('still running') }, 20_000))])
  t.same(ended, { code: 0, signal: null }, 'exit 0, with lines still unread')
  t.match(server.output(), /\npyfleet: \d+ bytes of log lines not written at exit: stdout took nothing for 5000 ms\n/, 'the pipe was full: the lines left behind are said on stderr')
})

t.test('new calls during shutdown are refused with 503, not lost in a hang', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1' })
  // Long enough that the late requests below arrive while the drain waits for it (idle
  // connections are closed only once it is over).
  const running = callTask(server.url, 'diag.work', { sleep_ms: 3000 })
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).pool.borrowed === 1, 5000, 'the call to run')
  // Connections opened before the drain (the listener stays open through it, but these show that
  // calls on connections already open are refused too, and their connections closed).
  const { connect } = await import('node:net')
  const open = async (): Promise<import('node:net').Socket> => await new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1', () => { resolve(socket) }).once('error', reject)
  })
  const [forCall, forBadJson] = await Promise.all([open(), open()])
  // Resolves when the server closes the connection, as every answer during the drain should;
  // one that keeps it open fails the match below after 10 s instead of hanging the test.
  const answerOn = async (socket: import('node:net').Socket, body: string): Promise<string> => await new Promise((resolve) => {
    let answer = ''
    socket.setTimeout(10_000, () => { socket.destroy() })
    socket.on('error', () => {})
    socket.setEncoding('utf8').on('data', (text: string) => { answer += text }).on('close', () => { resolve(answer) })
    socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  })
  server.child.kill('SIGTERM')
  await waitFor(() => /shutting down/.test(server.output()), 5000, 'the drain to begin')
  const late = await answerOn(forCall, '1')
  t.match(late, /^HTTP\/1\.1 503 /)
  t.match(late, /"code":"WORKERS_UNAVAILABLE"/)
  t.match(late, /\r\nconnection: close\r\n/i, 'and its connection closes, as every answer during the drain')
  // Every rollout refuses such calls: info, not a warning (a crash loop's 503 stays one).
  const lateId = /\r\nx-request-id: ([^\r]+)\r\n/i.exec(late)?.[1] ?? ''
  await waitFor(() => server.output().includes(`"requestId":"${lateId}"`), 5000, 'the refused call\'s line')
  t.match(server.output(), new RegExp(`"level":30,[^\n]*"requestId":"${lateId}"[^\n]*"statusCode":503`), 'its line is info')
  t.match(await answerOn(forBadJson, '{bad'), /^HTTP\/1\.1 400 [\s\S]*\r\nconnection: close\r\n/i, 'a body parser\'s error too, while draining')
  t.equal((await running).status, 200)
  t.equal((await server.exited).code, 0)
})

t.test('a client stalled mid-upload does not hold the shutdown: exit 0, not the backstop\'s exit 1; its request is logged', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '3000', WORKER_STOP_GRACE_MS: '500', LOG_LEVEL: 'info' })
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.write('POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\nx-request-id: stalled-upload\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n[1,')
  socket.on('error', () => {})
  await waitFor(async () => (await (await fetch(`${server.url}/metrics`)).text()).length > 0, 5000, 'the server to answer')
  server.child.kill('SIGTERM')
  const { code } = await server.exited
  t.equal(code, 0, server.output().split('\n').filter((l) => /did not finish|error/i.test(l)).join('\n'))
  const line = server.output().split('\n').find((l) => l.includes('"stalled-upload"'))
  t.match(JSON.parse(line ?? '{}'), { level: 30, msg: 'request not run: the server shut down while its body arrived', method: 'POST', url: '/api/tasks/echo' }, 'its only trace: no answer, no call')
})

t.test('an answer still being written to a slow reader at shutdown is not cut off', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '5000' })
  const body = JSON.stringify('x'.repeat(12_000_000)) // more than loopback's socket buffers hold
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.pause() // a client that does not read yet
  socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).tasks.completed === 1, 10_000, 'the call to be answered')
  server.child.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 2500)) // past the moment idle connections are closed
  const ended = new Promise((resolve) => socket.once('close', resolve))
  socket.resume()
  await ended
  const response = Buffer.concat(chunks).toString('latin1')
  const headerEnd = response.indexOf('\r\n\r\n')
  const length = Number(/content-length: (\d+)/i.exec(response.slice(0, headerEnd))?.[1])
  t.match(response, /^HTTP\/1\.1 200 /)
  t.equal(response.length - headerEnd - 4, length, 'the whole answer arrived')
  t.equal((await server.exited).code, 0)
})

t.test('an answer the shutdown gives up on when its grace runs out is logged as cut off, with what was left unsent', async (t) => {
  const { startServer } = await import('../helpers/server.js')
  const server = await startServer(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '300' })
  const body = JSON.stringify('x'.repeat(12_000_000)) // more than loopback's socket buffers hold
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  socket.pause() // never reads
  socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\nx-request-id: cut-off\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor(async () => (await server.app.metrics.counts()).calls.ok === 1, 60_000, 'the call to be answered') // a 12 MB echo: a guard, not a timing
  await server.close()
  const line = server.logs.find((l) => /answer was still being written when the shutdown's grace ran out/.test(l.msg ?? ''))
  t.match(line, { level: 40, requestId: 'cut-off' }, 'a warning naming the request')
  t.ok(line?.unsentBytes > 0, `with the bytes left unsent (${String(line?.unsentBytes)})`)
  // Reset, not closed: the answer's last megabytes would outlive the server in an orphaned socket.
  t.same(await serverEndOf(Number(new URL(server.url).port), socket.localPort as number), [], 'nothing left of the server\'s end in the kernel')
})

t.test('at shutdown, an idle connection whose client has not read an answer the kernel holds whole is reset, so the answer does not outlive the server', async (t) => {
  const { startServer } = await import('../helpers/server.js')
  const server = await startServer(t, { POOL_SIZE: '1' })
  const body = JSON.stringify('x'.repeat(1_000_000)) // the kernel's buffers take the whole answer: to Node, the connection is idle
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  socket.pause() // never reads
  socket.write(`POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor(async () => (await server.app.metrics.counts()).calls.ok === 1, 30_000, 'the call to be answered')
  await server.close()
  t.match(server.logs.find((l) => /^resetting a connection whose client had not read the end of its last answer when the server shut down/.test(l.msg ?? '')), { level: 40, unsentBytes: Number })
  t.same(await serverEndOf(Number(new URL(server.url).port), socket.localPort as number), [], 'nothing left of the server\'s end in the kernel')
})

t.test('requests pipelined on one connection when SIGTERM comes each get their answer, and the last one closes it', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '3' })
  const port = Number(new URL(server.url).port)
  /** A raw keep-alive connection: what it has been sent, and whether the server ended it (FIN) or reset it. */
  const open = (): { socket: import('node:net').Socket, answer: () => string, ended: Promise<string> } => {
    const socket = connect(port, '127.0.0.1')
    t.teardown(() => socket.destroy())
    let answer = ''
    socket.setEncoding('utf8').on('data', (text: string) => { answer += text })
    const ended = new Promise<string>((resolve) => {
      socket.once('end', () => { resolve('end') }).once('error', (error: NodeJS.ErrnoException) => { resolve(error.code ?? 'error') })
    })
    return { socket, answer: () => answer, ended }
  }
  const body = JSON.stringify({ sleep_ms: 600 })
  const request = `POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
  const pipelined = open()
  const single = open()
  pipelined.socket.write(request + request)
  single.socket.write(request)
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).pool.borrowed === 3, 5000, 'the three calls to run')
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
  const answers = pipelined.answer().split(/(?=HTTP\/1\.1 )/)
  t.same(answers.map((answer) => answer.slice(0, 13)), ['HTTP/1.1 200 ', 'HTTP/1.1 200 '], 'two answers on the pipelined connection')
  // Closing after the first would lose the second's answer, whose call ran.
  t.match(answers[0], /\r\nconnection: keep-alive\r\n/i, 'the first answer keeps the connection for the second')
  t.match(answers[1], /\r\nconnection: close\r\n/i, 'the last one asks the client to open a new connection')
  t.match(single.answer(), /^HTTP\/1\.1 200 [^]*\r\nconnection: close\r\n/i, 'a call in flight at SIGTERM is answered with connection: close')
  // An ordinary end, not a reset: the client knew the connection was finished before it closed.
  t.equal(await pipelined.ended, 'end')
  t.equal(await single.ended, 'end')
})
