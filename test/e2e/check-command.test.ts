// Start-up's command line: `--check` (what it shows and what it fails on, where a start would
// only warn), `--help` and `--version`, the entry point, and misspelt settings. The rest of
// start-up, what an operator sees when configuration or Python is wrong, is startup.test.ts.

import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FIXTURES, ROOT, runServer, startServer } from '../helpers/server.js'
import { makeMemoryCgroup } from '../helpers/cgroups.js'

t.test('--check starts the workers once, prints the task table as it would be served, and stops: exit 0, nothing listens', async (t) => {
  const { code, output } = await runServer({ POOL_SIZE: '2', TASK_TIMEOUTS: 'echo=1234', DIAG_TASKS: '1' }, ['--check'])
  t.equal(code, 0)
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'))
  t.match(output, new RegExp(`^pyfleet ${version.replace(/\./g, '\\.')}: the configuration is valid \\(HOST and PORT are not tried\\), and 2 workers started with /\\S+ \\(Python 3\\.\\d+\\.\\d+\\)\\.\\n8 tasks, as the server would serve them:\\n`))
  t.match(output, /\n {2}echo +timeout 1234 ms +2 at once +JSON\/msgpack only +returns anything +Return the input unchanged/, 'settings applied as serving applies them')
  t.match(output, /\n {2}xml\.import +timeout 30000 ms +2 at once +raw application\/xml, text\/xml +returns object /)
  t.notMatch(output, /Server listening/)
})

t.test('a variable that looks like a misspelt setting is warned about at start, and the setting keeps its value', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1', POOLSIZE: '3' })
  t.match(server.logs.find((l) => l.setting === 'POOLSIZE'), { level: 40, meant: ['POOL_SIZE'], msg: 'POOLSIZE is not a pyfleet setting, and is ignored: did you mean POOL_SIZE?' })
  t.equal(server.app.pool.snapshot().workers.length, 1)
})

t.test('node dist/main.js, which is not the entry point, says which is instead of exiting 0 with nothing started', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-main-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await symlink(join(ROOT, 'dist', 'main.js'), join(dir, 'linked.js'))
  // As written, without its extension, and through a symlink (a review found the last two silent).
  for (const entry of ['dist/main.js', 'dist/main', join(dir, 'linked.js')]) {
    const child = spawn(process.execPath, [entry], { cwd: ROOT, env: { PATH: process.env.PATH } })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += String(d) })
    const code = await new Promise((resolve) => child.once('exit', resolve))
    t.equal(code, 1, entry)
    t.equal(stderr, 'pyfleet: dist/main.js is not the entry point: start the server with node dist/server.js (or npm start)\n')
  }
})

t.test('--check fails on a variable that looks like a misspelt setting, before any worker starts: TASK_MODULE left the user\'s tasks out of a check that passed', async (t) => {
  const { code, output } = await runServer({ POOL_SIZE: '1', TASK_MODULE: 'mytasks.shop' }, ['--check'])
  t.equal(code, 1)
  t.match(output, /pyfleet: TASK_MODULE is not a pyfleet setting, and is ignored: did you mean TASK_MODULES\? \(--check fails on a variable that looks like a misspelt setting: correct its name, or unset it\)/)
  t.notMatch(output, /worker started|"stream":"stderr"/, 'no worker was started')
})

t.test('a MAX_WORKER_RSS_MB below an idle worker\'s memory fails --check, and a server warns of it: every call would replace its worker', async (t) => {
  const { code, output } = await runServer({ POOL_SIZE: '1', MAX_WORKER_RSS_MB: '5' }, ['--check'])
  t.equal(code, 1)
  t.match(output, /MAX_WORKER_RSS_MB=5 is below what a worker uses before any call \(\d+ MB with these task modules\): every call would replace its worker/)
  const server = await startServer(t, { POOL_SIZE: '1', MAX_WORKER_RSS_MB: '5' })
  t.match(server.logs.find((line) => /^MAX_WORKER_RSS_MB=5 is below/.test(line.msg ?? '')), { level: 40, maxWorkerRssMb: 5 })
  const fine = await startServer(t, { POOL_SIZE: '1', MAX_WORKER_RSS_MB: '256' })
  t.notOk(fine.logs.some((line) => /^MAX_WORKER_RSS_MB=/.test(line.msg ?? '')), 'not at 256')
})

t.test('the example in the pyfleet package\'s docstring (help(pyfleet)) passes --check as it is', async (t) => {
  const source = await readFile(join(ROOT, 'workers', 'pyfleet', '__init__.py'), 'utf8')
  const docstring = source.slice(3, source.indexOf('"""', 3))
  const example = docstring.split('\n').filter((line) => line.startsWith('    ')).map((line) => line.slice(4)).join('\n')
  t.match(example, /@task\("greet"/, 'the example found')
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-docstring-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 'docstring_example.py'), example + '\n')
  const { code, output } = await runServer({ TASK_MODULES: 'docstring_example', PYTHONPATH: dir, POOL_SIZE: '1' }, ['--check'])
  t.equal(code, 0, output)
  t.match(output, /\n {2}greet +timeout/)
})

