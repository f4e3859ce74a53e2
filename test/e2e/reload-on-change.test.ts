// RELOAD_ON_CHANGE on a real server: saving a task module's file reloads the workers, and
// the edit is served, however the file was saved; an edit that does not import leaves the
// workers on the code before.

import t from 'tap'
import { access, cp, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { callTask, getJson, startServer, waitFor, type Teardown, type TestServer } from '../helpers/server.js'

const greeting = (word: string): string => `from pyfleet import task\n\n\n@task("dev.greet", schema={"type": "object", "properties": {"name": {"type": "string"}}})\ndef greet(input):\n    """Say ${word}."""\n    return {"greeting": "${word}, " + input.get("name", "you")}\n`

/** A package devtasks/greeting.py in a directory of its own, served with RELOAD_ON_CHANGE. */
async function devServer (t: Teardown): Promise<{ server: TestServer, dir: string, file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-dev-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await mkdir(join(dir, 'devtasks'))
  const file = join(dir, 'devtasks', 'greeting.py')
  await writeFile(file, greeting('hello'))
  const server = await startServer(t, { POOL_SIZE: '2', TASK_MODULES: 'devtasks.greeting', PYTHONPATH: dir, RELOAD_ON_CHANGE: '1', LOG_LEVEL: 'info' })
  return { server, dir, file }
}

const reloadsOf = (server: TestServer): Array<Record<string, any>> => server.logs.filter((l) => l.trigger === 'change' && /^reload (finished|failed)/.test(String(l.msg)))
const greet = async (server: TestServer): Promise<unknown> => (await callTask(server.url, 'dev.greet', { name: 'Ada' })).json
/** dev.greet's description, as GET /api/tasks and the OpenAPI document give it (each kept until the table changes). */
const described = async (server: TestServer): Promise<string[]> => [
  ((await getJson(`${server.url}/api/tasks`)).tasks as Array<{ name: string, description: string }>).find((task) => task.name === 'dev.greet')?.description ?? '',
  (await getJson(`${server.url}/api/openapi.json`)).paths['/api/tasks/dev.greet'].post.summary
]

t.test('a saved edit is served after a rolling reload; a broken one is logged and the code before keeps serving', async (t) => {
  const { server, dir, file } = await devServer(t)
  t.match(server.logs.find((l) => /reload when a task source changes/.test(String(l.msg))), { watching: [/pyfleet_tasks$/, dir] }, 'it says what it looks at: the built-in tasks, and the PYTHONPATH entry')
  t.same(await greet(server), { greeting: 'hello, Ada' })
  t.same(await described(server), ['Say hello.', 'Say hello.'])

  await writeFile(file, greeting('good morning'))
  await waitFor(() => reloadsOf(server).length === 1, 30_000, 'the reload after the edit')
  t.match(reloadsOf(server)[0], { msg: 'reload finished', oldPids: [Number, Number], newPids: [Number, Number] }, 'both workers replaced')
  t.match(server.logs.find((l) => /^task sources changed/.test(String(l.msg))), { files: [file] }, 'naming the file')
  t.same(await greet(server), { greeting: 'good morning, Ada' }, 'the edit is served')
  t.same(await described(server), ['Say good morning.', 'Say good morning.'], 'and described: the task list and the OpenAPI document are made again')

  await writeFile(file, 'this is not Python\n')
  await waitFor(() => reloadsOf(server).length === 2, 30_000, 'the reload after the broken edit')
  t.match(reloadsOf(server)[1], { level: 50, msg: /^reload failed: Python worker .* did not start: task module 'devtasks\.greeting' raised NameError on import: .*; 0 of 2 workers replaced before it stopped; the other 2 keep serving the previous code$/, err: { message: /task module 'devtasks.greeting' raised NameError on import: name 'this' is not defined \(at devtasks\/greeting.py, line 1\)/ } }, 'the broken edit is logged, with why')
  t.same(await greet(server), { greeting: 'good morning, Ada' }, 'and the code before keeps serving')
  t.equal(server.logs.filter((l) => l.trigger === 'change' && l.msg === 'reload started').length, 2, 'one reload per save, not one per write')
  // A .pyc written by the reload in the second of a save hides a second save in that second, at the same size.
  await t.rejects(access(join(dir, 'devtasks', '__pycache__')), { code: 'ENOENT' }, 'no bytecode cache was written beside the task module')
})

t.test('saves that rename a new file over the old one, twice, and a package deleted and made again, are each seen', async (t) => {
  const { server, dir, file } = await devServer(t)
  for (const [round, word] of [[1, 'hi'], [2, 'hey']] as const) {
    // How many editors and sed -i save: a temporary file renamed over the original.
    await writeFile(`${file}.tmp`, greeting(word))
    await rename(`${file}.tmp`, file)
    await waitFor(() => reloadsOf(server).length === round, 30_000, `the reload after rename-save ${round}`)
    t.same(await greet(server), { greeting: `${word}, Ada` }, `rename-save ${round} is served`)
  }
  // A branch switch: the package goes, and comes back changed.
  const copy = join(dir, 'copy')
  await cp(join(dir, 'devtasks'), copy, { recursive: true })
  await writeFile(join(copy, 'greeting.py'), greeting('welcome back'))
  await rm(join(dir, 'devtasks'), { recursive: true })
  await rename(copy, join(dir, 'devtasks'))
  await waitFor(() => reloadsOf(server).length === 3, 30_000, 'the reload after the package came back')
  t.same(await greet(server), { greeting: 'welcome back, Ada' }, 'the package made again is served')
})

t.test('a helper module the task imports from another package is looked at too', async (t) => {
  const { server, dir, file } = await devServer(t)
  await mkdir(join(dir, 'common'))
  await writeFile(join(dir, 'common', '__init__.py'), '')
  await writeFile(join(dir, 'common', 'words.py'), 'WORD = "hello from common"\n')
  await writeFile(file, greeting('hello').replace('from pyfleet import task', 'from pyfleet import task\nfrom common.words import WORD').replace('"hello, " + ', 'WORD + ", " + '))
  await waitFor(() => reloadsOf(server).length === 1, 30_000, 'the reload after the task began to use the helper')
  t.same(await greet(server), { greeting: 'hello from common, Ada' })
  await writeFile(join(dir, 'common', 'words.py'), 'WORD = "changed in common"\n')
  await waitFor(() => reloadsOf(server).length === 2, 30_000, 'the reload after the helper changed')
  t.same(await greet(server), { greeting: 'changed in common, Ada' }, 'the helper\'s edit is served')
})

t.test('a package symlinked into a PYTHONPATH entry is looked at through the link; a link back up does not loop', async (t) => {
  // The package lives elsewhere (its own repository, say) and is linked in: Python imports through the
  // link, and the start-up check found it, but the walk skipped links and its edits went unseen.
  const home = await mkdtemp(join(tmpdir(), 'pyfleet-linked-'))
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-dev-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }); await rm(home, { recursive: true, force: true }) })
  await mkdir(join(home, 'devtasks'))
  await writeFile(join(home, 'devtasks', 'greeting.py'), greeting('hello'))
  await symlink(join(home, 'devtasks'), join(dir, 'devtasks'))
  await symlink(dir, join(home, 'devtasks', 'loop')) // back up: the walk must not go round for ever
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'devtasks.greeting', PYTHONPATH: dir, RELOAD_ON_CHANGE: '1', LOG_LEVEL: 'info' })
  t.same(await greet(server), { greeting: 'hello, Ada' })
  await writeFile(join(home, 'devtasks', 'greeting.py'), greeting('hi there'))
  await waitFor(() => reloadsOf(server).length === 1, 30_000, 'the reload after the linked package changed')
  t.same(await greet(server), { greeting: 'hi there, Ada' })
})

t.test('a TASK_MODULES package found elsewhere than on PYTHONPATH (installed, say) is named in a warning: its changes are not seen', async (t) => {
  // json: importable from Python's own library, so the start goes on (a module with no task is only warned about).
  const server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'json', RELOAD_ON_CHANGE: '1', LOG_LEVEL: 'info' })
  t.match(server.logs.find((l) => /is not found on PYTHONPATH/.test(String(l.msg))), { level: 40, package: 'json', msg: 'RELOAD_ON_CHANGE: json (TASK_MODULES) is not found on PYTHONPATH, so its changes are not seen; SIGHUP reloads it' })
})
