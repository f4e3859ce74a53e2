// Finds the interpreter for the workers once, at start-up, and resolves it to an
// absolute path: a version-manager shim (pyenv's python3) adds ~120 ms to every
// spawn, the real binary does not. Runs processes synchronously: start-up only.

import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from './config.js'

export interface PythonInfo {
  /** Absolute path of the interpreter. */
  path: string
  version: string
}

// msgpack for the protocol, defusedxml for the built-in xml.import: an interpreter
// without either cannot start a worker, so the search goes on past it.
const REQUIRED_MODULES = ['msgpack', 'defusedxml']
const PROBE = `import sys, ${REQUIRED_MODULES.join(', ')}; print(sys.executable); print(sys.version.split()[0])`
const cache = new Map<string, PythonInfo | string>()

function probe (candidate: string): PythonInfo | string {
  const cached = cache.get(candidate)
  if (cached !== undefined) return cached
  let result: PythonInfo | string
  try {
    const out = execFileSync(candidate, ['-c', PROBE], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] })
    const [path, version] = out.trim().split('\n')
    result = { path: path.startsWith('/') ? path : candidate, version }
  } catch (error) {
    const err = error as NodeJS.ErrnoException & { stderr?: string }
    const missing = /No module named '?([\w.]+)/.exec(err.stderr ?? '')?.[1]
    if (err.code === 'ENOENT') result = `${candidate}: not found`
    else if (missing !== undefined) result = `${candidate}: cannot import ${missing}`
    else result = `${candidate}: ${(err.stderr ?? err.message).trim().split('\n').pop() ?? 'failed'}`
  }
  cache.set(candidate, result)
  return result
}

const FIX = 'install the Python dependencies (Debian/Ubuntu: apt-get install python3-msgpack python3-defusedxml; ' +
  'elsewhere: python3 -m venv .venv && .venv/bin/pip install -r workers/requirements.txt, or run npm ci, which does this)'

/**
 * The configured PYTHON, or the first of .venv/bin/python, python3 and
 * /usr/bin/python3 that can import msgpack and defusedxml. Throws ConfigError saying what was
 * tried and how to fix it.
 */
export function resolvePython (configured: string | undefined, projectRoot: string): PythonInfo {
  if (configured !== undefined) {
    const found = probe(configured)
    if (typeof found !== 'string') return found
    throw new ConfigError(`PYTHON=${configured} cannot run the workers (${found}): ${FIX}, or point PYTHON at an interpreter that has ${REQUIRED_MODULES.join(' and ')}`)
  }
  const venv = join(projectRoot, '.venv', 'bin', 'python')
  const candidates = [...(existsSync(venv) ? [venv] : []), 'python3', '/usr/bin/python3']
  const tried: string[] = []
  for (const candidate of candidates) {
    const found = probe(candidate)
    if (typeof found !== 'string') return found
    tried.push(found)
  }
  throw new ConfigError(`no Python interpreter can run the workers (tried ${tried.join('; ')}): ${FIX}`)
}
