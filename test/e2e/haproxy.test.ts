// deploy/haproxy.cfg in a real HAProxy (Debian's) in front of two real servers: a replica
// stopped under load with SHUTDOWN_DELAY_MS set costs no call, since the checks of /ready
// take it out before it refuses anything (docs/operations.md, "Rolling updates").

import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hasCommand } from '../helpers/installed.js'
import { ROOT, freePort, startServerProcess, waitFor, type ServerProcess, type Teardown } from '../helpers/server.js'

const TEMPLATE = await readFile(join(ROOT, 'deploy', 'haproxy.cfg'), 'utf8')
const SERVER_LINES = /^ +server pyfleet1 .*\n +server pyfleet2 .*$/m
const BIND_LINE = /^( +bind ):8080$/m

/** Runs HAProxy with deploy/haproxy.cfg, its bind and server lines changed and a stats socket added. */
async function startHaproxy (t: Teardown, servers: ServerProcess[]): Promise<{ url: string, state: () => Promise<Map<string, string>> }> {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-haproxy-'))
  const port = await freePort()
  if (!SERVER_LINES.test(TEMPLATE) || !BIND_LINE.test(TEMPLATE)) throw new Error('deploy/haproxy.cfg has no bind or server lines where this test changes them')
  const socket = join(dir, 'admin.sock')
  const config = TEMPLATE
    .replace(BIND_LINE, `$1127.0.0.1:${port}`)
    .replace(SERVER_LINES, servers.map((server, i) => `    server pyfleet${i + 1} ${new URL(server.url).host} check`).join('\n'))
    .replace(/^global\n/m, `global\n    stats socket ${socket} mode 600 level admin\n`)
  await writeFile(join(dir, 'haproxy.cfg'), config)
  const haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  haproxy.stderr.setEncoding('utf8').on('data', (text: string) => { stderr += text })
  const exited = new Promise<void>((resolve) => haproxy.once('exit', () => { resolve() }))
  t.teardown(async () => {
    haproxy.kill('SIGUSR1') // a soft stop
    await exited
    await rm(dir, { recursive: true, force: true })
  })
  /** Each server's name and state as the checks have it (`show stat`: UP, DOWN, ...). */
  const state = async (): Promise<Map<string, string>> => await new Promise((resolve, reject) => {
    let answer = ''
    const admin = connect(socket, () => { admin.end('show stat\n') })
    admin.setEncoding('utf8').on('data', (text: string) => { answer += text }).once('error', reject).once('close', () => {
      const rows = answer.split('\n').map((line) => line.split(',')).filter((row) => row[0] === 'pyfleet' && row[1].startsWith('pyfleet'))
      resolve(new Map(rows.map((row) => [row[1], row[17]])))
    })
  })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => {
    if (haproxy.exitCode !== null) throw new Error(`haproxy exited ${haproxy.exitCode}: ${stderr}`)
    return await fetch(`${url}/ready`).then(() => true, () => false)
  }, 10_000, 'haproxy listening')
  return { url, state }
}

t.test('a replica stopped under load behind HAProxy\'s checks costs no call, with SHUTDOWN_DELAY_MS above inter x fall', async (t) => {
  if (!(await hasCommand(t, 'haproxy', 'haproxy'))) return
  // 5 s: the file asks for 3 s on a replica (2 s of checks, ~1 s of their timing); more here, for a loaded CI machine.
  const env = { POOL_SIZE: '2', SHUTDOWN_DELAY_MS: '5000' }
  const [leaving, staying] = await Promise.all([startServerProcess(t, env), startServerProcess(t, env)])
  const { url, state } = await startHaproxy(t, [leaving, staying])
  await waitFor(async () => [...(await state()).values()].every((s) => s === 'UP') && (await state()).size === 2, 15_000, 'both servers UP')

  // Four clients calling in a loop through the proxy, from before the SIGTERM to after the exit.
  const statuses = new Map<string, number>()
  let calling = true
  const clients = Array.from({ length: 4 }, async (_, client) => {
    for (let n = 0; calling; n++) {
      const answer = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client, n }) })
        .then(async (response) => `${response.status}${response.status === 200 ? '' : ` ${await response.text()}`}`, (error: Error) => `error ${error.message}`)
      statuses.set(answer, (statuses.get(answer) ?? 0) + 1)
    }
  })
  await waitFor(() => (statuses.get('200') ?? 0) >= 20, 10_000, 'calls to flow')
  leaving.child.kill('SIGTERM')
  await waitFor(async () => (await state()).get('pyfleet1') !== 'UP', 10_000, 'the checks to take the stopping server out')
  t.notMatch(leaving.output(), /shutting down: finishing admitted calls/, 'taken out before its drain began')
  t.equal((await leaving.exited).code, 0)
  const atExit = statuses.get('200') ?? 0
  await waitFor(() => (statuses.get('200') ?? 0) >= atExit + 20, 10_000, 'calls to flow on the other server')
  calling = false
  await Promise.all(clients)
  t.same([...statuses.keys()], ['200'], `every call answered 200 (${[...statuses].map(([answer, count]) => `${count} × ${answer.slice(0, 200)}`).join('; ')})`)
  t.match(leaving.output(), /stopping in 5000 ms \(SHUTDOWN_DELAY_MS\)/)
  t.match(leaving.output(), /every admitted call finished before the workers were stopped/)
  t.equal(staying.child.exitCode, null, 'the other server serves on')
})

t.test('through HAProxy: scrapes and the admin route are not served on the public side, however the path is written', async (t) => {
  if (!(await hasCommand(t, 'haproxy', 'haproxy'))) return
  const server = await startServerProcess(t, { POOL_SIZE: '1', ADMIN_TOKEN: 'a-token-of-sixteen-or-more' })
  const { url, state } = await startHaproxy(t, [server, server])
  await waitFor(async () => [...(await state()).values()].includes('UP'), 15_000, 'a server UP')
  for (const [method, path] of [['GET', '/metrics'], ['POST', '/admin/reload'], ['POST', '/%61dmin/reload'], ['GET', '/%6Detrics'], ['GET', '/metrics?x=1'], ['GET', '/api/queue-stats']]) {
    const refused = await fetch(`${url}${path}`, { method, headers: { authorization: 'Bearer a-token-of-sixteen-or-more' } })
    t.equal(refused.status, 404, `${method} ${path}`)
    t.match(await refused.json(), { statusCode: 404, code: 'NOT_FOUND', message: /not served through the proxy/ }, 'in pyfleet\'s error shape')
  }
  t.notMatch(server.output(), /reload started/, 'no reload ran')
  const ready = await fetch(`${url}/ready`)
  t.equal(ready.status, 200, '/ready is served')
  const echoed = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'through-haproxy-1' }, body: '{"a":1}' })
  t.equal(echoed.status, 200)
  t.equal(echoed.headers.get('x-request-id'), 'through-haproxy-1', 'the client\'s request id reaches pyfleet and comes back')
})
