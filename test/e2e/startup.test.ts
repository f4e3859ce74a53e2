// Start-up: what the operator sees when configuration or Python is wrong, and
// user task modules loaded with TASK_MODULES. The command line (--check, --help) is
// check-command.test.ts.

import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { callTask, childPythonPids, FIXTURES, isRunning, ROOT, runServer, startServer, waitFor } from '../helpers/server.js'
import { resolvePython } from '../../src/python-path.js'

// The interpreter the server finds on this machine (.venv's, where npm ci made one, or
// Debian's), for the tests that make a working Python look broken.
const python = (await resolvePython(undefined, ROOT)).path
const pythonPattern = python.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')

t.test('a bad configuration value exits 1 with one line naming it', async (t) => {
  const { code, output } = await runServer({ POOL_SIZE: 'four' })
  t.equal(code, 1)
  t.match(output, /^pyfleet: bad configuration: POOL_SIZE="four" is not an integer: use \d+\.\.\d+\n$/)
})

t.test('a HOST or PORT it cannot listen on exits 1 naming the setting', async (t) => {
  const unresolvable = await runServer({ POOL_SIZE: '1', HOST: 'pyfleet-test.invalid' })
  t.equal(unresolvable.code, 1)
  t.match(unresolvable.output, /^pyfleet: could not listen on HOST pyfleet-test\.invalid, PORT 0: getaddrinfo (ENOTFOUND|EAI_AGAIN) pyfleet-test\.invalid$/m)
  const { createServer } = await import('node:net')
  const taken = createServer()
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const port = String((taken.address() as { port: number }).port)
  const inUse = await runServer({ POOL_SIZE: '1', PORT: port })
  t.equal(inUse.code, 1)
  t.match(inUse.output, new RegExp(`^pyfleet: port ${port} on 127\\.0\\.0\\.1 is in use: stop the other server or set PORT$`, 'm'))
  // Found before any worker started: task imports may take a minute, and it was found after them.
  for (const { output } of [unresolvable, inUse]) t.notMatch(output, /worker ready|"stream":"stderr"|pool ready/)
})

t.test('a task module that fails to import exits 1 saying which and why', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'broken_tasks', PYTHONPATH: FIXTURES })
  t.equal(code, 1)
  t.match(output, /pyfleet: .*task module 'broken_tasks' raised RuntimeError on import: this module is broken on purpose/)
})

t.test('a task module that fails to import in one worker stops the others\' start at once: not reported after their slow imports', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-one-broken-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  // The other three import for 20 s, within WORKER_START_TIMEOUT_MS: before the change, they finished, said ready, and only then were stopped.
  const { code, output } = await runServer({ TASK_MODULES: 'first_worker_tasks', PYTHONPATH: FIXTURES, FIRST_WORKER_MARK: join(dir, 'mark'), FIRST_WORKER_DOES: 'fail', SLOW_IMPORT_S: '20', WORKER_START_TIMEOUT_MS: '60000', LOG_LEVEL: 'info' })
  t.equal(code, 1)
  t.match(output, /^pyfleet: .*task module 'first_worker_tasks' raised RuntimeError on import: this worker's import fails on purpose \(at first_worker_tasks\.py, line 20\)$/m, 'the failed import is the reason given')
  t.notMatch(output, /"msg":"worker ready"/, 'no other worker got as far as ready')
  const lines = output.split('\n')
  t.equal(lines.filter((line) => line.includes('"msg":"worker exited"')).length, 4, 'every worker\'s exit is logged: the three still importing were stopped')
  t.match(lines.filter((line) => line !== '').at(-1), /^pyfleet: /, 'and the reason comes last, after every exit')
})

