// PythonWorker against a real Python process.

import t from 'tap'
import { closeSync, openSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { EXIT_PROTOCOL_ERROR, PythonWorker, type WorkerOptions } from '../../src/pool/python-worker.js'
import { WorkerCallError, WorkerStartError } from '../../src/pool/worker-failures.js'
import { resolvePython } from '../../src/python-path.js'
import { FIXTURES, ROOT, isRunning, waitFor } from '../helpers/server.js'

const python = (await resolvePython(undefined, ROOT)).path

function options (id: number, extraArgs: string[] = []): WorkerOptions {
  return {
    id,
    python,
    args: ['-m', 'pyfleet', '--diag', ...extraArgs],
    env: { PATH: process.env.PATH, PYTHONPATH: `${join(ROOT, 'workers')}:${FIXTURES}` },
    cwd: ROOT,
    maxFrameBytes: 1 << 20,
    startTimeoutMs: 20_000,
    log: pino({ level: 'silent' })
  }
}

t.test('out of files, a start fails with words, and the process lives on (it ended the server)', async (t) => {
  // Every file this process may open taken: spawn() cannot make the worker's pipes.
  const held: number[] = []
  try { for (;;) held.push(openSync('/dev/null', 'r')) } catch { /* EMFILE: the limit is reached */ }
  let error: unknown
  try {
    await PythonWorker.spawn(options(1))
  } catch (caught) {
    error = caught
  } finally {
    for (const fd of held) closeSync(fd)
  }
  t.ok(held.length > 0)
  t.match(error, { message: /its pipes could not be made: too many open files/ })
  // spawn()'s own 'error' comes a tick later: it must find a listener, not a worker half made.
  await new Promise((resolve) => setTimeout(resolve, 100))
  const worker = await PythonWorker.spawn(options(2))
  t.equal(worker.state, 'idle', 'the next start, with files free, works')
  await worker.stop(2000)
})

t.test('starts, says ready with its tasks, runs calls and stops at stdin EOF', async (t) => {
  const worker = await PythonWorker.spawn(options(1))
  t.equal(worker.state, 'idle')
  t.ok(worker.tasks.some((task) => task.name === 'echo'))
  const reply = await worker.call('echo', { x: [1, 2] }, 'req-1', 5000)
  t.match(reply, { t: 'result', id: 1, value: { x: [1, 2] } })
  t.equal(Buffer.from((reply as { msgpack?: Uint8Array }).msgpack ?? []).toString('hex'), '81a1789201' + '02', 'the value\'s own bytes, as the worker wrote them')
  t.equal(worker.calls, 1)
  t.ok(await worker.sampleRss() > 1_000_000, 'RSS is read from /proc')
  const pid = worker.pid
  await worker.stop(2000)
  t.equal(worker.state, 'dead')
  t.notOk(await isRunning(pid))
  t.match(worker.exitDescription, /^exited with code 0/, 'at stdin EOF, not by the SIGTERM after the grace')
})

t.test('a worker asked to stop during a call answers it, and goes on stopping: not idle, no other call', async (t) => {
  const worker = await PythonWorker.spawn(options(1))
  const reply = worker.call('diag.work', { sleep_ms: 300 }, 'req-1', 5000)
  const stopped = worker.stop(10_000)
  t.match(await reply, { t: 'result' }, 'its call is answered')
  t.equal(worker.state, 'stopping')
  t.notOk(worker.isAlive)
  t.throws(() => worker.call('echo', 1, 'req-2', 5000), /worker 1 is stopping, not idle/)
  await stopped
  t.equal(worker.state, 'dead')
})

t.test('with --max-rss-bytes, a worker past it says its RSS in each reply, and a result\'s value bytes are still found as it wrote them', async (t) => {
  const worker = await PythonWorker.spawn(options(1, ['--max-rss-bytes', '1']))
  t.teardown(async () => { await worker.stop(2000) })
  const reply = await worker.call('echo', { x: [1, 2] }, 'req-1', 5000) as { rss?: number, msgpack?: Uint8Array, value: unknown }
  t.same(reply.value, { x: [1, 2] })
  t.ok(typeof reply.rss === 'number' && reply.rss > 1_000_000, `the worker's RSS: ${String(reply.rss)}`)
  t.equal(Buffer.from(reply.msgpack ?? []).toString('hex'), '81a1789201' + '02', 'the value\'s own bytes, after the rss key')
  const failed = await worker.call('diag.work', { raise: 'no' }, 'req-2', 5000) as { t: string, rss?: number }
  t.match(failed, { t: 'error', kind: 'failed' })
  t.ok(typeof failed.rss === 'number' && failed.rss > 1_000_000, 'an error reply says it too')
  const under = PythonWorker.spawn(options(2, ['--max-rss-bytes', String(2 ** 40)]))
  const unflagged = await (await under).call('echo', 1, 'req-3', 5000)
  t.notOk('rss' in unflagged, 'under the limit, nothing')
  await (await under).stop(2000)
})

t.test('a call past its timeout rejects with failure "timeout" and the process is killed', async (t) => {
  const worker = await PythonWorker.spawn(options(1))
  const error = await worker.call('diag.work', { sleep_ms: 10_000 }, 'req', 100).catch((e: unknown) => e)
  t.ok(error instanceof WorkerCallError)
  t.equal((error as WorkerCallError).failure, 'timeout')
  await t.resolves(worker.kill())
  t.equal(worker.state, 'dead')
})

t.test('a reply waiting in the pipe when a late timer fires is taken: an event loop held past the deadline kills no worker', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  const worker = await PythonWorker.spawn({ ...options(1), log })
  const call = worker.call('diag.work', { sleep_ms: 10 }, 'req', 50)
  // Node is kept busy past both the reply and the deadline (another request's huge body,
  // say): when it looks again, the timer runs first (timers before I/O in the event loop).
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300)
  t.match(await call, { t: 'result' }, 'the reply that had arrived answers the call')
  t.equal(worker.state, 'idle', 'and the worker stays')
  t.equal(worker.failure, undefined)
  t.same(lines.filter((l) => /broke the protocol/.test(String(l.msg))), [], 'nothing logged as a protocol error')
  await worker.stop(2000)
})

