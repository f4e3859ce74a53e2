// The designs under test and how to start each: pyfleet itself (and, with
// --baseline-dir, pyfleet from another checkout), and the baselines of
// bench/baselines/. Every design serves POST /api/tasks/<task> on its own free
// port, except pipe, which has no HTTP and is driven over IPC.

import { execFileSync, fork, spawn } from 'node:child_process'
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, isAlive, stopTree, waitForHttp } from './procs.mjs'

export const DESIGN_ORDER = ['pyfleet', 'pyfleet-base', 'proto', 'bare', 'pipe', 'spawn', 'gunicorn']

export const DESIGN_NOTES = {
  pyfleet: 'this checkout: node dist/server.js, 4 workers, LOG_LEVEL=warn',
  'pyfleet-base': 'pyfleet from --baseline-dir, same settings',
  proto: 'the same design without pyfleet\'s features: Fastify, generic-pool, the same worker class',
  bare: 'Fastify echo in pure JS (ceiling of the HTTP layer)',
  pipe: 'no HTTP: Node drives 4 workers over the worker protocol (ceiling of the IPC layer)',
  spawn: 'Fastify spawning one python3 per request, at most 4 at once',
  gunicorn: 'Flask under gunicorn, 4 sync workers, same task functions'
}

function logFile (ctx, name) {
  return openSync(join(ctx.logDir, `${name}.log`), 'a')
}

