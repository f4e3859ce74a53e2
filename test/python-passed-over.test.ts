// The search for an interpreter when PYTHON is not set, as the start-up log reports it:
// real interpreters probed. A file of its own: probes are cached per candidate for the
// process's life, and python-path.test.ts makes every Python found claim to be 3.9.

import t from 'tap'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolvePython } from '../src/python-path.js'

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