t.test('bytes read from stdout after the worker has exited are no protocol error of a worker already gone', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  const worker = await PythonWorker.spawn({ ...options(1, ['--module', 'spawner_tasks']), log })
  // The task exits at once; a process it left holding the protocol pipe writes a frame header past any limit 0.3 s later.
  const error = await worker.call('spawner.garbage_after_exit', {}, 'req', 10_000).catch((e: unknown) => e)
  t.equal((error as WorkerCallError).failure, 'crash', 'the exit is the call\'s failure')
  t.equal(worker.state, 'dead')
  await waitFor(() => worker.exitDescription !== undefined, 2000, 'the exit')
  await new Promise((resolve) => setTimeout(resolve, 600))
  t.same(lines.filter((l) => /broke the protocol/.test(String(l.msg))), [], 'the bytes after the exit are not logged as the dead worker\'s protocol error')
  t.equal(worker.failure, 'crash')
})

t.test('a late timer still times out a call whose worker has not answered', async (t) => {
  const worker = await PythonWorker.spawn(options(1))
  const call = worker.call('diag.work', { sleep_ms: 10_000 }, 'req', 50).catch((e: unknown) => e)
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300)
  const error = await call
  t.equal((error as WorkerCallError).failure, 'timeout')
  await worker.kill()
  t.equal(worker.failure, 'timeout')
})

t.test('a call past its timeout: the worker\'s stacks are logged under its request id, then it is killed', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  const worker = await PythonWorker.spawn({ ...options(1), log })
  const error = await worker.call('diag.work', { sleep_ms: 10_000 }, 'stuck-1', 200).catch((e: unknown) => e)
  t.equal((error as WorkerCallError).failure, 'timeout')
  await waitFor(() => worker.state === 'dead', 5000, 'the worker to be killed')
  const stack = lines.filter((l) => l.stream === 'stderr' && l.requestId === 'stuck-1').map((l) => String(l.msg))
  t.match(stack.join('\n'), /most recent call first/, 'a stack dump')
  t.ok(stack.some((line) => /File ".*pyfleet_tasks\/diag\.py", line \d+ in /.test(line)), 'naming the line of the task where it was stuck')
})

