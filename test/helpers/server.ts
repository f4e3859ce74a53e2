// Test helpers: a real app on a real socket with real workers, and the real
// server process for signal tests. Everything opened is closed in t.teardown.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { rawExchange } from './raw-http.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const FIXTURES = fileURLToPath(new URL('../fixtures', import.meta.url))
/** The offload thread as built in dist/ (tap's `before` step builds it when stale): from src/, each thread start compiled every module again through the TypeScript loader (~2.5 s of CPU). */
export const BUILT_OFFLOAD_THREAD = new URL('../../dist/offload/offload-thread.js', import.meta.url)

export interface Teardown { teardown: (fn: () => unknown) => void }

export interface TestServer {
  url: string
  app: FastifyInstance
  /** Every log line the app wrote, parsed. */
  logs: Array<Record<string, any>>
  close: () => Promise<void>
}

/**
 * Starts the app with real workers on 127.0.0.1:<random port>; `beforeListen` may add hooks
 * (Fastify refuses them once listening); `startSignal`, as main.ts's start-up signal.
 */
export async function startServer (t: Teardown, env: Record<string, string> = {}, { beforeListen, startSignal }: { beforeListen?: (app: FastifyInstance) => void, startSignal?: AbortSignal } = {}): Promise<TestServer> {
  // VALIDATE_RESULTS: every result of every test's calls is checked against its task's output schema.
  const config = loadConfig({ POOL_SIZE: '4', DIAG_TASKS: '1', LOG_LEVEL: 'info', VALIDATE_RESULTS: '1', PATH: process.env.PATH, ...env })
  const logs: Array<Record<string, any>> = []
  const stream = new Writable({
    write (chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line))
      done()
    }
  })
  const app = await buildApp(config, { logger: { level: config.logLevel, stream }, offloadScript: BUILT_OFFLOAD_THREAD, startSignal })
  beforeListen?.(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await app.close()
  }
  t.teardown(close)
  return { url: `http://127.0.0.1:${port}`, app, logs, close }
}

/** POSTs JSON (or a raw body with its content type) to a task. */
export async function callTask (url: string, task: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, headers: Headers, json: any, text: string }> {
  const isRaw = typeof body === 'string' || body instanceof Uint8Array
  const response = await fetch(`${url}/api/tasks/${task}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: isRaw ? body as string : JSON.stringify(body)
  })
  const text = await response.text()
  let json: any
  try { json = JSON.parse(text) } catch { json = undefined }
  return { status: response.status, headers: response.headers, json, text }
}

/** An exposition without its samples at 0: what was observed (the task route's series, among others, exist from the start at 0). */
export function observed (exposition: string): string {
  return exposition.split('\n').filter((line) => !line.endsWith(' 0')).join('\n')
}

export async function getJson (url: string): Promise<any> {
  const response = await fetch(url)
  return await response.json()
}

/** Polls until `check` is true, or fails after `timeoutMs` (no fixed sleeps in tests). */
export async function waitFor (check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

/** True if a process with this pid exists and is not a zombie. */
export async function isRunning (pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** When the process with this pid started (clock ticks since boot), or undefined if there is none. */
export async function startTimeOf (pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

/**
 * SIGKILLs `pid` if it is still the process that had it at `startTime`. pid_max may be
 * 32768: by a test's teardown, a pid whose process died may belong to another test's
 * server (tap runs two files at once), and killing it fails that test for nothing.
 */
export async function killIfStill (pid: number, startTime: string | undefined): Promise<void> {
  if (startTime !== undefined && await isRunning(pid) && await startTimeOf(pid) === startTime) process.kill(pid, 'SIGKILL')
}

export function workerPids (server: TestServer): number[] {
  return server.app.pool.members().map((w) => w.pid)
}

export interface ServerProcess {
  child: ChildProcessWithoutNullStreams
  url: string
  output: () => string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/**
 * The URL a server process listens on, from Fastify's "Server listening at" line. Servers
 * started by tests listen on PORT=0: a port picked at random could be in use (the kernel's
 * ephemeral range, 32768-60999 here, is where every client socket of the suite gets its port).
 */
export function listeningUrl (output: string): string | undefined {
  const port = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(output)?.[1]
  return port === undefined ? undefined : `http://127.0.0.1:${port}`
}

export interface ServerProcessOptions {
  /** Starts it under this limit on open files, soft and hard (sh's `ulimit -n`, then exec: the pid is the server's). */
  openFileLimit?: number
}

/** Runs `node dist/server.js` (build first: npm test does) and waits until it listens. */
export async function startServerProcess (t: Teardown, env: Record<string, string> = {}, { openFileLimit }: ServerProcessOptions = {}): Promise<ServerProcess> {
  // sh, not bash: bash reads ~/.bashrc when its stdin is a socket, as spawn()'s pipes are.
  const [command, args] = openFileLimit === undefined
    ? [process.execPath, ['dist/server.js']]
    : ['/bin/sh', ['-c', `ulimit -n ${openFileLimit} && exec "$0" dist/server.js`, process.execPath]]
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', DIAG_TASKS: '1', LOG_LEVEL: 'info', VALIDATE_RESULTS: '1', ...env }
  })
  let out = ''
  child.stdout.on('data', (d) => { out += String(d) })
  child.stderr.on('data', (d) => { out += String(d) })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  let gone = false
  void exited.then(() => { gone = true })
  await waitFor(() => gone || listeningUrl(out) !== undefined, 30_000, 'the server process to listen')
  const url = listeningUrl(out) ?? 'http://127.0.0.1:0' // gone before it listened: the test reads why from output()
  // Not fetch: it would keep its connection open in its pool, taking one of MAX_CONNECTIONS'
  // places for the rest of the test. Node closes this one before the client sees it closed.
  await waitFor(async () => {
    if (gone) return true
    return (await rawExchange(url, 'GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')).startsWith('HTTP/1.1 200 ')
  }, 30_000, 'the server process to be ready')
  return { child, url, output: () => out, exited }
}

/** Pids of python processes whose parent is `parentPid`. */
export async function childPythonPids (parentPid: number): Promise<number[]> {
  const { readdir } = await import('node:fs/promises')
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8')
      if (Number(fields[1]) === parentPid && cmdline.includes('pyfleet')) pids.push(Number(entry))
    } catch { /* gone */ }
  }
  return pids
}

/** A TCP port free on 127.0.0.1 a moment ago, for a server the test starts outside Node (Prometheus, nginx). */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * Runs `node dist/server.js` with `env` (and PATH, HOST 127.0.0.1, PORT 0) to its exit, for what
 * a start or `--check` says when it stops: its exit code, and stdout and stderr together.
 */
export async function runServer (env: Record<string, string>, args: string[] = []): Promise<{ code: number | null, output: string }> {
  const child = spawn(process.execPath, ['dist/server.js', ...args], { cwd: ROOT, env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ...env } })
  let output = ''
  child.stdout.on('data', (d) => { output += String(d) })
  child.stderr.on('data', (d) => { output += String(d) })
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  clearTimeout(killer)
  return { code, output }
}
