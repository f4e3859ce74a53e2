// The search for an interpreter when PYTHON is not set, as the start-up log reports it:
// real interpreters probed. A file of its own: probes are cached per candidate for the
// process's life, and python-path.test.ts makes every Python found claim to be 3.9.

import t from 'tap'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { resolvePython } from '../src/python-path.js'
import { withPassedOver } from '../src/start-problems.js'

// First in the file: the probe of `python3` is cached for the process's life.
t.test('python3 on PATH passed over (an activated virtualenv without msgpack) is named with the path it ran', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'pyfleet-activated-')) // no .venv: python3 on PATH comes first
  t.teardown(async () => { await rm(root, { recursive: true }) })
  const venv = join(root, 'venv')
  await promisify(execFile)('/usr/bin/python3', ['-m', 'venv', '--without-pip', venv])
  const savedPath = process.env.PATH
  process.env.PATH = `${join(venv, 'bin')}:${savedPath ?? ''}`
  t.teardown(() => { process.env.PATH = savedPath })
  const found = await resolvePython(undefined, root)
  t.equal(found.path, '/usr/bin/python3', 'the next candidate is used')
  // It was "python3: cannot import msgpack", which named none of the user's interpreters.
  t.same(found.passedOver, [`python3 (${join(venv, 'bin', 'python3')}): cannot import msgpack`])
})

t.test('a start that fails on a package missing from the workers\' interpreter names the interpreter passed over', async (t) => {
  const python = { path: '/usr/bin/python3', version: '3.11.2', passedOver: ['python3 (/home/me/venv/bin/python3): cannot import msgpack'] }
  const failed = new Error("Python worker /usr/bin/python3 did not start: task module 'shop.tasks' could not be imported: No module named 'numpy' (at shop/tasks.py, line 1; install the package that provides 'numpy')")
  t.equal(withPassedOver(failed, python), failed)
  t.match(failed.message, /install the package that provides 'numpy'\)\. The workers run \/usr\/bin\/python3, found after passing over python3 \(\/home\/me\/venv\/bin\/python3\): cannot import msgpack: if that package is installed for another interpreter, install msgpack and defusedxml there too, or point PYTHON at the one that has them all$/)
  // Nothing passed over, or another failure: as it was.
  // (withPassedOver changes the error it is given: compared with copies of the words.)
  const aloneMessage = failed.message.replace(/\. The workers run[\s\S]*$/, '')
  t.equal((withPassedOver(new Error(aloneMessage), { path: '/usr/bin/python3', version: '3.11.2' }) as Error).message, aloneMessage)
  const otherMessage = 'Python worker /usr/bin/python3 did not start: task module \'shop.tasks\' registered no task'
  t.equal((withPassedOver(new Error(otherMessage), python) as Error).message, otherMessage)
  // The task module itself not found: where it is looked for is wrong, and no interpreter
  // has it; the hint about packages sent a misspelt TASK_MODULES off to install msgpack.
  const notFound = new Error("Python worker /usr/bin/python3 did not start: task module 'nosuchmod' could not be imported: No module named 'nosuchmod' (check TASK_MODULES and PYTHONPATH, which is '/srv/pyfleet/workers'; relative PYTHONPATH entries are resolved from the pyfleet directory, /srv/pyfleet)")
  const notFoundMessage = notFound.message
  t.equal((withPassedOver(notFound, python) as Error).message, notFoundMessage)
  const packageNotFoundMessage = "Python worker /usr/bin/python3 did not start: task module 'shop.tasks' could not be imported: No module named 'shop' (check TASK_MODULES and PYTHONPATH, which is '/srv/pyfleet/workers'; relative PYTHONPATH entries are resolved from the pyfleet directory, /srv/pyfleet)"
  t.equal((withPassedOver(new Error(packageNotFoundMessage), python) as Error).message, packageNotFoundMessage, 'the package above it')
  // A namespace package found in part (apt's google.protobuf) without the module a task
  // imports from it (google.cloud, installed in the virtualenv passed over): that advice again.
  const partly = new Error("Python worker /usr/bin/python3 did not start: task module 'shop.tasks' could not be imported: No module named 'google.cloud' (at shop/tasks.py, line 1; the package 'google' was found at /usr/lib/python3/dist-packages/google and has no module 'google.cloud': is another 'google' earlier on the path, or is it missing from yours?)")
  t.match((withPassedOver(partly, python) as Error).message, /is it missing from yours\?\)\. The workers run \/usr\/bin\/python3, found after passing over python3 /)
})

t.test('an interpreter passed over is named with its reason, so a package installed into it is not a mystery', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'pyfleet-venv-'))
  t.teardown(async () => { await rm(root, { recursive: true }) })
  // A .venv whose python cannot import msgpack: the first candidate, and not usable.
  await mkdir(join(root, '.venv', 'bin'), { recursive: true })
  const venvPython = join(root, '.venv', 'bin', 'python')
  await writeFile(venvPython, '#!/bin/sh\necho "ModuleNotFoundError: No module named \'msgpack\'" >&2\nexit 1\n')
  await chmod(venvPython, 0o755)
  const found = await resolvePython(undefined, root)
  t.match(found, { path: /python/, version: /^3\./ }, 'a later candidate is used')
  t.match(found.passedOver?.[0], `${venvPython}: `, 'the .venv is named first, with why')
  t.match(found.passedOver?.[0], /msgpack/)
  // PYTHON named: nothing else was looked at.
  t.equal((await resolvePython(found.path, root)).passedOver, undefined)
})
