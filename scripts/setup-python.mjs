#!/usr/bin/env node
// npm postinstall: make sure a Python interpreter can run the workers (it must
// be Python 3.10 or newer and import msgpack and defusedxml). Tries, in order: an interpreter that already
// can; a .venv with workers/requirements.txt (where PyPI is reachable); Debian's
// packages through apt-get (where we are root). Otherwise it stops npm ci with
// instructions. PYFLEET_SKIP_PYTHON_SETUP=1 skips all of it (e.g. a Docker build
// stage that only compiles TypeScript).

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const venvPython = join(root, '.venv', 'bin', 'python')
const requirements = join(root, 'workers', 'requirements.txt')
const APT_PACKAGES = ['python3', 'python3-msgpack', 'python3-defusedxml']

const say = (line) => process.stdout.write(`pyfleet setup: ${line}\n`)

function run (command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options })
  return { ok: result.status === 0, out: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim() }
}

// The runtime needs 3.10 (traceback.format_exception(exc), among others): an older
// interpreter would start workers that lose every failed task's traceback.
const NEW_ENOUGH = 'import sys; sys.version_info >= (3, 10) or sys.exit(1)'

function canRunWorkers (python) {
  return run(python, ['-c', `${NEW_ENOUGH}; import msgpack, defusedxml`]).ok
}

/** The interpreter's own path (`python3` -> /usr/bin/python3), the one the server's log will name. */
function executable (python) {
  const found = run(python, ['-c', 'import sys; print(sys.executable)'])
  return found.ok && found.out !== '' && found.out !== python ? `${python} (${found.out})` : python
}

function findReady () {
  const configured = process.env.PYTHON
  const candidates = configured ? [configured] : [venvPython, 'python3', '/usr/bin/python3']
  return candidates.find((c) => (c !== venvPython || existsSync(c)) && canRunWorkers(c))
}

function tryVenv () {
  const base = ['python3', '/usr/bin/python3'].find((p) => run(p, ['-c', `import venv, ensurepip; ${NEW_ENOUGH}`]).ok)
  if (base === undefined) return false
  say(`creating .venv with ${base} and installing workers/requirements.txt from PyPI`)
  if (!run(base, ['-m', 'venv', join(root, '.venv')]).ok) return false
  const pip = run(venvPython, ['-m', 'pip', 'install', '--disable-pip-version-check', '--timeout', '10', '--retries', '1', '-r', requirements], { timeout: 180_000 })
  if (!pip.ok) {
    say('PyPI is not reachable or pip failed; trying Debian packages instead')
    run('rm', ['-rf', join(root, '.venv')])
    return false
  }
  return canRunWorkers(venvPython)
}

function tryApt () {
  if (process.getuid?.() !== 0 || !run('sh', ['-c', 'command -v apt-get']).ok) return false
  say(`installing ${APT_PACKAGES.join(' ')} with apt-get`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  let install = run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...APT_PACKAGES], { env, timeout: 600_000 })
  if (!install.ok) {
    run('apt-get', ['update', '-qq'], { env, timeout: 600_000 })
    install = run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...APT_PACKAGES], { env, timeout: 600_000 })
  }
  if (!install.ok) say(`apt-get failed: ${install.out.split('\n').slice(-3).join(' | ')}`)
  return install.ok && canRunWorkers('/usr/bin/python3')
}

/**
 * Writes the workers' bytecode now. Python does that itself on first import,
 * unless PYTHONDONTWRITEBYTECODE is set (as in many CI and container images):
 * then every worker start, and the pool restarts workers all the time
 * (MAX_CALLS_PER_WORKER), compiles every task module again: here 25 ms of
 * start-up CPU instead of 15 ms, and 1 MB more per worker.
 */
function compileWorkers (python) {
  const compiled = run(python, ['-m', 'compileall', '-q', join(root, 'workers')])
  if (!compiled.ok) say(`could not precompile workers/ (they still run, compiled on each start): ${compiled.out.split('\n').slice(-1)[0]}`)
}

if (process.env.PYFLEET_SKIP_PYTHON_SETUP === '1') {
  say('skipped (PYFLEET_SKIP_PYTHON_SETUP=1)')
  process.exit(0)
}
const ready = findReady()
if (ready !== undefined) {
  say(`using ${executable(ready)} (Python 3.10 or newer; msgpack and defusedxml are importable)`)
  compileWorkers(ready)
} else if (process.env.PYTHON) {
  say(`PYTHON=${process.env.PYTHON} cannot run the workers: it must be Python 3.10 or newer and import msgpack and defusedxml (with PyPI: pip install -r workers/requirements.txt; on Debian/Ubuntu, for /usr/bin/python3: sudo apt-get install python3-msgpack python3-defusedxml); or unset PYTHON`)
  process.exit(1)
} else if (tryVenv() || tryApt()) {
  const installed = findReady()
  say(`ready: ${installed}`)
  if (installed !== undefined) compileWorkers(installed)
} else {
  say('no Python can run the workers, and neither pip (PyPI) nor apt-get (as root) could fix it. Install Python 3.10 or newer with msgpack and defusedxml:')
  say('  Debian/Ubuntu: sudo apt-get install python3-msgpack python3-defusedxml')
  say('  elsewhere:     python3 -m venv .venv && .venv/bin/pip install -r workers/requirements.txt')
  process.exit(1)
}