t.test('a worker that was ready and exited while the others still started is replaced once the pool is up, not left dead in it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-first-exits-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  // The other worker imports for 2 s; the first is ready at once and gone 0.5 s later, before the pool exists to be told.
  const server = await startServer(t, { POOL_SIZE: '2', TASK_MODULES: 'first_worker_tasks', PYTHONPATH: FIXTURES, FIRST_WORKER_MARK: join(dir, 'mark'), FIRST_WORKER_DOES: 'exit', SLOW_IMPORT_S: '2' })
  // Its replacement imports for 2 s too; with no call made, nothing else would find the dead worker.
  await waitFor(() => server.app.pool.liveWorkers === 2, 15_000, 'two live workers')
  t.ok(server.logs.some((l) => l.msg === 'replacing worker' && l.reason === 'crash'), 'replaced as an idle worker that crashed is')
  t.equal((await callTask(server.url, 'first_worker.ping', null)).json, 'pong')
})

t.test('a failed start\'s one line comes after the log lines that explain it, where stdout and stderr are read together', async (t) => {
  // One pipe for both, as `2>&1` or a container's log: the order they were written in is the order read.
  const child = spawn('sh', ['-c', `exec "${process.execPath}" dist/server.js 2>&1`], { cwd: ROOT, env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', TASK_MODULES: 'broken_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1' } })
  let output = ''
  child.stdout.on('data', (d) => { output += String(d) })
  // 'close', not 'exit': the output is read whole only then (on a loaded machine 'exit' came first).
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  t.equal(code, 1)
  const lines = output.split('\n').filter((line) => line !== '')
  t.match(lines.at(-1), /^pyfleet: .*broken_tasks/, 'the last line is the reason')
  t.ok(lines.slice(0, -1).some((line) => line.includes('"msg":"worker exited"')), 'after the worker\'s exit was logged')
})

t.test('a task module that does not exist exits 1 with a hint', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'no_such_module' })
  t.equal(code, 1)
  t.match(output, /task module 'no_such_module' could not be imported.*check TASK_MODULES and PYTHONPATH/)
})

t.test('a task module in a package that is not on PYTHONPATH gets the PYTHONPATH hint, not "install"', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'no_such_package.tasks' })
  t.equal(code, 1)
  t.match(output, /task module 'no_such_package\.tasks' could not be imported.*check TASK_MODULES and PYTHONPATH/)
  t.notMatch(output, /install the package/)
})

t.test('a Python without defusedxml is not chosen: exit 1 naming the missing module', async (t) => {
  // The fixture shadows defusedxml with a module that fails to import, as if it were not installed.
  const { code, output } = await runServer({ PYTHON: python, PYTHONPATH: join(FIXTURES, 'no_defusedxml') })
  t.equal(code, 1)
  t.match(output, new RegExp(`PYTHON=${pythonPattern} cannot run the workers \\(${pythonPattern}: cannot import defusedxml\\).*apt-get install python3-msgpack python3-defusedxml`))
})

t.test('a PYTHON that is no working Python exits 1 saying what to point it at', async (t) => {
  const { code, output } = await runServer({ PYTHON: '/bin/false' })
  t.equal(code, 1)
  t.match(output, /PYTHON=\/bin\/false cannot run the workers \(\/bin\/false: exited with code 1 and printed nothing\): point PYTHON at an interpreter of Python 3\.10 or newer that has msgpack and defusedxml, or unset it/)
})

t.test('a Python older than 3.10 is not chosen: exit 1 naming its version', async (t) => {
  // The fixture makes the interpreter claim to be 3.9, whose workers would start and then lose
  // every failed task's traceback (the runtime uses 3.10's traceback.format_exception(exc)).
  const { code, output } = await runServer({ PYTHON: python, PYTHONPATH: join(FIXTURES, 'python_3_9') })
  t.equal(code, 1)
  t.match(output, new RegExp(`PYTHON=${pythonPattern} cannot run the workers \\(${pythonPattern}: Python 3\\.9\\.18 is too old: the workers need 3\\.10 or newer\\): point PYTHON at an interpreter of Python 3\\.10 or newer`))
})

