// The real server process and signals: SIGTERM drains admitted calls and exits 0,
// SIGHUP reloads, and kill -9 of Node takes every worker with it.

import t from 'tap'
import { connect } from 'node:net'
import { readFile } from 'node:fs/promises'
import { spawn, type ChildProcess } from 'node:child_process'
import { callTask, childPythonPids, isRunning, killIfStill, listeningUrl, ROOT, startServerProcess, startTimeOf, waitFor } from '../helpers/server.js'

t.test('SIGTERM with 20 calls in flight: all 20 return 200, exit 0, no Python left', async (t) => {
  const server = await startServerProcess(t, { SHUTDOWN_GRACE_MS: '10000' })
  const pids = await childPythonPids(server.child.pid as number)
  t.equal(pids.length, 4, 'four workers')
  const calls = Array.from({ length: 20 }, async () => await callTask(server.url, 'diag.work', { sleep_ms: 300 }))
  // 4 running and 16 queued: wait until the server has admitted them all.
  await waitFor(async () => {
    const stats = await (await fetch(`${server.url}/api/queue-stats`)).json()
    return stats.pool.borrowed === 4 && stats.queue.waiting === 16
  }, 5000, 'all 20 calls admitted')
  server.child.kill('SIGTERM')
  await waitFor(async () => (await fetch(`${server.url}/ready`).then((r) => r.status, () => 0)) !== 200, 2000, '/ready to turn 503')
  const replies = await Promise.all(calls)
  t.same(replies.map((r) => r.status), Array(20).fill(200), 'every admitted call finished')
  const { code } = await server.exited
  t.equal(code, 0)
  for (const pid of pids) t.notOk(await isRunning(pid), `worker ${pid} is gone`)
})

t.test('the shutdown\'s log ends with "stopped", after every worker\'s exit', async (t) => {
  // process.exit() made pino flush its queue ahead of a write still in flight, and "stopped"
  // came out before the "worker exited" logged before it: in two shutdowns out of three from a
  // shell, but only about one in twelve under this test (a race: the rounds are what catch it).
  for (let round = 1; round <= 5; round++) {
    const server = await startServerProcess(t, { POOL_SIZE: '1' })
    server.child.kill('SIGTERM')
    t.equal((await server.exited).code, 0)
    const messages = server.output().trim().split('\n').map((line) => JSON.parse(line).msg as string)
    t.same(messages.slice(-2), ['worker exited', 'stopped'], `round ${round}: the worker's exit, then "stopped", last`)
  }
})

/**
 * README's `npm start`, in a process group of its own (as in a terminal). --ignore-scripts
 * skips prestart's build: the suite has built already.
 */
async function startWithNpm (t: { teardown: (fn: () => unknown) => void }): Promise<{ npm: ChildProcess, url: string, serverPid: number, output: () => string, exited: Promise<number | null> }> {
  const npm = spawn('npm', ['start', '--ignore-scripts'], {
    cwd: ROOT,
    detached: true,
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', POOL_SIZE: '1', DIAG_TASKS: '1', LOG_LEVEL: 'info' }
  })
  let out = ''
  npm.stdout?.on('data', (d) => { out += String(d) })
  npm.stderr?.on('data', (d) => { out += String(d) })
  const exited = new Promise<number | null>((resolve) => { npm.once('exit', resolve) })
  t.teardown(async () => { if (npm.exitCode === null) npm.kill('SIGKILL') })
  await waitFor(() => listeningUrl(out) !== undefined, 30_000, 'npm start to listen')
  const url = listeningUrl(out) as string
  await waitFor(async () => (await fetch(`${url}/ready`).then((r) => r.status, () => 0)) === 200, 30_000, 'npm start to serve')
  const serverPid = Number(/"pid":(\d+)/.exec(out)?.[1])
  // Only if that pid is still the server: by teardown it may name another test's process.
  const serverStarted = await startTimeOf(serverPid)
  t.teardown(async () => { await killIfStill(serverPid, serverStarted) })
  return { npm, url, serverPid, output: () => out, exited }
}