t.test('--check stops on what a start only warns about: a TASK_MODULES entry with no task, a TASK_TIMEOUTS entry naming none', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-empty-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await mkdir(join(dir, 'mytasks'))
  await writeFile(join(dir, 'mytasks', '__init__.py'), '')
  await writeFile(join(dir, 'mytasks', 'greeting.py'), 'from pyfleet import task\n\n@task("greet")\ndef greet(input):\n    return input\n')
  const noTask = await runServer({ TASK_MODULES: 'mytasks', PYTHONPATH: dir, POOL_SIZE: '1' }, ['--check'])
  t.equal(noTask.code, 1)
  t.match(noTask.output, /pyfleet: .*task module 'mytasks' registered no task: name the module that holds the @task functions \(e\.g\. mytasks\.greeting for mytasks\/greeting\.py\), or import them in its __init__ \(--check fails on this; a server would start, and warn of it\)/)
  t.notMatch(noTask.output, /the configuration is valid/)
  const typo = await runServer({ TASK_MODULES: 'mytasks.greeting', PYTHONPATH: dir, POOL_SIZE: '1', TASK_TIMEOUTS: 'greeting=1000' }, ['--check'])
  t.equal(typo.code, 1)
  t.match(typo.output, /pyfleet: could not start: TASK_TIMEOUTS names tasks no worker declares: greeting \(the tasks are [^)]*\bgreet\b/)
  t.notMatch(typo.output, /ignored/, 'not "ignored": the check stops on it')
  const fine = await runServer({ TASK_MODULES: 'mytasks.greeting', PYTHONPATH: dir, POOL_SIZE: '1', TASK_TIMEOUTS: 'greet=1000' }, ['--check'])
  t.equal(fine.code, 0, fine.output)
  t.match(fine.output, /\n {2}greet +timeout 1000 ms +1 at once +JSON\/msgpack only +returns \? /, 'a task without an output schema')
})

t.test('--check shows what task modules print while they import (a slow load says what it is doing), and not the server\'s own info lines', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'slow_import_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '2', SLOW_IMPORT_S: '0.2' }, ['--check'])
  t.equal(code, 0, output)
  t.equal(output.match(/"stream":"stderr","msg":"slow_import_tasks: loading for 0\.2 s"/g)?.length, 1, 'once, not once per worker')
  t.notMatch(output, /"msg":"pool ready/, 'the server\'s info lines stay out of the report')
})

t.test('--check of a task module that fails to import exits 1 with the reason a start would give', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'broken_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1' }, ['--check'])
  t.equal(code, 1)
  t.match(output, /pyfleet: .*task module 'broken_tasks' raised RuntimeError on import: this module is broken on purpose/)
  t.notMatch(output, /the configuration is valid/)
})

t.test('--check of a task whose schema\'s default fails that schema exits 1, naming the task, its module and the default', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'bad_default_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1' }, ['--check'])
  t.equal(code, 1)
  t.match(output, /task bad\.default \(at bad_default_tasks\.py, line 6\) declares an invalid input schema: the default at \/properties\/top \("ten"\) fails its own schema: must be integer/)
  t.notMatch(output, /the configuration is valid/)
})

t.test('--check of tasks whose ready message is past its limit exits 1, saying what the limit is and what to change', async (t) => {
  const { code, output } = await runServer({ TASK_MODULES: 'huge_table_tasks', PYTHONPATH: FIXTURES, POOL_SIZE: '1', MAX_FRAME_BYTES: '2000', BODY_LIMIT_BYTES: '1000' }, ['--check'])
  t.equal(code, 1)
  t.match(output, /frame of \d+ bytes is over the limit of 16777216 \(for the ready message, which lists every task with its schemas: MAX_FRAME_BYTES or 16 MiB, whichever is larger; raise MAX_FRAME_BYTES, or declare fewer or smaller schemas\)/)
})

t.test('the command line: --help and --version exit 0; any other argument exits 1 saying settings are environment variables', async (t) => {
  const help = await runServer({}, ['--help'])
  t.equal(help.code, 0)
  t.match(help.output, /^Usage: node dist\/server\.js \[--check \| --help \| --version\]/)
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'))
  t.same(await runServer({}, ['--version']), { code: 0, output: `pyfleet ${version}\n` })
  for (const args of [['--port', '8080'], ['8080'], ['--check', '--help']]) {
    const { code, output } = await runServer({}, args)
    t.equal(code, 1, args.join(' '))
    t.match(output, /^pyfleet: (unknown argument "(--port|8080)": pyfleet is configured by environment variables \(PORT=8080, not --port 8080\)|one option at a time: --check --help); --help lists the options\n$/)
  }
})

t.test('--check in a memory cgroup smaller than POOL_SIZE x MAX_WORKER_RSS_MB warns, naming what to set, and still passes', async (t) => {
  const cgroup = await makeMemoryCgroup('pyfleet-sizing', 1024 * 1024 * 1024)
  if (cgroup === undefined) {
    t.pass('needs root and a writable memory cgroup', { skip: 'no memory cgroup to make here' })
    return
  }
  t.teardown(cgroup.remove)
  // The shell joins the cgroup, then becomes the server: it reads its limits as it would in a container of 1 GiB.
  const child = spawn('sh', ['-c', `echo $$ > ${cgroup.path}/cgroup.procs && exec "${process.execPath}" dist/server.js --check`],
    { cwd: ROOT, env: { PATH: process.env.PATH, POOL_SIZE: '4', MAX_WORKER_RSS_MB: '512' } })
  let output = ''
  child.stdout.on('data', (d) => { output += String(d) })
  child.stderr.on('data', (d) => { output += String(d) })
  const code = await new Promise((resolve) => child.once('exit', resolve))
  t.equal(code, 0, 'a warning: the limit may be set with tasks in mind the check cannot see')
  t.match(output, /POOL_SIZE=4 workers may each grow to MAX_WORKER_RSS_MB=512 before they are recycled: with Node's ~200 MB that is 2248 MB, above the cgroup's memory limit of 1024 MB\. The kernel's OOM killer would act before recycling: it ends a worker and its call with a 502, or the whole container where its cgroup is killed as a group \(Kubernetes 1\.28\+ on cgroup v2\)\. Set MAX_WORKER_RSS_MB to 206 or less/)
})