t.test('a PYTHON that does not exist exits 1 saying so', async (t) => {
  const { code, output } = await runServer({ PYTHON: '/nonexistent/python3' })
  t.equal(code, 1)
  t.match(output, /PYTHON=\/nonexistent\/python3 cannot run the workers \(\/nonexistent\/python3: not found\)/)
})

t.test('a task module that imports for longer than 10 s still starts (no framework timeout under the workers\' own)', async (t) => {
  const server = await startServer(t, { TASK_MODULES: 'slow_import_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1', SLOW_IMPORT_S: '11' })
  t.equal((await callTask(server.url, 'slow_import.ping', null)).json, 'pong')
})

t.test('a worker that does not say ready within WORKER_START_TIMEOUT_MS fails the start: exit 1 naming the setting', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'slow_import_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1', SLOW_IMPORT_S: '5', WORKER_START_TIMEOUT_MS: '500' })
  t.equal(code, 1)
  // Where it was stuck, from the stack dump the worker is asked for before it is killed.
  t.match(output, /did not say ready within 500 ms: it was still importing \S+\/slow_import_tasks\.py, line 9 \(slow imports in a task module\? WORKER_START_TIMEOUT_MS sets the limit; every thread's stack is in the log\)/)
  t.match(output, /"msg":" {2}File \\"\S+\/slow_import_tasks\.py\\", line 9 in <module>"/, 'the stacks are logged')
})

t.test('SIGTERM while task modules are still importing ends the start at once: exit 0, no Python left', async (t) => {
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', POOL_SIZE: '2', TASK_MODULES: 'slow_import_tasks', PYTHONPATH: FIXTURES, SLOW_IMPORT_S: '60' }
  })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += String(d) })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  // Bounds a failure only (the import would take 60 s); nothing is timed.
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  t.teardown(() => { clearTimeout(killer); child.kill('SIGKILL') })
  await waitFor(async () => (await childPythonPids(child.pid as number)).length === 2, 10_000, 'both workers to be importing')
  const workers = await childPythonPids(child.pid as number)
  child.kill('SIGTERM')
  t.equal(await exited, 0)
  t.equal(stderr, 'pyfleet: SIGTERM during start-up: stopping the workers that are starting\npyfleet: stopped during start-up\n', 'why it ended, for the operator')
  // The server SIGKILLs them as it exits; dying takes the kernel a moment (once seen under load in CI).
  for (const pid of workers) {
    await waitFor(async () => !(await isRunning(pid)), 2000, `worker ${pid} to be gone`)
    t.pass(`worker ${pid} is gone`)
  }
})

