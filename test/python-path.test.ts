// Which interpreter runs the workers, and what the server says when none can:
// real interpreters (and real non-interpreters) probed as at start-up.

import t from 'tap'
import { chmod, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { judge, resolvePython } from '../src/python-path.js'
import { isProcessLimit, messageWithLimitAdvice, PROCESS_LIMIT_FIX } from '../src/process-limit.js'
import { ConfigError } from '../src/config.js'

const PRETEND_3_9 = join(import.meta.dirname, 'fixtures', 'python_3_9')
/**
 * An interpreter that can run the workers, found without resolvePython: its probes are cached
 * per candidate for the life of this process, and the tests below need them fresh.
 */
async function workersPython (): Promise<string> {
  const { execFile } = await import('node:child_process')
  for (const candidate of [join(import.meta.dirname, '..', '.venv', 'bin', 'python'), '/usr/bin/python3', 'python3']) {
    const ok = await new Promise<boolean>((resolve) => { execFile(candidate, ['-c', 'import msgpack, defusedxml'], (error) => { resolve(error === null) }) })
    if (ok) return candidate
  }
  throw new Error('no interpreter here imports msgpack and defusedxml')
}

async function refusal (configured: string | undefined, root: string): Promise<string> {
  const error = await resolvePython(configured, root).then(() => undefined, (e: unknown) => e)
  if (!(error instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(error)}`)
  return error.message
}

t.test('a program that exits 0 without answering as Python would is refused, not started as a worker', async (t) => {
  t.match(await refusal('/bin/true', '/'), /^PYTHON=\/bin\/true cannot run the workers \(\/bin\/true: does not answer as a Python interpreter would \(it printed ""\)\): point PYTHON at/)
  t.match(await refusal('/bin/echo', '/'), /\/bin\/echo: does not answer as a Python interpreter would/)
  // Node takes the probe's code for a module's name, and echoes it: its own words are the reason, not the probe's.
  const node = await refusal(process.execPath, '/')
  t.notMatch(node, /is too old/)
  t.match(node, /^PYTHON=\S+ cannot run the workers \(\S+: node:internal[^)]*\): point PYTHON at an interpreter of Python 3\.10 or newer/)
})

t.test('when every interpreter found is too old, the advice is a newer Python, not packages; the version is found below a warning', async (t) => {
  // The probe's children inherit this environment: every Python found claims to be 3.9.
  const saved = process.env.PYTHONPATH
  process.env.PYTHONPATH = PRETEND_3_9
  const root = await mkdtemp(join(tmpdir(), 'pyfleet-no-venv-')) // no .venv among the candidates
  t.teardown(async () => {
    if (saved === undefined) delete process.env.PYTHONPATH
    else process.env.PYTHONPATH = saved
    await rm(root, { recursive: true })
  })
  const message = await refusal(undefined, root)
  t.match(message, /\/usr\/bin\/python3: Python 3\.9\.18 is too old: the workers need 3\.10 or newer/, 'the version line, though a warning came first')
  t.match(message, /: install Python 3\.10 or newer with msgpack and defusedxml, and point PYTHON at it$/)
  t.notMatch(message, /apt-get/)
})

t.test('a msgpack.py on PYTHONPATH that fails to import is named, with what it raised, not taken for a missing package', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-shadow-'))
  const saved = process.env.PYTHONPATH
  t.teardown(async () => {
    if (saved === undefined) delete process.env.PYTHONPATH
    else process.env.PYTHONPATH = saved
    await rm(dir, { recursive: true })
  })
  await writeFile(join(dir, 'msgpack.py'), 'import does_not_exist_zz\n')
  // A name of its own: probes are cached by the interpreter's name.
  await symlink('/usr/bin/python3', join(dir, 'python'))
  process.env.PYTHONPATH = dir
  const message = await refusal(join(dir, 'python'), '/')
  t.match(message, `${join(dir, 'msgpack.py')}, in a PYTHONPATH entry, is what 'import msgpack' finds, and importing it raised ModuleNotFoundError: No module named 'does_not_exist_zz'`)
  t.match(message, /: if that file is not the package the workers need, rename it \(or take its directory off PYTHONPATH\)$/)
  t.notMatch(message, /apt-get/)
})

t.test('a launcher that hides the interpreter\'s path is used by its own name; a fake that claims an old version is too old', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-launchers-'))
  t.teardown(async () => { await rm(dir, { recursive: true }) })
  const script = async (name: string, body: string): Promise<string> => {
    const path = join(dir, name)
    await writeFile(path, `#!/bin/bash\n${body}\n`)
    await chmod(path, 0o755)
    return path
  }
  // exec -a with a name Python cannot find leaves sys.executable empty.
  const launcher = await script('launcher', 'exec -a no_such_name /usr/bin/python3 "$@"')
  t.match(await resolvePython(launcher, dir), { path: launcher, version: /^3\.\d+/ })
  const fake = await script('fake', 'printf "/usr/bin/python3\\n2.7.18\\n"')
  t.match(await refusal(fake, dir), /fake: Python 2\.7\.18 is too old: the workers need 3\.10 or newer/)
})

