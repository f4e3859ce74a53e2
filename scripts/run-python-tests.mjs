#!/usr/bin/env node
// npm run test:python: the workers' own unittest suite, with the same
// interpreter the server would use.

import { spawnSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { resolvePython } from '../dist/python-path.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const python = resolvePython(process.env.PYTHON || undefined, root)
const result = spawnSync(python.path, ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], {
  cwd: join(root, 'workers'),
  stdio: 'inherit',
  env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }
})
process.exit(result.status ?? 1)
