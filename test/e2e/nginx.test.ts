// deploy/nginx.conf in a real nginx (Debian's) in front of a real server: what a client sees
// through the proxy README's "Behind a reverse proxy" recommends, and its values against
// pyfleet's defaults, so that the file cannot drift from the server it fronts.

import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/config.js'
import { hasCommand } from '../helpers/installed.js'
import { ROOT, freePort, startServer, waitFor, type Teardown } from '../helpers/server.js'

const TEMPLATE = await readFile(join(ROOT, 'deploy', 'nginx.conf'), 'utf8')
const UPSTREAM_LINE = /^( +server )127\.0\.0\.1:5000;/m
const LISTEN_LINE = /^( +listen )80;/m
const ACCESS_LOG_LINE = /^( +access_log )\/var\/log\/nginx\/pyfleet\.access\.log( pyfleet;)/m

/** The one value of `directive` in the file (`client_max_body_size 17m;` → "17m"). */
function valueOf (directive: string): string {
  const values = [...TEMPLATE.matchAll(new RegExp(`^ *${directive} ([^;]+);`, 'gm'))].map((m) => m[1])
  if (values.length !== 1) throw new Error(`deploy/nginx.conf sets ${directive} ${values.length} times`)
  return values[0]
}

/** nginx's sizes and times in bytes and ms ("17m", "75s"). */
const bytes = (size: string): number => Number(/^(\d+)m$/.exec(size)?.[1]) * 1024 * 1024
const ms = (time: string): number => Number(/^(\d+)s$/.exec(time)?.[1]) * 1000

