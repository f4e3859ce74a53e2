#!/usr/bin/env node
// npm run test:python: the workers' own unittest suite, with the same
// interpreter the server would use. Writes .tap/python-results.json
// ({passed, failed}) for .ci/run's summary line.

import { spawn, spawnSync } from 'node:child_process'
import { access, mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
// The interpreter is found by the server's own code (dist/): on a fresh clone, build it first.
const compiled = join(root, 'dist', 'python-path.js')
if (!await access(compiled).then(() => true, () => false)) {
  console.log('dist/ is not built yet: npm run build')
  if (spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' }).status !== 0) process.exit(1)
}
const { resolvePython } = await import(compiled)
const python = await resolvePython(process.env.PYTHON || undefined, root)
const child = spawn(python.path, ['-m', 'unittest', 'discover', '-s', 'pyfleet_tests', '-t', '.'], {
  cwd: join(root, 'workers'),
  stdio: ['ignore', 'inherit', 'pipe'],
  env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }
})
let output = ''
child.stderr.on('data', (chunk) => { output += chunk; process.stderr.write(chunk) })
const code = await new Promise((resolve) => child.once('exit', resolve))
const ran = Number(/^Ran (\d+) tests?/m.exec(output)?.[1] ?? 0)
const failures = Number(/failures=(\d+)/.exec(output)?.[1] ?? 0)
const errors = Number(/errors=(\d+)/.exec(output)?.[1] ?? 0)
const skipped = Number(/skipped=(\d+)/.exec(output)?.[1] ?? 0)
let failed = failures + errors
if (code !== 0 && failed === 0) failed = 1 // the suite did not even run
await mkdir(join(root, '.tap'), { recursive: true })
await writeFile(join(root, '.tap', 'python-results.json'), JSON.stringify({ passed: ran - failures - errors - skipped, failed }))
process.exit(code ?? 1)
