// Finds the interpreter for the workers once, at start-up, and resolves it to an
// absolute path: a version-manager shim (pyenv's python3) adds ~120 ms to every
// spawn, the real binary does not. Asynchronous like everything else, though it
// only runs at start-up: the event loop never waits on a child process.

import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable } from 'node:stream'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError } from './config.js'
import { PROCESS_LIMIT_FIX } from './process-limit.js'

export interface PythonInfo {
  /** Absolute path of the interpreter. */
  path: string
  version: string
  /** Without PYTHON: the candidates searched before it, and why each could not run the workers. */
  passedOver?: string[]
}

// msgpack for the protocol, defusedxml for the built-in xml.import: an interpreter
// without either cannot start a worker, so the search goes on past it. So does one
// older than 3.10: its workers would start, and lose every failed task's traceback.
const REQUIRED_MODULES = ['msgpack', 'defusedxml']
const MIN_VERSION = '3.10'
/** How the probe's line about a shadowing module starts. */
const SHADOWED = 'shadowed: '
// A module of that name in a PYTHONPATH entry that fails to import (a msgpack.py of the
// user's own) is named as the culprit: "cannot import" it would send them to install a
// package they have.
// The interpreter's own path comes first, whatever follows: `python3` passed over for
// lacking msgpack is named with the path it ran (an activated virtualenv's, say).
// sys.stdout.write, not print(..., flush=True): a Python 2 must still get as far as the version check.
const PROBE = [
  'import os, sys',
  'sys.stdout.write(sys.executable + "\\n"); sys.stdout.flush()',
  `sys.version_info >= (${MIN_VERSION.replace('.', ', ')}) or sys.exit("Python " + sys.version.split()[0] + " is too old: the workers need ${MIN_VERSION} or newer")`,
  `for name in ${JSON.stringify(REQUIRED_MODULES)}:`,
  '    try:',
  '        __import__(name)',
  '    except Exception as exc:',
  '        import importlib.util',
  '        try:',
  '            origin = getattr(importlib.util.find_spec(name), "origin", None) or ""',
  '        except Exception:',
  '            origin = ""',
  '        roots = [os.path.join(os.path.abspath(p), "") for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]',
  '        if any(origin.startswith(root) for root in roots):',
  `            sys.exit("${SHADOWED}" + origin + ", in a PYTHONPATH entry, is what 'import " + name + "' finds, and importing it raised " + type(exc).__name__ + ": " + str(exc))`,
  '        raise',
  'print(sys.version.split()[0])'
].join('\n')

/** Whether a version such as "3.11.2" is at least `minimum` ("3.10"). */
function isAtLeast (version: string, minimum: string): boolean {
  const [major, minor] = version.split('.').map(Number)
  const [wantMajor, wantMinor] = minimum.split('.').map(Number)
  return major > wantMajor || (major === wantMajor && minor >= wantMinor)
}

/** Why a candidate cannot run the workers: what is wrong decides what to advise. */
export interface Unusable {
  kind: 'missing' | 'too-old' | 'no-modules' | 'shadowed' | 'broken' | 'no-process'
  reason: string
}

const cache = new Map<string, Promise<PythonInfo | Unusable>>()

/**
 * The line of an interpreter's stderr that says what went wrong: a traceback's
 * last, anything else's first (a version manager's shim explains itself first,
 * then adds advice of its own).
 */
function firstWords (stderr: string): string {
  const lines = stderr.trim().split('\n').map((line) => line.trim()).filter((line) => line !== '')
  return (lines[0]?.startsWith('Traceback') === true ? lines.at(-1) : lines[0]) ?? ''
}

/** How long an interpreter has to answer the probe. */
const PROBE_TIMEOUT_MS = 15_000
/** What is kept of each of the probe's outputs (a wrapper that prints without end is cut here). */
const PROBE_OUTPUT_CHARS = 64 * 1024

/** How the probe's process ended, when not with exit code 0. */
export interface ProbeFailure {
  /** A spawn error's code (ENOENT, EACCES), or the exit code. */
  code: string | number | null
  signal: NodeJS.Signals | null
  timedOut: boolean
}

