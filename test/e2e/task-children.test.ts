// Processes a task starts go with its worker: after a timeout kill, a recycle and
// a graceful shutdown (each worker is its own process group, sent SIGTERM then SIGKILL
// once the worker has exited), and multiprocessing's resource tracker among them unlinks
// the shared memory they leaked. And kill -9 of Node still ends every worker at once (SPEC §3).
// The tasks are in fixtures/spawner_tasks.py.

import t from 'tap'
import { access, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  callTask, FIXTURES, isRunning, killIfStill, startServer, startServerProcess, startTimeOf, waitFor, workerPids
} from '../helpers/server.js'

const SPAWNER = { TASK_MODULES: 'spawner_tasks', PYTHONPATH: FIXTURES }

interface Teardown { teardown: (fn: () => unknown) => void }

/** A path for a task to write its child's pid to; the child is SIGKILLed at teardown if a test left it. */
async function pidFile (t: Teardown): Promise<{ path: string, pid: () => Promise<number> }> {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-'))
  const path = join(dir, 'child.pid')
  let pid = 0
  let startTime: string | undefined
  t.teardown(async () => {
    if (pid > 0) await killIfStill(pid, startTime)
    await rm(dir, { recursive: true, force: true })
  })
  return {
    path,
    pid: async () => {
      await waitFor(async () => /^\d+$/.test(await readFile(path, 'utf8').catch(() => '')), 10_000, 'the task to write its child pid')
      pid = Number(await readFile(path, 'utf8'))
      startTime = await startTimeOf(pid)
      return pid
    }
  }
}

/** Kills `pid` at teardown if it is still the same process (a failed test must not leave it behind). */
function killLater (t: Teardown, pid: number): void {
  const startTime = startTimeOf(pid)
  t.teardown(async () => { await killIfStill(pid, await startTime) })
}

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

async function waitGone (pid: number, what: string): Promise<void> {
  await waitFor(async () => !(await isRunning(pid)), 5000, what)
}

t.test('a call past its timeout: the process its task started is killed with the worker', async (t) => {
  const file = await pidFile(t)
  const server = await startServer(t, { ...SPAWNER, POOL_SIZE: '1', TASK_TIMEOUT_MS: '1000' })
  const reply = await callTask(server.url, 'spawner.popen', { pidfile: file.path, sleep_ms: 60_000 })
  t.equal(reply.status, 504)
  const pid = await file.pid()
  await waitGone(pid, `sleep 300 (pid ${pid}) to go with the timed-out worker`)
  t.pass('the task\'s child is gone')
})

t.test('SIGTERM of the server (exit 0): a child left by a finished call is gone', async (t) => {
  const file = await pidFile(t)
  const server = await startServerProcess(t, { ...SPAWNER, POOL_SIZE: '1' })
  const reply = await callTask(server.url, 'spawner.popen', { pidfile: file.path })
  t.equal(reply.status, 200)
  const pid = reply.json.pid as number
  killLater(t, pid)
  t.ok(await isRunning(pid), 'the child runs while its worker does')
  // And one that ignores SIGTERM: the server exits before its group's SIGKILL would be due, and sends it as it exits.
  const stubborn = await callTask(server.url, 'spawner.fork', { ignore_sigterm: true })
  t.equal(stubborn.status, 200)
  killLater(t, stubborn.json.pid as number)
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
  await waitGone(pid, `sleep 300 (pid ${pid}) to go with the server`)
  await waitGone(stubborn.json.pid as number, `the child that ignores SIGTERM (pid ${String(stubborn.json.pid)}) to go with the server`)
  t.pass('no process of a task outlived the server')
})

t.test('a server ended by an uncaught exception (exit 1, no drain) takes the child a finished call left', async (t) => {
  const file = await pidFile(t)
  // A bug that throws on SIGWINCH, loaded into the real server (as signals.test.ts does).
  const server = await startServerProcess(t, { ...SPAWNER, POOL_SIZE: '1', NODE_OPTIONS: `--import=${pathToFileURL(join(FIXTURES, 'bug-on-sigwinch.mjs')).href}` })
  const reply = await callTask(server.url, 'spawner.popen', { pidfile: file.path })
  t.equal(reply.status, 200)
  const pid = reply.json.pid as number
  killLater(t, pid)
  server.child.kill('SIGWINCH')
  t.equal((await server.exited).code, 1)
  // It ran on: the worker died by PR_SET_PDEATHSIG, which kills no group.
  await waitGone(pid, `sleep 300 (pid ${pid}) to go with the server`)
  t.pass('no process of a task outlived the server')
})

t.test('a recycled worker takes the child it forked along', async (t) => {
  const server = await startServer(t, { ...SPAWNER, POOL_SIZE: '1', MAX_CALLS_PER_WORKER: '1' })
  const [workerPid] = workerPids(server)
  const reply = await callTask(server.url, 'spawner.fork', {})
  t.equal(reply.status, 200)
  const pid = reply.json.pid as number
  killLater(t, pid)
  await waitFor(async () => !(await isRunning(workerPid)), 10_000, 'the worker to be recycled')
  await waitGone(pid, `the forked child (pid ${pid}) to go with its recycled worker`)
  t.pass('the forked child is gone')
})

