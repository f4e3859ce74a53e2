// Start-up: what the operator sees when configuration or Python is wrong, and
// user task modules loaded with TASK_MODULES.

import t from 'tap'
import { spawn } from 'node:child_process'
import { callTask, FIXTURES, ROOT, startServer } from '../helpers/server.js'

async function runServer (env: Record<string, string>): Promise<{ code: number | null, output: string }> {
  const child = spawn(process.execPath, ['dist/server.js'], { cwd: ROOT, env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ...env } })
  let output = ''
  child.stdout.on('data', (d) => { output += String(d) })
  child.stderr.on('data', (d) => { output += String(d) })
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  clearTimeout(killer)
  return { code, output }
}

t.test('a bad configuration value exits 1 with one line naming it', async (t) => {
  const { code, output } = await runServer({ POOL_SIZE: 'four' })
  t.equal(code, 1)
  t.match(output, /^pyfleet: bad configuration: POOL_SIZE="four" is not an integer\n$/)
})

t.test('a task module that fails to import exits 1 saying which and why', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'broken_tasks', PYTHONPATH: FIXTURES })
  t.equal(code, 1)
  t.match(output, /pyfleet: .*task module 'broken_tasks' raised RuntimeError on import: this module is broken on purpose/)
})

t.test('a task module that does not exist exits 1 with a hint', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'no_such_module' })
  t.equal(code, 1)
  t.match(output, /task module 'no_such_module' could not be imported.*check TASK_MODULES and PYTHONPATH/)
})

t.test('a Python without msgpack exits 1 with how to fix it', async (t) => {
  const { code, output } = await runServer({ PYTHON: '/bin/false' })
  t.equal(code, 1)
  t.match(output, /PYTHON=\/bin\/false cannot run the workers.*apt-get install python3-msgpack/)
})

t.test('user task modules from TASK_MODULES are served with their schemas', async (t) => {
  const server = await startServer(t, { TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '2' })
  const ok = await callTask(server.url, 'extra.greet', { name: 'Ada' })
  t.same(ok.json, { greeting: 'hello, Ada' })
  t.equal((await callTask(server.url, 'extra.greet', { name: '' })).status, 400)
  const rejected = await callTask(server.url, 'extra.greet', { name: 'nobody' })
  t.equal(rejected.status, 422)
  t.equal(rejected.json.message, 'nobody cannot be greeted')
})
