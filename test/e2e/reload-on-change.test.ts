// RELOAD_ON_CHANGE on a real server: saving a task module's file reloads the workers, and
// the edit is served; an edit that does not import leaves the workers on the code before.

import t from 'tap'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { callTask, startServer, waitFor } from '../helpers/server.js'

const greeting = (word: string): string => `from pyfleet import task\n\n\n@task("dev.greet", schema={"type": "object", "properties": {"name": {"type": "string"}}})\ndef greet(input):\n    return {"greeting": "${word}, " + input.get("name", "you")}\n`

t.test('a saved edit is served after a rolling reload; a broken one is logged and the code before keeps serving', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-dev-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await mkdir(join(dir, 'devtasks'))
  await writeFile(join(dir, 'devtasks', 'greeting.py'), greeting('hello'))
  const server = await startServer(t, { POOL_SIZE: '2', TASK_MODULES: 'devtasks.greeting', PYTHONPATH: dir, RELOAD_ON_CHANGE: '1', LOG_LEVEL: 'info' })
  t.match(server.logs.find((l) => /reload when a task source changes/.test(String(l.msg))), { watching: [/pyfleet_tasks$/, join(dir, 'devtasks')] }, 'it says what it watches')
  t.same((await callTask(server.url, 'dev.greet', { name: 'Ada' })).json, { greeting: 'hello, Ada' })

  const reloads = (): Array<Record<string, any>> => server.logs.filter((l) => l.trigger === 'change' && /^reload (finished|failed)/.test(String(l.msg)))
  await writeFile(join(dir, 'devtasks', 'greeting.py'), greeting('good morning'))
  await waitFor(() => reloads().length === 1, 30_000, 'the reload after the edit')
  t.match(reloads()[0], { msg: 'reload finished', oldPids: [Number, Number], newPids: [Number, Number] }, 'both workers replaced')
  t.ok(reloads()[0].tasks.includes('dev.greet'))
  t.match(server.logs.find((l) => /^task sources changed/.test(String(l.msg))), { files: [join(dir, 'devtasks', 'greeting.py')] }, 'naming the file')
  t.same((await callTask(server.url, 'dev.greet', { name: 'Ada' })).json, { greeting: 'good morning, Ada' }, 'the edit is served')

  await writeFile(join(dir, 'devtasks', 'greeting.py'), 'this is not Python\n')
  await waitFor(() => reloads().length === 2, 30_000, 'the reload after the broken edit')
  t.match(reloads()[1], { level: 50, msg: 'reload failed: 0 of 2 workers replaced before it stopped; the other 2 keep serving the previous code', err: { message: /task module 'devtasks.greeting' raised NameError on import: name 'this' is not defined \(at devtasks\/greeting.py, line 1\)/ } }, 'the broken edit is logged, with why')
  t.same((await callTask(server.url, 'dev.greet', { name: 'Ada' })).json, { greeting: 'good morning, Ada' }, 'and the code before keeps serving')
  t.equal(server.logs.filter((l) => l.trigger === 'change' && l.msg === 'reload started').length, 2, 'one reload per save, not one per write event')
})
