// examples/: README's task and its unit test are the files there, word for word; the
// task's test passes; both example clients get the answers examples/README.md shows
// from a real server, and wait out a busy one by its Retry-After; README's curl lines
// for the sample files in examples/data/ print what README says they print.

import t from 'tap'
import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { resolvePython } from '../../src/python-path.js'
import { callTask, ROOT, startServer, waitFor } from '../helpers/server.js'

const run = promisify(execFile)
const EXAMPLES = join(ROOT, 'examples')
const PYTHON_CLIENT = join(EXAMPLES, 'clients', 'call.py')
const NODE_CLIENT = join(EXAMPLES, 'clients', 'call.mjs')

const python = async (): Promise<string> => (await resolvePython(process.env.PYTHON || undefined, ROOT)).path

t.test('README shows the example task and its test as they are in examples/', async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const blocks = [...readme.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1])
  for (const file of ['mytasks/greeting.py', 'test_greeting.py']) {
    const text = await readFile(join(EXAMPLES, file), 'utf8')
    t.ok(blocks.includes(text), `README has examples/${file} word for word`)
  }
})

t.test('the example task\'s unit test passes, without a server', async (t) => {
  const { stderr } = await run(await python(), ['-m', 'unittest', 'test_greeting'], {
    cwd: EXAMPLES, env: { ...process.env, PYTHONPATH: `${join(ROOT, 'workers')}:${EXAMPLES}`, PYTHONDONTWRITEBYTECODE: '1' }
  })
  t.match(stderr, /^Ran 3 tests in [\d.]+s\n\nOK\n$/m)
})

t.test('both clients get the answers examples/README.md shows', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '2', TASK_MODULES: 'mytasks.greeting', PYTHONPATH: EXAMPLES })
  const env = { ...process.env, PYFLEET_URL: server.url }
  const fromPython = await run(await python(), [PYTHON_CLIENT], { env })
  t.equal(fromPython.stdout, [
    "json: {'greeting': 'hello, Ada'}",
    "msgpack: {'at_ms': 1764400000123, 'big': 4611686018427387904}",
    "refused: 422 TASK_REJECTED_INPUT: nobody cannot be greeted {'field': 'name'}",
    ''
  ].join('\n'))
  const fromNode = await run(process.execPath, [NODE_CLIENT], { env })
  t.equal(fromNode.stdout, [
    'json: {"greeting":"hello, Ada"}',
    'msgpack: 1764400000123 number 4611686018427387904n bigint',
    'refused: 422 TASK_REJECTED_INPUT: nobody cannot be greeted {"field":"name"}',
    ''
  ].join('\n'))
})

t.test('both clients wait out a full queue by its Retry-After, then get their answer', async (t) => {
  // One worker, no queue: while it runs a 5 s call, every other call is a 503 QUEUE_FULL with Retry-After: 1.
  const server = await startServer(t, { POOL_SIZE: '1', QUEUE_LIMIT: '0', TASK_MODULES: 'mytasks.greeting', PYTHONPATH: EXAMPLES })
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 5000 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const env = { ...process.env, PYFLEET_URL: server.url }
  const [fromPython, fromNode] = await Promise.all([
    run(await python(), ['-c', 'import call; print(call.call("greet", {"name": "Ada"}, attempts=12))'], { env, cwd: join(EXAMPLES, 'clients') }),
    run(process.execPath, ['--input-type=module', '-e', `import { call } from ${JSON.stringify(NODE_CLIENT)}; console.log(JSON.stringify(await call('greet', { name: 'Ada' }, { attempts: 12 })))`], { env })
  ])
  t.equal(fromPython.stdout, "{'greeting': 'hello, Ada'}\n")
  t.equal(fromNode.stdout, '{"greeting":"hello, Ada"}\n')
  t.equal((await busy).status, 200)
  const refused = server.logs.filter((line) => line.msg === 'request completed' && line.statusCode === 503 && line.url === '/api/tasks/greet')
  t.ok(refused.length >= 2, `each client was refused at least once and came back (${refused.length} refusals)`)
})

t.test('both clients report an error that is not pyfleet\'s JSON (a proxy\'s HTML page) with its status, not a parse error', async (t) => {
  // What nginx in front answers while pyfleet is down: a 502 in HTML.
  const proxy = createServer((_request, response) => {
    response.writeHead(502, { 'content-type': 'text/html' }).end('<html><body>502 Bad Gateway</body></html>')
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { proxy.close() })
  const env = { ...process.env, PYFLEET_URL: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` }
  const failed = (error: { stderr?: string }): string => error.stderr ?? ''
  const fromPython = await run(await python(), ['-c', 'import call; call.call("greet", {"name": "Ada"})'], { env, cwd: join(EXAMPLES, 'clients') }).then(() => '', failed)
  t.match(fromPython, /RuntimeError: 502 Bad Gateway: <html><body>502 Bad Gateway<\/body><\/html>/)
  const fromNode = await run(process.execPath, ['--input-type=module', '-e', `import { call } from ${JSON.stringify(NODE_CLIENT)}; await call('greet', { name: 'Ada' })`], { env }).then(() => '', failed)
  t.match(fromNode, /Error: 502 Bad Gateway: <html><body>502 Bad Gateway<\/body><\/html>/)
})

t.test('README\'s curl lines that send examples/data/ print what their comments say', async (t) => {
  const curl = await run('sh', ['-c', 'command -v curl']).then(() => true, () => false)
  if (!curl) {
    const why = 'curl is not installed (.ci/run installs it)'
    if (process.env.CI === 'true') t.fail(why)
    else t.pass('README\'s curl lines', { skip: why })
    return
  }
  const server = await startServer(t, { POOL_SIZE: '2' })
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const block = /One `curl` per task[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
  // A command (its continuation lines joined), then the comment line that shows its output.
  const lines = block.replace(/\\\n\s*/g, ' ').split('\n')
  const shown = lines.flatMap((line, i) => /examples\/data\/|application\/msgpack/.test(line) && lines[i + 1]?.startsWith('# ') ? [{ command: line, output: lines[i + 1].slice(2) }] : [])
  t.equal(shown.length, 5, 'the msgpack echo, xml, csv, text and hash lines')
  for (const { command, output } of shown) {
    const { stdout } = await run('sh', ['-c', command.replaceAll('localhost:5000', server.url.replace('http://', ''))], { cwd: ROOT })
    // The comment's text up to its first "...", where README leaves the rest out.
    const expected = output.split(/,? ?\.\.\./)[0].trim()
    t.ok(stdout.trim().startsWith(expected), `${command.slice(0, 70)}...: prints ${expected.slice(0, 60)}... (got ${stdout.slice(0, 120)})`)
  }
})