/** The probe's answer read: the interpreter, or why it cannot run the workers. */
export function judge (candidate: string, failure: ProbeFailure | null, stdout: string, stderr: string): PythonInfo | Unusable {
  // Named as it ran when that is another path than the name it was found by (python3 on PATH).
  const ran = failure === null ? undefined : /^(\/[^\n]*)\n$/.exec(stdout)?.[1]
  const name = ran === undefined || ran === candidate ? candidate : `${candidate} (${ran})`
  const unusable = (kind: Unusable['kind'], why: string): Unusable => ({ kind, reason: `${name}: ${why}` })
  if (failure === null) {
    // Anything that exits 0 gets here (PYTHON=/bin/true): the answer must look like the probe's.
    // Only the last newline goes: sys.executable may be empty (a launcher's exec -a).
    const [path, version, ...more] = stdout.replace(/\n$/, '').split('\n')
    if (more.length > 0 || !/^\d+\.\d+/.test(version ?? '')) {
      return unusable('broken', `does not answer as a Python interpreter would (it printed ${JSON.stringify(stdout.slice(0, 80))})`)
    }
    if (!isAtLeast(version, MIN_VERSION)) return unusable('too-old', `Python ${version} is too old: the workers need ${MIN_VERSION} or newer`)
    return { path: path.startsWith('/') ? path : candidate, version }
  }
  const missing = /No module named '?([\w.]+)/.exec(stderr)?.[1]
  // Found on any line: a warning (a missing platform library, a shim's notice) may come first.
  // The probe's own words at the line's start: a program that is no Python may echo the probe's
  // code (node: "Cannot find module '...'"), which holds the same words, as its reason.
  const tooOld = stderr.split('\n').find((line) => /^Python \S+ is too old: the workers need /.test(line.trim()))?.trim()
  const said = firstWords(stderr)
  const shadowed = stderr.split('\n').find((line) => line.startsWith(SHADOWED))
  if (failure.code === 'ENOENT') return unusable('missing', 'not found')
  if (tooOld !== undefined) return unusable('too-old', tooOld)
  if (shadowed !== undefined) return unusable('shadowed', shadowed.slice(SHADOWED.length).trim())
  if (missing !== undefined) return unusable('no-modules', `cannot import ${missing}`)
  if (said !== '') return unusable('broken', said)
  if (failure.timedOut) return unusable('broken', `did not answer within ${PROBE_TIMEOUT_MS / 1000} s`)
  // No process could be made to try it: the interpreter may be fine (a verdict on the machine, not on it).
  if (failure.code === 'EAGAIN' || failure.code === 'ENOMEM') return unusable('no-process', `could not be tried: no process could be started (${failure.code})`)
  if (typeof failure.code === 'string') return unusable('broken', `cannot run (${failure.code})`) // EACCES and the like
  if (failure.signal !== null) return unusable('broken', `killed by ${failure.signal}`)
  return unusable('broken', `exited with code ${String(failure.code)} and printed nothing`)
}

/** How long a probe that has exited may take to close its pipes before what they gave is taken as its answer. */
const PIPES_AFTER_EXIT_MS = 200

/**
 * The interpreter's absolute path and version, or why it cannot run the workers. `stop`
 * (a SIGTERM during start-up) ends the probe at once, as it ends the workers' start.
 */
function probe (candidate: string, stop?: AbortSignal): Promise<PythonInfo | Unusable> {
  let result = cache.get(candidate)
  if (result === undefined) {
    result = new Promise((resolve) => {
      // In a session of its own, killed as a group (execFile's timeout kills only its child):
      // a wrapper script, such as a version manager's shim, that hangs in a child of its own
      // would otherwise leave that child running after pyfleet has gone. Being out of the
      // terminal's process group, it is killed by the start's stop (SIGTERM, Ctrl-C) instead.
      let child: ChildProcessByStdio<null, Readable, Readable>
      try {
        child = spawn(candidate, ['-c', PROBE], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
      } catch (error) {
        // Node 20 throws, rather than emits, the errors of fork it does not expect (ENOMEM): a
        // verdict as for an 'error'.
        resolve(judge(candidate, { code: (error as NodeJS.ErrnoException).code ?? null, signal: null, timedOut: false }, '', ''))
        return
      }
      let stdout = ''
      let stderr = ''
      child.stdout.setEncoding('utf8').on('data', (text: string) => { if (stdout.length < PROBE_OUTPUT_CHARS) stdout += text })
      child.stderr.setEncoding('utf8').on('data', (text: string) => { if (stderr.length < PROBE_OUTPUT_CHARS) stderr += text })
      let finished = false
      let lingering: NodeJS.Timeout | undefined
      const done = (failure: ProbeFailure | null): void => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        clearTimeout(lingering)
        stop?.removeEventListener('abort', onStop)
        resolve(judge(candidate, failure, stdout, stderr))
      }
      // Settled here, not by 'close': something the probe started (a daemon of a wrapper's) may
      // hold its pipes open after it has gone, and 'close' would never come.
      const end = (failure: ProbeFailure | null): void => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
        } catch { /* gone already */ }
        child.stdout.destroy()
        child.stderr.destroy()
        done(failure)
      }
      const timer = setTimeout(() => { end({ code: null, signal: 'SIGKILL', timedOut: true }) }, PROBE_TIMEOUT_MS)
      const onStop = (): void => {
        cache.delete(candidate) // not a verdict on the interpreter
        end({ code: null, signal: 'SIGKILL', timedOut: false })
      }
      stop?.addEventListener('abort', onStop, { once: true })
      // 'error': it could not be run (not found, not executable). 'exit': it answered, and its
      // output is whole once its pipes close ('close'), or shortly after if something holds them.
      child.once('error', (error: NodeJS.ErrnoException) => { done({ code: error.code ?? null, signal: null, timedOut: false }) })
      child.once('exit', (code, signal) => {
        if (finished) return
        const failure = code === 0 ? null : { code, signal, timedOut: false }
        child.once('close', () => { done(failure) })
        lingering = setTimeout(() => { end(failure) }, PIPES_AFTER_EXIT_MS)
      })
    })
    cache.set(candidate, result)
    // Not kept: a verdict on the machine at that moment (its process limit), not on the interpreter.
    const kept = result
    void kept.then((verdict) => { if ('kind' in verdict && verdict.kind === 'no-process' && cache.get(candidate) === kept) cache.delete(candidate) })
  }
  return result
}

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}