t.test('an interpreter that answers and exits is taken, though something it started holds its output open', async (t) => {
  const python = await workersPython()
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-holder-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  // A wrapper that leaves a child behind with the probe's stdout and stderr (a shim's daemon, say).
  const wrapper = join(dir, 'python')
  await writeFile(wrapper, `#!/bin/sh\nsleep 30 &\nexec ${python} "$@"\n`)
  await chmod(wrapper, 0o755)
  const found = await resolvePython(wrapper, '/')
  t.ok(found.path.startsWith('/'), `its answer, ${found.path}, not "did not answer within 15 s" (the pipes stay open until the probe gives up)`)
})

t.test('a stopped start tries no further interpreter, and leaves the one it was trying no verdict', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'pyfleet-stopped-'))
  t.teardown(async () => { await rm(root, { recursive: true, force: true }) })
  const tried = join(root, 'tried')
  // The first candidate (.venv/bin/python) hangs; were the search to go on, python3 on PATH would run too.
  await writeFile(join(root, 'slow'), '#!/bin/sh\nsleep 30\n')
  await writeFile(join(root, 'python3'), `#!/bin/sh\ntouch ${tried}\nexit 1\n`)
  await chmod(join(root, 'slow'), 0o755)
  await chmod(join(root, 'python3'), 0o755)
  const { mkdir, access } = await import('node:fs/promises')
  await mkdir(join(root, '.venv', 'bin'), { recursive: true })
  await symlink(join(root, 'slow'), join(root, '.venv', 'bin', 'python'))
  const savedPath = process.env.PATH
  process.env.PATH = `${root}:${savedPath ?? ''}`
  t.teardown(() => { process.env.PATH = savedPath })
  const stopping = new AbortController()
  const search = resolvePython(undefined, root, stopping.signal).then(() => undefined, (e: unknown) => e)
  setTimeout(() => { stopping.abort() }, 300)
  t.match(await search, { name: 'AbortError' })
  t.equal(await access(tried).then(() => true, () => false), false, 'python3 was not tried')
})

t.test('a probe that could not be started for want of processes (EAGAIN, ENOMEM) is no verdict on the interpreter', async (t) => {
  // Under RLIMIT_NPROC the start said "PYTHON=/usr/bin/python3 cannot run the workers ... point PYTHON at" another.
  for (const code of ['EAGAIN', 'ENOMEM']) {
    t.same(judge('/usr/bin/python3', { code, signal: null, timedOut: false }, '', ''), { kind: 'no-process', reason: `/usr/bin/python3: could not be tried: no process could be started (${code})` })
  }
  t.same(judge('/usr/bin/python3', { code: 'EACCES', signal: null, timedOut: false }, '', ''), { kind: 'broken', reason: '/usr/bin/python3: cannot run (EACCES)' }, 'EACCES is the file\'s own')
})

t.test('which errors mean a process or thread could not be made for want of room, and the advice they get', async (t) => {
  const coded = (code: string, message = code): Error => Object.assign(new Error(message), { code })
  t.ok(isProcessLimit(coded('EAGAIN', 'spawn /usr/bin/python3 EAGAIN')), 'fork at a pids limit')
  t.ok(isProcessLimit(coded('ENOMEM')), 'fork short of memory')
  t.ok(isProcessLimit(coded('ERR_WORKER_INIT_FAILED', 'EAGAIN')), 'a Worker thread at a pids limit')
  t.notOk(isProcessLimit(coded('ERR_WORKER_INIT_FAILED', 'ERR_WORKER_INVALID_EXEC_ARGV')), 'a Worker thread failing otherwise')
  t.notOk(isProcessLimit(coded('ENOENT')), 'a missing interpreter is no limit')
  t.equal(messageWithLimitAdvice(coded('ENOENT', 'spawn nope ENOENT')), 'spawn nope ENOENT', 'other errors keep their message')
  t.equal(messageWithLimitAdvice(coded('EAGAIN', 'spawn py EAGAIN')), `spawn py EAGAIN: ${PROCESS_LIMIT_FIX}`)
})

t.test('a probe whose spawn Node throws rather than emits (ENOMEM on Node 20) gets the process-limit verdict, not a rejection', async (t) => {
  // Node 20 emits 'error' only for EACCES, EAGAIN, EMFILE, ENFILE and ENOENT; fork's other
  // errors are thrown from spawn(). Made here by a spawn that throws as Node's does.
  const { resolvePython: resolveWithoutMemory } = await t.mockImport<typeof import('../src/python-path.js')>('../src/python-path.js', {
    'node:child_process': { spawn: () => { throw Object.assign(new Error('spawn ENOMEM'), { code: 'ENOMEM', syscall: 'spawn' }) } }
  })
  await t.rejects(resolveWithoutMemory('/usr/bin/python3', '/nonexistent'), {
    name: 'ConfigError',
    message: `PYTHON=/usr/bin/python3 could not be tried: no process could be started (ENOMEM): ${PROCESS_LIMIT_FIX}`
  })
})