t.test('SIGTERM to `npm start` (README\'s command) drains the server itself: nothing is left running', async (t) => {
  // npm passes SIGTERM to its script's process; without `exec` that was a shell, and the
  // server lived on, orphaned.
  const { npm, serverPid, output, exited } = await startWithNpm(t)
  const workers = await childPythonPids(serverPid)
  t.equal(workers.length, 1, 'the server\'s worker is found')
  npm.kill('SIGTERM')
  await exited
  await waitFor(async () => !(await isRunning(serverPid)), 10_000, 'the server to exit')
  t.match(output(), /shutting down: finishing admitted calls/, 'the server drained')
  for (const pid of workers) t.notOk(await isRunning(pid), 'its worker is gone')
})

t.test('Ctrl-C on `npm start` (SIGINT to the process group) drains once: the server gets it twice, from the terminal and from npm', async (t) => {
  const { npm, url, serverPid, output, exited } = await startWithNpm(t)
  const running = callTask(url, 'diag.work', { sleep_ms: 800 })
  await waitFor(async () => (await (await fetch(`${url}/api/queue-stats`)).json()).pool.borrowed === 1, 5000, 'the call to run')
  process.kill(-(npm.pid as number), 'SIGINT')
  t.equal((await running).status, 200, 'the call in flight finished')
  await exited
  await waitFor(async () => !(await isRunning(serverPid)), 10_000, 'the server to exit')
  t.notMatch(output(), /second SIGINT/, 'npm\'s copy of the signal was not taken for a second Ctrl-C')
  t.match(output(), /"msg":"stopped"/)
})

t.test('a second SIGTERM, past the moment an echo of the first would come, exits at once with 1', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '30000' })
  // Cut off by the second SIGTERM: that is what it is for.
  const running = callTask(server.url, 'diag.work', { sleep_ms: 20_000 }).catch(() => undefined)
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).pool.borrowed === 1, 5000, 'the call to run')
  server.child.kill('SIGTERM')
  await waitFor(() => /shutting down/.test(server.output()), 5000, 'the drain to begin')
  server.child.kill('SIGHUP')
  await waitFor(() => /SIGHUP ignored: the server is shutting down/.test(server.output()), 5000, 'a SIGHUP during the drain to be said ignored')
  await new Promise((resolve) => setTimeout(resolve, 700)) // past the window in which a repeat is an echo
  t.equal(server.child.exitCode, null, 'the echo did not end the drain')
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 1)
  t.match(server.output(), /second SIGTERM: exiting now/)
  await running
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
  t.match(await answerOn(forBadJson, '{bad'), /^HTTP\/1\.1 400 [\s\S]*\r\nconnection: close\r\n/i, 'a body parser\'s error too, while draining')
  t.equal((await running).status, 200)
  t.equal((await server.exited).code, 0)
})

t.test('an answer to a call admitted before the drain closes its connection, so the client does not reuse one about to be closed', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1' })
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  let answer = ''
  const closed = new Promise((resolve) => socket.setEncoding('utf8').on('data', (text: string) => { answer += text }).once('close', resolve))
  const body = JSON.stringify({ sleep_ms: 1500 })
  socket.write(`POST /api/tasks/diag.work HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).pool.borrowed === 1, 5000, 'the call to run')
  server.child.kill('SIGTERM')
  await closed
  t.match(answer, /^HTTP\/1\.1 200 [\s\S]*\r\nconnection: close\r\n/i, 'answered, saying the connection closes')
  t.equal((await server.exited).code, 0)
})

t.test('a reload cut short by SIGTERM counts each worker once: the busy one it could not swap is not counted as replaced', async (t) => {
  const token = 'reload-term-token-0123'
  const server = await startServerProcess(t, { POOL_SIZE: '2', ADMIN_TOKEN: token, SHUTDOWN_GRACE_MS: '800', WORKER_STOP_GRACE_MS: '500' })
  // A busy worker holds the reload (its spare is ready, but the swap waits for the call
  // to end) until the shutdown's grace runs out and stops it unswapped.
  const running = callTask(server.url, 'diag.work', { sleep_ms: 4000 })
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).pool.borrowed === 1, 5000, 'the call to run')
  const reload = fetch(`${server.url}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
  await waitFor(() => /retiring worker; starting its replacement/.test(server.output()), 5000, 'the reload to start a spare')
  server.child.kill('SIGTERM')
  const answer = await reload
  t.equal(answer.status, 503)
  // The idle worker may have been swapped first; the busy one was not, and is counted once.
  t.match((await answer.json()).message, /^reload failed: the server began shutting down; [01] of 2 workers replaced/)
  t.equal((await running).status, 502, 'stopped by the shutdown')
  t.equal((await server.exited).code, 0)
})