t.test('a task that set SIGUSR1\'s handler during an earlier call: the stacks of a later call past its timeout are logged all the same, and the change once', async (t) => {
  for (const how of ['ignore', 'python', 'faulthandler-file', 'faulthandler-off']) {
    const lines: Array<Record<string, unknown>> = []
    const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
    const worker = await PythonWorker.spawn({ ...options(1, ['--module', 'extra_tasks']), log })
    t.match(await worker.call('extra.take_sigusr1', how, 'take', 5000), { value: 'taken' })
    const error = await worker.call('diag.work', { sleep_ms: 10_000 }, `stuck-${how}`, 200).catch((e: unknown) => e)
    t.equal((error as WorkerCallError).failure, 'timeout')
    await waitFor(() => worker.state === 'dead', 5000, 'the worker to be killed')
    const stack = lines.filter((l) => l.stream === 'stderr' && l.requestId === `stuck-${how}`).map((l) => String(l.msg))
    t.ok(stack.some((line) => /File ".*pyfleet_tasks\/diag\.py", line \d+ in /.test(line)), `${how}: the stack names the task's line`)
    const change = how.startsWith('faulthandler') ? 'changed faulthandler\'s SIGUSR1 registration \\(faulthandler\\.register/unregister\\)' : 'changed the SIGUSR1 handler'
    // Under whichever request id: the warning goes to stderr before the reply goes to stdout,
    // but Node may read the reply first and start the next call before it reads the warning.
    t.ok(lines.some((l) => new RegExp(`task 'extra\\.take_sigusr1' ${change}, which writes the stacks of a call past its timeout to the log; undone after the call`).test(String(l.msg))), `${how}: the change is logged`)
  }
})

t.test('an async task past its timeout: the stacks of its pending coroutines are logged too, down to the await it is stuck on', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  for (const [task, requestId] of [['hang.await', 'stuck-await'], ['hang.helpers', 'stuck-helpers']]) {
    const worker = await PythonWorker.spawn({ ...options(1, ['--module', 'async_hang_tasks']), log })
    const error = await worker.call(task, {}, requestId, 300).catch((e: unknown) => e)
    t.equal((error as WorkerCallError).failure, 'timeout')
    await waitFor(() => worker.state === 'dead', 5000, 'the worker to be killed')
  }
  const dump = (requestId: string): string => lines.filter((l) => l.stream === 'stderr' && l.requestId === requestId).map((l) => String(l.msg)).join('\n')
  // faulthandler alone showed the event loop's select() and nothing of the task's own code.
  t.match(dump('stuck-await'), /Asyncio task '[^']+' \(most recent call first\):\n {2}awaiting <Future pending[^\n]*\n {2}File ".*async_hang_tasks\.py", line 10 in wait_for_reply\n {2}File ".*async_hang_tasks\.py", line 17 in hang_await/)
  const helpers = dump('stuck-helpers')
  t.match(helpers, /File ".*async_hang_tasks\.py", line 24 in hang_helpers/, 'the task itself')
  t.match(helpers, /Asyncio task 'helper-0'[^\n]*\n(?: {2}[^\n]*\n)* {2}File ".*asyncio\/tasks\.py", line \d+ in sleep/, 'and the tasks it started, each with its own stack')
  t.match(helpers, /Asyncio task 'helper-1'/)
})

t.test('a worker that dies mid-call rejects with failure "crash"', async (t) => {
  const worker = await PythonWorker.spawn(options(1))
  const error = await worker.call('diag.work', { exit: 7 }, 'req', 5000).catch((e: unknown) => e)
  t.equal((error as WorkerCallError).failure, 'crash')
  t.match((error as Error).message, /exited with code 7/)
})