t.test('a child that ignores SIGTERM goes with its recycled worker all the same (SIGKILL after the grace)', async (t) => {
  const server = await startServer(t, { ...SPAWNER, POOL_SIZE: '1', MAX_CALLS_PER_WORKER: '1' })
  const [workerPid] = workerPids(server)
  const reply = await callTask(server.url, 'spawner.fork', { ignore_sigterm: true })
  t.equal(reply.status, 200)
  const pid = reply.json.pid as number
  killLater(t, pid)
  await waitFor(async () => !(await isRunning(workerPid)), 10_000, 'the worker to be recycled')
  await waitGone(pid, `the child that ignores SIGTERM (pid ${pid}) to go with its recycled worker`)
  t.pass('it is gone')
})

t.test('shared memory a task leaked is unlinked when its worker goes: multiprocessing\'s resource tracker is not killed before it can', async (t) => {
  const server = await startServer(t, { ...SPAWNER, POOL_SIZE: '1', MAX_CALLS_PER_WORKER: '1' })
  const [workerPid] = workerPids(server)
  const reply = await callTask(server.url, 'spawner.shared_memory', {})
  t.equal(reply.status, 200)
  const path = join('/dev/shm', String(reply.json.name).replace(/^\//, ''))
  t.teardown(async () => { await rm(path, { force: true }) })
  t.ok(await exists(path), `the segment (${path}) is there while its worker lives`)
  await waitFor(async () => !(await isRunning(workerPid)), 10_000, 'the worker to be recycled')
  // A SIGKILL of the whole group at once took the tracker too, and the segment stayed for good.
  await waitFor(async () => !(await exists(path)), 5000, 'the resource tracker to unlink the segment')
  t.pass('unlinked')
})

t.test('shared memory a task leaked is unlinked when its call times out: the worker is killed alone, then its group ended', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-'))
  const namefile = join(dir, 'name')
  let path: string | undefined
  t.teardown(async () => {
    if (path !== undefined) await rm(path, { force: true })
    await rm(dir, { recursive: true, force: true })
  })
  const server = await startServer(t, { ...SPAWNER, POOL_SIZE: '1', TASK_TIMEOUT_MS: '1000' })
  const reply = callTask(server.url, 'spawner.shared_memory', { namefile, sleep_ms: 60_000 })
  await waitFor(async () => (await readFile(namefile, 'utf8').catch(() => '')) !== '', 10_000, 'the task to write its segment\'s name')
  path = join('/dev/shm', (await readFile(namefile, 'utf8')).replace(/^\//, ''))
  t.ok(await exists(path), `the segment (${path}) is there while its call runs`)
  t.equal((await reply).status, 504)
  await waitFor(async () => !(await exists(path as string)), 5000, 'the resource tracker to unlink the segment')
  t.pass('unlinked')
})

t.test('a child that left its worker\'s group does not keep the server\'s pipes to that worker open after its exit', async (t) => {
  const server = await startServer(t, { ...SPAWNER, POOL_SIZE: '1', MAX_CALLS_PER_WORKER: '1' })
  const openFiles = async (): Promise<number> => (await readdir('/proc/self/fd')).length
  const before = await openFiles()
  // Three workers in turn, each recycled after the one call that detaches a child holding its stdout and stderr.
  const children: number[] = []
  for (let i = 0; i < 3; i++) {
    const [workerPid] = workerPids(server)
    const reply = await callTask(server.url, 'spawner.detached', {})
    t.equal(reply.status, 200)
    children.push(reply.json.pid as number)
    killLater(t, reply.json.pid as number)
    await waitFor(async () => !(await isRunning(workerPid)) && workerPids(server).length === 1, 10_000, 'the worker to be recycled')
  }
  for (const pid of children) t.ok(await isRunning(pid), `the detached child ${pid} lives on (it left the group: documented)`)
  // Its pipes are closed a second after the worker's exit, whoever still holds the other end, and said so.
  await waitFor(() => server.logs.filter((line) => /still held its pipes open: closed them/.test(line.msg ?? '')).length === 3, 10_000, 'a warning per worker')
  await waitFor(async () => await openFiles() <= before + 2, 10_000, `the server's files back near ${before}`)
  t.pass('no file held for the children')
})

t.test('closing the app: a forked child is gone', async (t) => {
  const server = await startServer(t, { ...SPAWNER, POOL_SIZE: '1' })
  const reply = await callTask(server.url, 'spawner.fork', {})
  t.equal(reply.status, 200)
  const pid = reply.json.pid as number
  killLater(t, pid)
  await server.close()
  await waitGone(pid, `the forked child (pid ${pid}) to go with the app`)
  t.pass('the forked child is gone')
})

t.test('kill -9 of Node: a worker busy in C code that never checks for signals dies at once', async (t) => {
  // Workers are SIGKILLed by PR_SET_PDEATHSIG, not asked: a Python signal handler
  // would wait for sum() to return. (The price: processes a task started outlive
  // a server killed this way; README says so.)
  const server = await startServerProcess(t, { ...SPAWNER, POOL_SIZE: '1' })
  const call = callTask(server.url, 'spawner.busy_c', {}).catch(() => undefined)
  let workerPid = 0
  await waitFor(async () => {
    const stats = await (await fetch(`${server.url}/api/queue-stats`)).json()
    workerPid = stats.workers[0]?.state === 'busy' ? stats.workers[0].pid : 0
    return workerPid > 0
  }, 10_000, 'the worker to be busy')
  killLater(t, workerPid)
  server.child.kill('SIGKILL')
  await server.exited
  await waitGone(workerPid, `the busy worker (pid ${workerPid}) to die with the server`)
  await call
  t.pass('the worker did not outlive the server')
})