t.test('a drain does not wait for a call whose client already had its 504 (its budget ran out): the shutdown stops its worker', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '30000', WORKER_STOP_GRACE_MS: '300' })
  const reply = await callTask(server.url, 'diag.work', { sleep_ms: 30_000 }, { 'x-request-timeout-ms': '100' })
  t.equal(reply.status, 504)
  const started = Date.now()
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
  const elapsed = Date.now() - started
  // Waiting for the call would take the whole 30 s grace (the task's own timeout is 30 s too).
  t.ok(elapsed < 15_000, `exited after ${elapsed} ms`)
})

t.test('a drain longer than 10 s (within SHUTDOWN_GRACE_MS) still ends in exit 0', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '20000' })
  const running = callTask(server.url, 'diag.work', { sleep_ms: 11_000 })
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).pool.borrowed === 1, 5000, 'the call to run')
  server.child.kill('SIGTERM')
  t.equal((await running).status, 200)
  t.equal((await server.exited).code, 0, server.output().split('\n').filter((l) => /error|timeout/i.test(l)).join('\n'))
})

t.test('SIGINT drains like SIGTERM; calls unfinished when the grace runs out are told the server shut down, and it exits 0', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '500', WORKER_STOP_GRACE_MS: '300' })
  const running = callTask(server.url, 'diag.work', { sleep_ms: 5000 })
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).pool.borrowed === 1, 5000, 'the call to run')
  const queued = callTask(server.url, 'echo', { queued: true })
  await waitFor(async () => (await (await fetch(`${server.url}/api/queue-stats`)).json()).queue.waiting === 1, 5000, 'a call queued behind it')
  server.child.kill('SIGINT')
  const [cut, refused] = await Promise.all([running, queued])
  t.equal(cut.status, 502)
  t.match(cut.json, { code: 'WORKER_DIED', message: /the server shut down while diag\.work was running: SHUTDOWN_GRACE_MS ran out/ })
  t.equal(refused.status, 503)
  t.match(refused.json, { code: 'WORKERS_UNAVAILABLE', message: /shut down before this call could start/ })
  t.equal(refused.headers.get('retry-after'), '1', 'another replica may take it')
  t.equal((await server.exited).code, 0)
  // The worker the shutdown stopped is not a crash: no "replacing worker" (nor a restart counted with it).
  t.match(server.output(), /diag\.work was still running when the shutdown stopped its worker \(SHUTDOWN_GRACE_MS and WORKER_STOP_GRACE_MS ran out\)/)
  t.notMatch(server.output(), /replacing worker/)
})