t.test('a line a task printed with the runtime\'s fatal prefix is not quoted as the reason a later call\'s worker died', async (t) => {
  for (const [how, die] of [
    ['killed by a signal', (worker: PythonWorker) => { process.kill(worker.pid, 'SIGKILL') }],
    ['exited with a code', undefined]
  ] as const) {
    const worker = await PythonWorker.spawn(options(1))
    await worker.call('diag.work', { print: 'pyfleet-fatal: disk is corrupt, call oncall' }, 'req-print', 5000)
    // The printed line has reached the server before the next call (stderr is a pipe of its own).
    await new Promise((resolve) => setTimeout(resolve, 200))
    const dying = worker.call('diag.work', die === undefined ? { exit: 7 } : { sleep_ms: 5000 }, 'req-dies', 10_000).catch((e: unknown) => e)
    if (die !== undefined) { await new Promise((resolve) => setTimeout(resolve, 200)); die(worker) }
    const error = await dying
    t.equal((error as WorkerCallError).failure, 'crash', how)
    t.notMatch((error as Error).message, /disk is corrupt/, `${how}: ${(error as Error).message}`)
  }
})

t.test('a worker that exits with the runtime\'s protocol-error code (5) rejects with failure "protocol"', async (t) => {
  // The runtime exits 5 when it refuses a frame from the server; Node sees only the code.
  const worker = await PythonWorker.spawn(options(1))
  const error = await worker.call('diag.work', { exit: 5 }, 'req', 5000).catch((e: unknown) => e)
  t.equal((error as WorkerCallError).failure, 'protocol')
  t.match((error as Error).message, /exited with code 5/)
})

t.test('a module that fails on import is a WorkerStartError naming it', async (t) => {
  const error = await PythonWorker.spawn(options(1, ['--module', 'broken_tasks'])).catch((e: unknown) => e)
  t.ok(error instanceof WorkerStartError)
  t.match((error as Error).message, /task module 'broken_tasks' raised RuntimeError on import: this module is broken on purpose/)
})

t.test('a missing interpreter is a WorkerStartError', async (t) => {
  const error = await PythonWorker.spawn({ ...options(1), python: '/nonexistent/python3' }).catch((e: unknown) => e)
  t.ok(error instanceof WorkerStartError)
  t.match((error as Error).message, /ENOENT/)
})

t.test('stop escalates: stdin closed, SIGTERM after the grace, SIGKILL after as long again for a worker that survives both', async (t) => {
  const lines: string[] = []
  const log = pino({ level: 'warn' }, { write (line: string) { lines.push(JSON.parse(line).msg as string) } })
  const exits: Array<NodeJS.Signals | null> = []
  const worker = await PythonWorker.spawn({ ...options(1, ['--module', 'extra_tasks']), log, onExit: (_w, _code, signal) => { exits.push(signal) } })
  const running = worker.call('extra.stubborn', { sleep_s: 30 }, 'req', 60_000).catch((e: unknown) => e)
  await waitFor(() => lines.some((l) => /survives SIGTERM now/.test(l)), 10_000, 'the task to survive SIGTERM')
  const graceMs = 200
  const stopping = performance.now()
  await worker.stop(graceMs)
  const tookMs = performance.now() - stopping
  t.ok(lines.some((l) => /got SIGTERM and goes on/.test(l)), 'a SIGTERM was sent (and survived)')
  t.same(exits, ['SIGKILL'], 'the SIGKILL ended it')
  // A lower bound only: the SIGKILL cannot come before 2 x grace, however slow the machine.
  t.ok(tookMs >= 2 * graceMs, `the SIGKILL came after 2 x the grace (${Math.round(tookMs)} ms)`)
  t.equal(((await running) as WorkerCallError).failure, 'crash', 'the call in flight is told')
})

t.test('the exit code that means "protocol" is the one the runtime exits with', async (t) => {
  const { readFile } = await import('node:fs/promises')
  const reporting = await readFile(join(ROOT, 'workers', 'pyfleet', 'reporting.py'), 'utf8')
  t.equal(Number(/^EXIT_PROTOCOL_ERROR = (\d+)$/m.exec(reporting)?.[1]), EXIT_PROTOCOL_ERROR)
})