t.test('user task modules from TASK_MODULES are served with their schemas', async (t) => {
  const server = await startServer(t, { TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '2' })
  const ok = await callTask(server.url, 'extra.greet', { name: 'Ada' })
  t.same(ok.json, { greeting: 'hello, Ada' })
  t.equal((await callTask(server.url, 'extra.greet', { name: '' })).status, 400)
  const rejected = await callTask(server.url, 'extra.greet', { name: 'nobody' })
  t.equal(rejected.status, 422)
  t.equal(rejected.json.message, 'nobody cannot be greeted')
  const pids = server.app.pool.snapshot().workers.map((w) => w.pid).sort()
  for (const kind of ['bytes_key', 'tuple_key', 'ext', 'ext0', 'ext66', 'ext116']) {
    for (const accept of ['application/json', 'application/msgpack']) {
      const odd = await callTask(server.url, 'extra.odd_result', { kind }, { accept })
      t.equal(odd.status, 500, `a result with ${kind} is the task's failure (${accept})`)
      t.equal(odd.json?.code, 'TASK_FAILED')
    }
  }
  t.same(server.app.pool.snapshot().workers.map((w) => w.pid).sort(), pids, 'and no worker was replaced for it')
  // fill_defaults=True: what a JSON body or a raw call's query leaves out comes from the schema.
  t.same((await callTask(server.url, 'extra.filled', {})).json, { text: '(no text)', n: 3 })
  t.same((await callTask(server.url, 'extra.filled', { n: 5 })).json, { text: '(no text)', n: 5 })
  const raw = await fetch(`${server.url}/api/tasks/extra.filled`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' })
  t.same(await raw.json(), { text: 'hi', n: 3 })
  const asked = await callTask(server.url, 'extra.request_id', null, { 'x-request-id': 'trace-42' })
  t.equal(asked.json, 'trace-42', 'pyfleet.request_id() is the request\'s x-request-id')
  const made = await callTask(server.url, 'extra.request_id', null)
  t.equal(made.json, made.headers.get('x-request-id'), 'or the one the server made')
  const logged = server.logs.map((line) => JSON.stringify(line)).join('\n')
  t.match(logged, /the result has a bytes dict key; use str keys/, 'the log says what the key is')
  t.match(logged, /the result has a tuple dict key \[1,2\]; use str keys/, 'and, for a tuple, which values made it')
})

t.test('tasks do not see the admin token', async (t) => {
  const server = await startServer(t, { TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1', ADMIN_TOKEN: 'secret-4829-token' })
  const seen = await callTask(server.url, 'extra.environ', { names: ['ADMIN_TOKEN', 'PYTHONPATH'] })
  t.equal(seen.status, 200)
  t.equal(seen.json.ADMIN_TOKEN, null)
  t.match(seen.json.PYTHONPATH, FIXTURES, 'while the rest of the environment is passed on')
})

/** The scheduling policy of a process, from field 41 of /proc/<pid>/stat (0 SCHED_OTHER, 3 SCHED_BATCH). */
async function schedPolicy (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which is in parentheses and may hold spaces: field 3 is index 0.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3])
}

t.test('WORKER_SCHED_BATCH=1 runs every worker, replacements included, as SCHED_BATCH', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  const nodePolicy = await schedPolicy(process.pid)
  const server = await startServer(t, { WORKER_SCHED_BATCH: '1', POOL_SIZE: '2', MAX_CALLS_PER_WORKER: '3' })
  const pids = (): number[] => server.app.pool.snapshot().workers.map((w) => w.pid as number) // null only before a worker has started
  const before = pids()
  t.same(await Promise.all(before.map(schedPolicy)), [3, 3])
  // Calls until both workers have been recycled (max_calls of 3): their replacements must be SCHED_BATCH too.
  // The deadline only bounds the wait for spares to start on a busy machine; nothing is timed.
  const deadline = Date.now() + 60_000
  let calls = 0
  while (pids().some((pid) => before.includes(pid)) && Date.now() < deadline) {
    t.equal((await callTask(server.url, 'echo', calls++)).status, 200)
  }
  const after = pids()
  t.ok(after.every((pid) => !before.includes(pid)), `both workers were replaced (after ${calls} calls)`)
  t.same(await Promise.all(after.map(schedPolicy)), [3, 3])

  t.equal(await schedPolicy(process.pid), nodePolicy, 'Node itself keeps its policy')

  // Without the setting, workers keep the policy they inherit from the server.
  const normal = await startServer(t, { POOL_SIZE: '1' })
  t.same(await Promise.all(normal.app.pool.snapshot().workers.map(async (w) => await schedPolicy(w.pid as number))), [nodePolicy], 'off by default')
})

t.test('workers are the OOM killer\'s first choice: their oom_score_adj is 500 above the server\'s', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2' })
  const own = Number(await readFile('/proc/self/oom_score_adj', 'utf8'))
  for (const worker of server.app.pool.snapshot().workers) {
    t.equal(Number(await readFile(`/proc/${worker.pid as number}/oom_score_adj`, 'utf8')), Math.min(1000, own + 500), `worker ${worker.id}`)
  }
})