t.test('a client stalled mid-upload does not hold the shutdown: exit 0, not the backstop\'s exit 1', async (t) => {
  const server = await startServerProcess(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '3000', WORKER_STOP_GRACE_MS: '500' })
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.write('POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n[1,')
  socket.on('error', () => {})
  await waitFor(async () => (await (await fetch(`${server.url}/metrics`)).text()).length > 0, 5000, 'the server to answer')
  server.child.kill('SIGTERM')
  const { code } = await server.exited
  t.equal(code, 0, server.output().split('\n').filter((l) => /did not finish|error/i.test(l)).join('\n'))
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

t.test('kill -9 of Node: all its workers are gone within 2 s', async (t) => {
  const server = await startServerProcess(t)
  const pids = await childPythonPids(server.child.pid as number)
  t.equal(pids.length, 4)
  server.child.kill('SIGKILL')
  await server.exited
  await waitFor(async () => {
    for (const pid of pids) if (await isRunning(pid)) return false
    return true
  }, 2000, 'every worker to die with its parent')
  t.pass('no worker outlived the server')
})

t.test('SIGHUP replaces every worker and calls keep working', async (t) => {
  const server = await startServerProcess(t)
  const before = await childPythonPids(server.child.pid as number)
  server.child.kill('SIGHUP')
  let now: number[] = []
  await waitFor(async () => {
    now = await childPythonPids(server.child.pid as number)
    return now.length === 4 && now.every((pid) => !before.includes(pid))
  }, 20_000, 'four new workers').catch((error: Error) => {
    // Once seen in a full run on a busy machine, never alone: say what the server was doing.
    t.comment(`workers before ${before.join(' ')}, last seen ${now.join(' ')}; the server's last lines:\n${server.output().trim().split('\n').slice(-15).join('\n')}`)
    throw error
  })
  t.equal((await callTask(server.url, 'echo', { after: 'reload' })).status, 200)
  t.match(server.output(), /reload finished/)
})

t.test('SIGTERM during start-up still exits 0 and leaves no worker', async (t) => {
  const { spawn } = await import('node:child_process')
  const { ROOT } = await import('../helpers/server.js')
  const child = spawn(process.execPath, ['dist/server.js'], { cwd: ROOT, env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0' } })
  let output = ''
  child.stdout.on('data', (d) => { output += String(d) })
  child.stderr.on('data', (d) => { output += String(d) })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  // The first worker is spawned: start-up is under way but not finished.
  await waitFor(async () => (await childPythonPids(child.pid as number)).length > 0, 10_000, 'workers spawning')
  child.kill('SIGHUP')
  await waitFor(() => output.includes('pyfleet: SIGHUP during start-up ignored: the workers starting load the code on disk now'), 5000, 'the SIGHUP to be answered')
  child.kill('SIGTERM')
  t.equal(await exited, 0, output)
  t.same(await childPythonPids(child.pid as number), [])
})

t.test('SIGTERM while the server is still loading its code exits 0, before any worker starts', async (t) => {
  const { spawn } = await import('node:child_process')
  const { ROOT, FIXTURES } = await import('../helpers/server.js')
  // The loader holds main.js back for 1 s, as a slow disk or a busy machine might.
  const child = spawn(process.execPath, ['--import', `${FIXTURES}/slow-main-loader.mjs`, 'dist/server.js'], { cwd: ROOT, env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0' } })
  let output = ''
  child.stderr.on('data', (d) => { output += String(d) })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => { resolve({ code, signal }) }))
  await waitFor(() => output.includes('test-loader: loading main.js'), 10_000, 'main.js to begin loading')
  child.kill('SIGHUP') // ignored at this point (a reload of nothing), not Node's default: death
  child.kill('SIGTERM')
  t.same(await exited, { code: 0, signal: null }, output)
  t.match(output, /pyfleet: SIGTERM before start-up: exiting/)
  t.same(await childPythonPids(child.pid as number), [], 'no worker was started')
})

t.test('the entry point loads nothing but Node built-ins before its signal handlers are in place', async (t) => {
  const { ROOT } = await import('../helpers/server.js')
  const source = await readFile(`${ROOT}/dist/server.js`, 'utf8')
  const staticImports = [...source.matchAll(/^import\s[^;]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1])
  t.same(staticImports.filter((name) => !name.startsWith('node:')), [], 'no static import of the server (it would load before the handlers)')
  t.match(source, /await import\('\.\/main\.js'\)/)
})

t.test('a worker the shutdown stops mid-call is no crash: restarts{reason="crash"} stays 0, and the caller is told why', async (t) => {
  const { startServer } = await import('../helpers/server.js')
  const server = await startServer(t, { POOL_SIZE: '1', SHUTDOWN_GRACE_MS: '300', WORKER_STOP_GRACE_MS: '200' })
  const running = callTask(server.url, 'diag.work', { sleep_ms: 5000 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the call to run')
  await server.close()
  const cut = await running
  t.equal(cut.status, 502)
  t.match(cut.json.message, /the server shut down while diag\.work was running/)
  // The registry outlives the server: read the counter as a scrape would have.
  const { restarts } = await server.app.metrics.counts()
  t.equal(restarts.crash, 0, 'not counted as a crash')
  t.notOk(server.logs.some((line) => line.msg === 'replacing worker'))
})
