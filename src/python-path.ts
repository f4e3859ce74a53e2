// Finds the interpreter for the workers once, at start-up, and resolves it to an
// absolute path: a version-manager shim (pyenv's python3) adds ~120 ms to every
// spawn, the real binary does not. Asynchronous like everything else, though it
// only runs at start-up: the event loop never waits on a child process.

import { execFile } from 'node:child_process'
import { access } from 'node:fs/promises'
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
const cache = new Map<string, Promise<PythonInfo | string>>()

/** The interpreter's absolute path and version, or why it cannot run the workers. */
function probe (candidate: string): Promise<PythonInfo | string> {
  let result = cache.get(candidate)
  if (result === undefined) {
    result = new Promise((resolve) => {
      execFile(candidate, ['-c', PROBE], { encoding: 'utf8', timeout: 15_000 }, (error, stdout, stderr) => {
        if (error === null) {
          const [path, version] = stdout.trim().split('\n')
          resolve({ path: path.startsWith('/') ? path : candidate, version })
          return
        }
        const missing = /No module named '?([\w.]+)/.exec(stderr)?.[1]
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') resolve(`${candidate}: not found`)
        else if (missing !== undefined) resolve(`${candidate}: cannot import ${missing}`)
        else if (stderr.trim() !== '') resolve(`${candidate}: ${stderr.trim().split('\n').pop() ?? ''}`)
        else if (error.killed) resolve(`${candidate}: did not answer within 15 s`)
        else if (typeof error.code === 'string') resolve(`${candidate}: cannot run (${error.code})`) // EACCES and the like
        else if (error.signal !== null && error.signal !== undefined) resolve(`${candidate}: killed by ${error.signal}`)
        else resolve(`${candidate}: exited with code ${String(error.code)} and printed nothing`)
      }).stdin?.end()
    })
    cache.set(candidate, result)
  }
  return result
}

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

const FIX = 'install the Python dependencies (Debian/Ubuntu: apt-get install python3-msgpack python3-defusedxml; ' +
  'elsewhere: python3 -m venv .venv && .venv/bin/pip install -r workers/requirements.txt, or run npm ci, which does this)'

/**
 * The configured PYTHON, or the first of .venv/bin/python, python3 and
 * /usr/bin/python3 that can import msgpack and defusedxml. Throws ConfigError saying what was
 * tried and how to fix it.
 */
export async function resolvePython (configured: string | undefined, projectRoot: string): Promise<PythonInfo> {
  if (configured !== undefined) {
    const found = await probe(configured)
    if (typeof found !== 'string') return found
    throw new ConfigError(`PYTHON=${configured} cannot run the workers (${found}): ${FIX}, or point PYTHON at an interpreter that has ${REQUIRED_MODULES.join(' and ')}`)
  }
  const venv = join(projectRoot, '.venv', 'bin', 'python')
  const candidates = [...(await exists(venv) ? [venv] : []), 'python3', '/usr/bin/python3']
  const tried: string[] = []
  for (const candidate of candidates) {
    const found = await probe(candidate)
    if (typeof found !== 'string') return found
    tried.push(found)
  }
  throw new ConfigError(`no Python interpreter can run the workers (tried ${tried.join('; ')}): ${FIX}`)
}