/** Starts a server process with stdout and stderr in its log file. */
function startProcess (ctx, name, command, args, options) {
  const fd = logFile(ctx, name)
  const child = spawn(command, args, { ...options, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  child.on('error', () => {})
  return child
}

/** A driver child for one measured run against an HTTP design. */
function driveHttp (ctx, url, spec, onMark) {
  return new Promise((resolve, reject) => {
    const driver = fork(join(ctx.benchDir, 'lib', 'drive.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    onMark({ type: 'driver', pid: driver.pid })
    let settled = false
    driver.on('message', (message) => {
      if (message.type === 'result') { settled = true; resolve(message.result) } else if (message.type === 'error') { settled = true; reject(new Error(message.message)) } else onMark(message)
    })
    driver.on('exit', (code) => { if (!settled) reject(new Error(`load generator exited with code ${code}`)) })
    driver.send({ url, ...spec })
  })
}

function httpHandle (ctx, name, child, url) {
  return {
    name,
    pid: child.pid,
    url,
    run: (spec, onMark) => driveHttp(ctx, url, spec, onMark),
    stop: () => stopTree(child),
    isAlive: () => child.exitCode === null && child.signalCode === null
  }
}

async function startHttp (ctx, name, command, args, options) {
  const port = await freePort()
  const argv = typeof args === 'function' ? args(port) : args
  const child = startProcess(ctx, name, command, argv, { ...options, env: { ...options.env, PORT: String(port), HOST: '127.0.0.1' } })
  const handle = httpHandle(ctx, name, child, `http://127.0.0.1:${port}`)
  try {
    await waitForHttp(`${handle.url}/health`, 30_000, handle.isAlive)
  } catch (error) {
    await handle.stop()
    throw new Error(`${name} did not start: ${error.message} (log: ${join(ctx.logDir, `${name}.log`)})`)
  }
  return handle
}

function startPyfleet (ctx, name, root) {
  const nodeArgs = [...ctx.nodeArgs, ...(ctx.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(ctx.outDir, 'profiles', name)] : [])]
  return startHttp(ctx, name, process.execPath, [...nodeArgs, join(root, 'dist', 'server.js')], {
    cwd: root,
    // The interpreter every design runs (run.mjs), unless --env PYTHON says otherwise.
    env: { ...ctx.inheritedEnv, PYTHON: ctx.python, POOL_SIZE: '4', DIAG_TASKS: '1', LOG_LEVEL: ctx.logLevel, ...ctx.pyfleetEnv }
  })
}

async function startPipe (ctx) {
  const fd = logFile(ctx, 'pipe')
  const child = fork(join(ctx.benchDir, 'baselines', 'pipe.mjs'), [], { stdio: ['ignore', fd, fd, 'ipc'], env: { ...ctx.inheritedEnv, PYTHON: ctx.python } })
  closeSync(fd)
  await new Promise((resolve, reject) => {
    child.once('message', (m) => m.type === 'ready' ? resolve() : reject(new Error(`pipe: ${JSON.stringify(m)}`)))
    child.once('exit', (code) => reject(new Error(`pipe exited with code ${code} while starting`)))
  })
  let current
  child.on('message', (message) => {
    if (current === undefined) return
    if (message.type === 'result') { current.resolve(message.result); current = undefined } else if (message.type === 'error') { current.reject(new Error(message.message)); current = undefined } else current.onMark(message)
  })
  child.on('exit', () => { current?.reject(new Error('pipe exited during a run')); current = undefined })
  return {
    name: 'pipe',
    pid: child.pid,
    url: null,
    run: (spec, onMark) => new Promise((resolve, reject) => {
      current = { resolve, reject, onMark }
      child.send({ type: 'run', ...spec })
    }),
    stop: async () => {
      if (child.connected) child.send({ type: 'stop' })
      await new Promise((resolve) => { if (!isAlive(child.pid) || child.exitCode !== null) resolve(); else child.once('exit', resolve); setTimeout(resolve, 5000) })
      return await stopTree(child, 1000)
    },
    isAlive: () => child.exitCode === null
  }
}

/**
 * Whether gunicorn and Flask are installed; a note saying why not otherwise.
 * Flask is looked for with gunicorn's own interpreter (its script's #! line), not with
 * the Python pyfleet runs: pyfleet may pick a .venv, which does not see Debian's
 * python3-flask, while Debian's gunicorn always runs /usr/bin/python3 (the bench
 * skipped gunicorn on a machine that had both installed).
 */
export function gunicornAvailability () {
  const script = (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => join(dir, 'gunicorn')).find((file) => {
    try { accessSync(file, constants.X_OK); return true } catch { return false }
  })
  if (script === undefined) {
    return { ok: false, note: 'gunicorn not installed (Debian: sudo apt-get install gunicorn python3-flask): skipped' }
  }
  const python = interpreterOf(script)
  try {
    execFileSync(python[0], [...python.slice(1), '-c', 'import flask'], { stdio: 'ignore' })
  } catch {
    return { ok: false, note: `Flask not importable by gunicorn's Python (${python.join(' ')}; Debian: sudo apt-get install python3-flask): gunicorn skipped` }
  }
  return { ok: true, python }
}

/** The command line of a script's #! line (`#!/usr/bin/env python3` gives ['/usr/bin/env', 'python3']); python3 if none. */
function interpreterOf (script) {
  const first = readFileSync(script, { encoding: 'latin1' }).slice(0, 256).split('\n')[0]
  return first.startsWith('#!') ? first.slice(2).trim().split(/\s+/) : ['python3']
}

/** Starts design `name`; resolves with a handle {name, pid, url, run(spec, onMark), stop()}. */
export async function startDesign (ctx, name) {
  const baselines = join(ctx.benchDir, 'baselines')
  switch (name) {
    case 'pyfleet': return await startPyfleet(ctx, name, ctx.root)
    case 'pyfleet-base': {
      if (!existsSync(join(ctx.baselineDir, 'dist', 'server.js'))) throw new Error(`${ctx.baselineDir}/dist/server.js is missing: run npm ci && npm run build there`)
      return await startPyfleet(ctx, name, ctx.baselineDir)
    }
    case 'proto': return await startHttp(ctx, name, process.execPath, [join(baselines, 'proto.mjs')], { cwd: ctx.root, env: { ...ctx.inheritedEnv, PYTHON: ctx.python } })
    case 'bare': return await startHttp(ctx, name, process.execPath, [join(baselines, 'bare.mjs')], { cwd: ctx.root, env: ctx.inheritedEnv })
    case 'spawn': return await startHttp(ctx, name, process.execPath, [join(baselines, 'spawn.mjs')], { cwd: ctx.root, env: { ...ctx.inheritedEnv, PYTHON: ctx.python } })
    case 'gunicorn': return await startHttp(ctx, name, 'gunicorn', (port) => [
      '--workers', '4', '--worker-class', 'sync', '--bind', `127.0.0.1:${port}`, '--chdir', baselines, '--log-level', 'warning',
      // gunicorn's advice for containers: the heartbeat file on tmpfs, not on an overlay /tmp that can stall workers.
      ...(existsSync('/dev/shm') ? ['--worker-tmp-dir', '/dev/shm'] : []), 'gunicorn_app:app'
    ], { cwd: ctx.root, env: { ...ctx.inheritedEnv, PYTHONPATH: [join(ctx.root, 'workers'), baselines].join(':') } })
    case 'pipe': return await startPipe(ctx)
    default: throw new Error(`unknown design ${name}`)
  }
}