const FIX = 'install the Python dependencies (Debian/Ubuntu: apt-get install python3-msgpack python3-defusedxml; ' +
  'elsewhere: python3 -m venv .venv && .venv/bin/pip install -r workers/requirements.txt, or run npm ci, which does this)'

const SHADOW_FIX = 'if that file is not the package the workers need, rename it (or take its directory off PYTHONPATH)'

/** What to do about a configured PYTHON that cannot run the workers. */
function adviceFor ({ kind }: Unusable): string {
  const wanted = `an interpreter of Python ${MIN_VERSION} or newer that has ${REQUIRED_MODULES.join(' and ')}`
  if (kind === 'no-modules') return `${FIX}, or point PYTHON at ${wanted}`
  if (kind === 'shadowed') return SHADOW_FIX
  if (kind === 'no-process') return PROCESS_LIMIT_FIX
  return `point PYTHON at ${wanted}, or unset it to let pyfleet search for one`
}

/**
 * The configured PYTHON, or the first of .venv/bin/python, python3 and
 * /usr/bin/python3 that is Python 3.10 or newer and can import msgpack and defusedxml. Throws ConfigError saying what was
 * tried and how to fix it.
 */
export async function resolvePython (configured: string | undefined, projectRoot: string, stop?: AbortSignal): Promise<PythonInfo> {
  stop?.throwIfAborted()
  if (configured !== undefined) {
    const found = await probe(configured, stop)
    stop?.throwIfAborted()
    if ('path' in found) return found
    if (found.kind === 'no-process') throw new ConfigError(`PYTHON=${configured} ${found.reason.slice(configured.length + 2)}: ${adviceFor(found)}`)
    throw new ConfigError(`PYTHON=${configured} cannot run the workers (${found.reason}): ${adviceFor(found)}`)
  }
  const venv = join(projectRoot, '.venv', 'bin', 'python')
  const candidates = [...(await exists(venv) ? [venv] : []), 'python3', '/usr/bin/python3']
  const tried: Unusable[] = []
  for (const candidate of candidates) {
    const found = await probe(candidate, stop)
    // Stopped: no verdict on this one, and no other is tried.
    stop?.throwIfAborted()
    // A copy: the probe's result is cached, and shared with --check's second look.
    if ('path' in found) return tried.length === 0 ? found : { ...found, passedOver: tried.map((u) => u.reason) }
    // The machine, not the interpreter: the next candidate could not be tried either, nor a worker started.
    if (found.kind === 'no-process') throw new ConfigError(`${found.reason}: ${PROCESS_LIMIT_FIX}`)
    tried.push(found)
  }
  const reasons = tried.map((u) => u.reason).join('; ')
  // When every interpreter here is too old, installing packages for them would not help.
  const present = tried.filter((u) => u.kind !== 'missing')
  // A file on PYTHONPATH hides the package from every interpreter alike: installing it would not help.
  const advice = present.some((u) => u.kind === 'shadowed')
    ? SHADOW_FIX
    : present.length > 0 && present.every((u) => u.kind === 'too-old')
      ? `install Python ${MIN_VERSION} or newer with msgpack and defusedxml, and point PYTHON at it`
      : `${FIX}; the workers need Python ${MIN_VERSION} or newer`
  throw new ConfigError(`no Python interpreter can run the workers (tried ${reasons}): ${advice}`)
}