/** Runs nginx with deploy/nginx.conf, its upstream, listen and access log lines changed; resolves with its URL and its directory once it answers. */
async function startNginx (t: Teardown, upstream: string): Promise<{ url: string, dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-nginx-'))
  await chmod(dir, 0o755) // nginx's workers run as another user when it is started as root
  const port = await freePort()
  const site = TEMPLATE.replace(UPSTREAM_LINE, `$1${upstream};`).replace(LISTEN_LINE, `$1127.0.0.1:${port};`).replace(ACCESS_LOG_LINE, `$1${dir}/pyfleet.access.log$2`)
  await writeFile(join(dir, 'pyfleet.conf'), site)
  // The main file a distribution's nginx.conf would be, in a directory of its own.
  await writeFile(join(dir, 'nginx.conf'), [
    ...(process.getuid?.() === 0 ? ['user root;'] : []),
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    'events { worker_connections 256; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${dir}/${kind};`),
    `  include ${dir}/pyfleet.conf;`,
    '}'
  ].join('\n'))
  const nginx: ChildProcess = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  nginx.stderr?.setEncoding('utf8').on('data', (text: string) => { stderr += text })
  const exited = new Promise<void>((resolve) => nginx.once('exit', () => { resolve() }))
  t.teardown(async () => {
    nginx.kill('SIGQUIT')
    await exited
    await rm(dir, { recursive: true, force: true })
  })
  const url = `http://127.0.0.1:${port}`
  await waitFor(async () => {
    if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${stderr}`)
    return await fetch(`${url}/health`).then(() => true, () => false)
  }, 10_000, 'nginx listening')
  return { url, dir }
}

t.test('the file\'s values follow pyfleet\'s defaults', async (t) => {
  const defaults = loadConfig({})
  t.ok(bytes(valueOf('client_max_body_size')) > defaults.bodyLimitBytes, 'client_max_body_size is above BODY_LIMIT_BYTES: pyfleet\'s own 413 answers')
  t.ok(ms(valueOf('proxy_read_timeout')) > defaults.queueTimeoutMs + defaults.taskTimeoutMs, 'proxy_read_timeout is above QUEUE_TIMEOUT_MS + TASK_TIMEOUT_MS: pyfleet\'s own 503 or 504 comes first')
  t.ok(ms(valueOf('keepalive_timeout')) < defaults.keepAliveTimeoutMs, 'the upstream\'s keepalive_timeout is below KEEP_ALIVE_TIMEOUT_MS: nginx closes an idle connection first')
  t.equal(valueOf('proxy_http_version'), '1.1', 'keep-alive to the upstream')
  t.notMatch(valueOf('proxy_next_upstream'), /non_idempotent/, 'a call that ran is never sent to another replica')
  t.match(TEMPLATE, /"~\^\[A-Za-z0-9\._-\]\{1,128\}\$"/, 'a client\'s request id is passed on by pyfleet\'s own rule (src/app.ts)')
})

t.test('through nginx: calls, request ids, kept-alive upstream connections, bodies at both limits, routes kept off the public side', async (t) => {
  if (!(await hasCommand(t, 'nginx', 'nginx'))) return
  const server = await startServer(t, { POOL_SIZE: '2' })
  const { url, dir } = await startNginx(t, new URL(server.url).host)

  const call = async (headers: Record<string, string> = {}): Promise<Response> => await fetch(`${url}/api/tasks/echo`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"n":1}'
  })
  const answered = await call({ 'x-request-id': 'client-id-42' })
  t.equal(answered.status, 200)
  t.same(await answered.json(), { n: 1 })
  t.equal(answered.headers.get('x-request-id'), 'client-id-42', 'the client\'s id comes back, once (fetch would join two with a comma)')
  t.ok(server.logs.some((line) => line.requestId === 'client-id-42' && line.msg === 'request completed'), 'and is the one pyfleet logged')

  const replaced = await call({ 'x-request-id': 'not an id!' })
  const id = replaced.headers.get('x-request-id') ?? ''
  t.match(id, /^[0-9a-f]{32}$/, 'an id pyfleet would refuse is replaced by nginx\'s own')
  t.ok(server.logs.some((line) => line.requestId === id && line.msg === 'request completed'), 'which pyfleet logged too: one id for both logs')

  // Kept alive: nginx's connection to pyfleet stays open between requests (with nginx's
  // defaults, HTTP/1.0 and "Connection: close", none would be open once they are answered).
  for (let i = 0; i < 5; i++) await (await call()).arrayBuffer()
  const exposition = await (await fetch(`${server.url}/metrics`)).text()
  const open = Number(/^pyfleet_http_connections (\d+)$/m.exec(exposition)?.[1])
  t.ok(open >= 2, `${open} connections open at pyfleet: this scrape's and nginx's kept-alive one`)

  const tooLargeForPyfleet = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `"${'x'.repeat(16.5 * 1024 * 1024)}"` })
  t.equal(tooLargeForPyfleet.status, 413)
  t.match(await tooLargeForPyfleet.json(), { code: 'FST_ERR_CTP_BODY_TOO_LARGE' }, 'past BODY_LIMIT_BYTES, under the proxy\'s size: pyfleet\'s own 413')
  const tooLargeForNginx = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'big-1' }, body: `"${'x'.repeat(18 * 1024 * 1024)}"` })
  t.equal(tooLargeForNginx.status, 413)
  t.equal(tooLargeForNginx.headers.get('content-type'), 'application/json')
  t.equal(tooLargeForNginx.headers.get('x-request-id'), 'big-1')
  t.match(await tooLargeForNginx.json(), { statusCode: 413, code: 'PROXY_BODY_TOO_LARGE', error: 'Payload Too Large' }, 'past the proxy\'s size: nginx\'s 413, in pyfleet\'s error shape')

  for (const path of ['/metrics', '/admin/reload', '/api/queue-stats']) {
    const refused = await fetch(`${url}${path}`, { method: path === '/admin/reload' ? 'POST' : 'GET' })
    t.equal(refused.status, 404, `${path} is not served through the proxy`)
    t.match(await refused.json(), { statusCode: 404, code: 'NOT_FOUND' }, 'said in pyfleet\'s error shape')
  }
  t.equal((await fetch(`${url}/ready`)).status, 200, '/ready is')
  const accessLog = await readFile(join(dir, 'pyfleet.access.log'), 'utf8')
  t.match(accessLog, /"POST \/api\/tasks\/echo HTTP\/1\.1" 200 \d+ rid=client-id-42 upstream=200 /, 'nginx\'s access log has the id pyfleet logged')
})

t.test('no replica answering: nginx\'s 502 in pyfleet\'s error shape, with the request id', async (t) => {
  if (!(await hasCommand(t, 'nginx', 'nginx'))) return
  const { url } = await startNginx(t, `127.0.0.1:${await freePort()}`)
  const answer = await fetch(`${url}/api/tasks/echo`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'lost-1' }, body: '{}' })
  t.equal(answer.status, 502)
  t.equal(answer.headers.get('x-request-id'), 'lost-1')
  t.match(await answer.json(), { statusCode: 502, code: 'PROXY_BAD_GATEWAY', error: 'Bad Gateway' })
})
