// Reads the environment once, validates every value and returns a frozen Config.
// Nothing else in the service reads process.env; resolving the Python interpreter
// (which runs a process) is python-path.ts's job.

import { isIP } from 'node:net'
import { lookalikeSettings, type Lookalike } from './setting-names.js'
import { shorten } from './short-text.js'

/** A number per task name: TASK_CONCURRENCY=csv.profile=1,xml.import=2, TASK_TIMEOUTS=xml.import=120000. */
export type PerTask = Readonly<Record<string, number>>

export interface Config {
  readonly host: string
  readonly port: number
  /** PROBE_PORT: a second port for /health, /ready, /metrics and /api/queue-stats alone (probe-listener.ts); undefined: none. */
  readonly probePort: number | undefined
  /** As configured (may be a bare name); python-path.ts turns it into an absolute path. */
  readonly python: string | undefined
  readonly poolSize: number
  readonly queueLimit: number
  /** The most body bytes queued calls may hold together (0: no limit). */
  readonly queueLimitBytes: number
  /** The most request-body bytes being received at once, across connections (0: no limit). */
  readonly receiveLimitBytes: number
  /** OFFLOAD_MIN_BYTES: JSON and msgpack bodies and reply frames this large (raw text: TEXT_OFFLOAD_FACTOR times) are converted on the offload thread (0: none). */
  readonly offloadMinBytes: number
  readonly queueTimeoutMs: number
  readonly taskTimeoutMs: number
  readonly maxCallsPerWorker: number
  readonly maxWorkerRssMb: number
  readonly bodyLimitBytes: number
  /** Longest a client may take to send a whole request, headers and body; 0 = no limit. */
  readonly requestBodyTimeoutMs: number
  /** An idle keep-alive connection is closed after this long (Node's keepAliveTimeout); a proxy in front must close its own first. */
  readonly keepAliveTimeoutMs: number
  /** A client that reads nothing of its answer for this long loses the connection (0: no limit). */
  readonly responseStallTimeoutMs: number
  /** Open client connections at most; Node closes more as it accepts them (0: no cap). */
  readonly maxConnections: number
  readonly maxFrameBytes: number
  readonly taskModules: readonly string[]
  /** Per-task limits on workers held at once (over a task's max_concurrency). */
  readonly taskConcurrency: PerTask
  /** Per-task time limits in ms (over a task's timeout_ms). */
  readonly taskTimeouts: PerTask
  readonly diagTasks: boolean
  readonly adminToken: string | undefined
  readonly shutdownGraceMs: number
  /** After SIGTERM/SIGINT, how long /ready says 503 while calls are still served, before the drain (0: none). */
  readonly shutdownDelayMs: number
  readonly workerStopGraceMs: number
  /** How long a worker may take to import its task modules and say ready. */
  readonly workerStartTimeoutMs: number
  readonly logLevel: string
  readonly maxEventLoopDelayMs: number
  readonly maxHeapUsedBytes: number
  readonly maxRssBytes: number
  /** SHED_LATE_CALLS: a queued call with less budget left than its task's fastest recent calls took is refused, not run (pool/task-pace.ts). */
  readonly shedLateCalls: boolean
  /** Workers run as SCHED_BATCH (Linux): cheaper short calls, slightly slower CPU-bound ones; see README. */
  readonly workerSchedBatch: boolean
  /** Development: reload the workers when a task module's source changes (plugins/reload-on-change.ts). */
  readonly reloadOnChange: boolean
  /** Check each result against its task's output schema (a 500 RESULT_INVALID if it fails); off: not checked. */
  readonly validateResults: boolean
  /** The environment workers inherit, less the server's secrets (PYTHONPATH is extended by the pool). */
  readonly workerEnv: Readonly<Record<string, string | undefined>>
  /** Variables set that are no setting but look like one (a typo): warned about at start. */
  readonly lookalikes: readonly Lookalike[]
}

/**
 * Settings that are the server's secrets, not the tasks' business: a task (or a
 * library it imports, or a process it starts) never sees them.
 */
const SERVER_SECRETS = ['ADMIN_TOKEN']
const MIN_DISTINCT_TOKEN_CHARACTERS = 8

function workerEnvironment (env: NodeJS.ProcessEnv, reloadOnChange: boolean): Record<string, string | undefined> {
  const workerEnv = { ...env }
  for (const name of SERVER_SECRETS) delete workerEnv[name]
  // Python takes a cached .pyc as current while the source's size and mtime, in whole
  // seconds, are unchanged: the reload that follows a save writes one in that second, and a
  // second save within it, at the same size, was served as the first, the reload saying it
  // succeeded. While tasks are being written, workers compile them afresh at each start.
  if (reloadOnChange && (workerEnv.PYTHONDONTWRITEBYTECODE ?? '') === '') workerEnv.PYTHONDONTWRITEBYTECODE = '1'
  return workerEnv
}

/** A configuration value that cannot be used; the message says which and how to fix it. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const MODULE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/
const TASK_NAME = /^[A-Za-z0-9._-]{1,64}$/
/** Node timers overflow past this (about 24.8 days) and would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1
/** What main.ts's shutdown backstop adds to the drain and the workers' stop. */
export const SHUTDOWN_BACKSTOP_MARGIN_MS = 5_000

/** How long main.ts lets a shutdown take before it exits anyway: the drain, the workers' stop (SIGTERM, then SIGKILL), and a margin. */
export function shutdownBackstopMs ({ shutdownGraceMs, workerStopGraceMs }: Pick<Config, 'shutdownGraceMs' | 'workerStopGraceMs'>): number {
  return shutdownGraceMs + 2 * workerStopGraceMs + SHUTDOWN_BACKSTOP_MARGIN_MS
}

type Env = Readonly<Record<string, string | undefined>>

function integer (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const range = `${min}..${max}`
  if (!/^-?\d+$/.test(raw)) throw new ConfigError(`${name}=${JSON.stringify(raw)} is not an integer: use ${range}`)
  const value = Number(raw)
  if (value < min || value > max) throw new ConfigError(`${name}=${raw} is out of range: use ${range}`)
  return value
}

function flag (env: Env, name: string): boolean {
  const raw = env[name]?.trim().toLowerCase()
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false' || raw === 'no') return false
  if (raw === '1' || raw === 'true' || raw === 'yes') return true
  throw new ConfigError(`${name}=${JSON.stringify(env[name])} is not a boolean: use 1, true or yes; 0, false or no`)
}

/** A file path given for a module name (mytasks/greeting.py): the name it means. */
function moduleNameHint (given: string): string {
  const meant = given.replace(/^\.\//, '').replace(/\.py$/, '').replace(/\//g, '.')
  return meant !== given && MODULE_NAME.test(meant) ? `: write ${meant}, with its directory's parent on PYTHONPATH` : ''
}

function moduleList (env: Env, name: string): string[] {
  const raw = env[name]?.trim() ?? ''
  if (raw === '') return []
  const modules = raw.split(',').map((m) => m.trim()).filter((m) => m !== '')
  for (const m of modules) {
    if (!MODULE_NAME.test(m)) throw new ConfigError(`${name}: ${JSON.stringify(m)} is not an importable Python module name (like mypackage.tasks)${moduleNameHint(m)}`)
    // The runtime and its built-in tasks are loaded by every worker already; listed here, pyfleet_tasks.diag
    // (which can exit its worker and hold memory) would be served without DIAG_TASKS.
    if (/^pyfleet(_tasks)?(\.|$)/.test(m)) throw new ConfigError(`${name}: ${m} is pyfleet's own (every worker loads the built-in tasks; diag.work comes with DIAG_TASKS=1); list your own modules only`)
  }
  return modules
}

/**
 * task=value pairs, each value an integer from 1 to `max` (values above `clampTo` are lowered
 * to it: with no `max`, any value, however large). Empty entries are skipped, as in
 * TASK_MODULES: a trailing comma left by an edit is no error.
 */
function perTask (env: Env, name: string, { what, example, max = Infinity, clampTo = max }: { what: string, example: string, max?: number, clampTo?: number }): PerTask {
  const raw = env[name]?.trim() ?? ''
  // No prototype: a task named toString or constructor must not find Object's.
  const values: Record<string, number> = Object.create(null)
  if (raw === '') return Object.freeze(values)
  for (const entry of raw.split(',')) {
    if (entry.trim() === '') continue
    const match = /^\s*([^=\s]+)\s*=\s*(\d+)\s*$/.exec(entry)
    if (match === null || !TASK_NAME.test(match[1]) || Number(match[2]) < 1 || Number(match[2]) > max) {
      const range = max === Infinity ? 'at least 1' : `from 1 to ${max}`
      throw new ConfigError(`${name}: ${JSON.stringify(shorten(entry.trim(), 100))} should be task=${what} with ${what} ${range}, as in ${example}`)
    }
    // Twice: which one was meant? (The last would win, silently, even in --check.)
    if (match[1] in values) throw new ConfigError(`${name} names ${match[1]} twice; keep one of its values`)
    values[match[1]] = Math.min(Number(match[2]), clampTo)
  }
  return Object.freeze(values)
}

/**
 * An IPv4 or IPv6 address, or a host name as RFC 1123 writes one. A dotted name whose
 * last label is all digits (999.1.1.1) is a mistyped address, not a name: refused here
 * rather than after every worker has started, when listen() fails to resolve it.
 */
function isHost (host: string): boolean {
  if (isIP(host) !== 0) return true
  if (host.length > 253) return false
  const labels = host.replace(/\.$/, '').split('.')
  // Underscores too: not in RFC 1123, but getaddrinfo resolves them (Compose v1 names services proj_web_1).
  return !/^\d+$/.test(labels[labels.length - 1]) && labels.every((label) => /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i.test(label))
}

/** Builds the Config from an environment (process.env in production, a plain object in tests). */
export function loadConfig (env: Env): Config {
  const host = env.HOST?.trim() || '0.0.0.0'
  if (!isHost(host)) {
    const brackets = /^\[.*\]$/.test(host) ? `; write an IPv6 address without brackets (${host.slice(1, -1)})` : /^[^:]+:\d+$/.test(host) ? '; the port goes in PORT' : ''
    throw new ConfigError(`HOST=${JSON.stringify(env.HOST)} is neither an IP address nor a host name: use 0.0.0.0 (every IPv4 interface), :: (every interface), 127.0.0.1 or a name such as localhost${brackets}`)
  }
  const poolSize = integer(env, 'POOL_SIZE', 4, 1, 256)
  const logLevel = env.LOG_LEVEL?.trim().toLowerCase() || 'info'
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL=${JSON.stringify(env.LOG_LEVEL)} is not one of ${LOG_LEVELS.join(', ')}`)
  const adminToken = env.ADMIN_TOKEN ?? ''
  if (adminToken !== '' && adminToken.length < 16) {
    throw new ConfigError('ADMIN_TOKEN is too short to be a secret: use at least 16 characters (for example: openssl rand -hex 32), or leave it empty to turn admin routes off')
  }
  // "Authorization: Bearer <token>": no whitespace, and only ASCII, which every client
  // sends the same way (curl sends UTF-8, fetch Latin-1: a non-ASCII token works for one only).
  if (adminToken !== '' && !/^[\x21-\x7e]+$/.test(adminToken)) {
    // A Secret made from a file (kubectl create secret --from-file) keeps the file's last newline.
    const newline = /^[\x21-\x7e]+\r?\n$/.test(adminToken) ? ' (this one ends in a line break: a secret made from a file keeps the file\'s last newline; make it without, e.g. printf or kubectl --from-literal)' : ''
    throw new ConfigError(`ADMIN_TOKEN may hold only visible ASCII characters, no spaces, as an Authorization: Bearer header carries them: use letters, digits and -._~+/ (for example: openssl rand -hex 32)${newline}`)
  }
  // The placeholder deploy/compose.yaml shows, uncommented as it is: public in the repository.
  if (/change-?me/i.test(adminToken)) {
    throw new ConfigError('ADMIN_TOKEN is an example\'s placeholder ("change-me..."), which anyone can read in pyfleet\'s repository: use a random one (for example: openssl rand -hex 32)')
  }
  // Length alone lets "aaaaaaaaaaaaaaaa" or "secret-secret-secret" through: a token made of a
  // few characters repeated is guessed long before its length suggests. A random one has
  // plenty (32 hex digits hold fewer than 8 different ones about once in 10^11).
  const distinct = new Set(adminToken).size
  if (adminToken !== '' && distinct < MIN_DISTINCT_TOKEN_CHARACTERS) {
    throw new ConfigError(`ADMIN_TOKEN has only ${distinct} different character${distinct === 1 ? '' : 's'}: a token of a few characters repeated is guessable; use a random one of at least ${MIN_DISTINCT_TOKEN_CHARACTERS} (for example: openssl rand -hex 32)`)
  }
  const bodyLimitBytes = integer(env, 'BODY_LIMIT_BYTES', 16 * 1024 * 1024, 1, 1024 * 1024 * 1024)
  const maxFrameBytes = integer(env, 'MAX_FRAME_BYTES', 64 * 1024 * 1024, 1024, 2 ** 32 - 1)
  if (maxFrameBytes <= bodyLimitBytes) {
    throw new ConfigError(`MAX_FRAME_BYTES=${maxFrameBytes} must be larger than BODY_LIMIT_BYTES=${bodyLimitBytes}, or an accepted body could not be sent to a worker`)
  }
  const reloadOnChange = flag(env, 'RELOAD_ON_CHANGE')
  const config: Config = {
    host,
    port: integer(env, 'PORT', 5000, 0, 65535),
    probePort: env.PROBE_PORT?.trim() ? integer(env, 'PROBE_PORT', 0, 0, 65535) : undefined,
    python: env.PYTHON?.trim() || undefined,
    poolSize,
    queueLimit: integer(env, 'QUEUE_LIMIT', 1000, 0, 1_000_000),
    // 64 MiB of bodies: up to ~512 MiB of memory for inputs made of small numbers (8× in msgpack).
    queueLimitBytes: integer(env, 'QUEUE_LIMIT_BYTES', 64 * 1024 * 1024, 0, 2 ** 50),
    // Bodies arriving are held as bytes (1×), so the same 64 MiB as the queue is a smaller share of memory.
    receiveLimitBytes: integer(env, 'RECEIVE_LIMIT_BYTES', 64 * 1024 * 1024, 0, 2 ** 50),
    queueTimeoutMs: integer(env, 'QUEUE_TIMEOUT_MS', 30_000, 1, MAX_TIMER_MS),
    taskTimeoutMs: integer(env, 'TASK_TIMEOUT_MS', 30_000, 1, MAX_TIMER_MS),
    maxCallsPerWorker: integer(env, 'MAX_CALLS_PER_WORKER', 10_000, 0, 1_000_000_000),
    maxWorkerRssMb: integer(env, 'MAX_WORKER_RSS_MB', 512, 0, 1024 * 1024), // up to 1 TiB
    bodyLimitBytes,
    requestBodyTimeoutMs: integer(env, 'REQUEST_BODY_TIMEOUT_MS', 300_000, 0, MAX_TIMER_MS),
    // Fastify's own default, 72 s: above the 60 s idle timeout of nginx's upstream keep-alive and
    // of AWS's load balancers, which must close an idle connection first (a request sent down a
    // connection the server closes at that moment is reset: a 502). Google Cloud's load
    // balancers keep theirs 600 s, and ask for more than that here. Node keeps a connection a
    // second past it (its own margin), which at MAX_TIMER_MS overflowed its timer (a review).
    keepAliveTimeoutMs: integer(env, 'KEEP_ALIVE_TIMEOUT_MS', 72_000, 1, MAX_TIMER_MS - 1000),
    responseStallTimeoutMs: integer(env, 'RESPONSE_STALL_TIMEOUT_MS', 300_000, 0, MAX_TIMER_MS),
    // ~10-12 KB of Node's RSS per connection with a small request (measured: docs/operations.md, "Sizing"):
    // 10,000 is ~120 MB, ten times the benchmark's 1,000 connections. The top is Linux's
    // default ceiling on a process's open files (fs.nr_open, 2^20), which connections cannot pass.
    maxConnections: integer(env, 'MAX_CONNECTIONS', 10_000, 0, 2 ** 20),
    maxFrameBytes,
    // 256 KiB: where the thread starts to pay in throughput (echo, paired: 100 KB ×0.86,
    // 150 KB ×0.92, 250 KB ×1.08, 500 KB ×1.40, 1 MB ×1.25); a body under it holds the
    // event loop for ~5 ms (records) to ~25 ms (distinct keys) each way. 0: never.
    offloadMinBytes: integer(env, 'OFFLOAD_MIN_BYTES', 256 * 1024, 0, 2 ** 32),
    taskModules: Object.freeze(moduleList(env, 'TASK_MODULES')),
    taskConcurrency: perTask(env, 'TASK_CONCURRENCY', { what: 'limit', example: 'csv.profile=1,xml.import=2', clampTo: poolSize }),
    taskTimeouts: perTask(env, 'TASK_TIMEOUTS', { what: 'ms', example: 'xml.import=120000,echo=1000', max: MAX_TIMER_MS }),
    diagTasks: flag(env, 'DIAG_TASKS'),
    adminToken: adminToken === '' ? undefined : adminToken,
    shutdownGraceMs: integer(env, 'SHUTDOWN_GRACE_MS', 10_000, 0, MAX_TIMER_MS),
    shutdownDelayMs: integer(env, 'SHUTDOWN_DELAY_MS', 0, 0, MAX_TIMER_MS),
    workerStopGraceMs: integer(env, 'WORKER_STOP_GRACE_MS', 2_000, 0, MAX_TIMER_MS),
    // Generous: a task module may import heavy libraries (or load a model) before its worker says ready.
    workerStartTimeoutMs: integer(env, 'WORKER_START_TIMEOUT_MS', 60_000, 1, MAX_TIMER_MS),
    logLevel,
    maxEventLoopDelayMs: integer(env, 'MAX_EVENT_LOOP_DELAY_MS', 1_000, 0, MAX_TIMER_MS),
    maxHeapUsedBytes: integer(env, 'MAX_HEAP_USED_BYTES', 0, 0, 2 ** 50),
    maxRssBytes: integer(env, 'MAX_RSS_BYTES', 0, 0, 2 ** 50),
    workerSchedBatch: flag(env, 'WORKER_SCHED_BATCH'),
    shedLateCalls: flag(env, 'SHED_LATE_CALLS'),
    reloadOnChange,
    validateResults: flag(env, 'VALIDATE_RESULTS'),
    workerEnv: Object.freeze(workerEnvironment(env, reloadOnChange)),
    lookalikes: Object.freeze(lookalikeSettings(env))
  }
  if (config.probePort !== undefined && config.probePort !== 0 && config.probePort === config.port) {
    throw new ConfigError(`PROBE_PORT=${config.probePort} is PORT too: give the probes a port of their own (9090, say), or leave PROBE_PORT empty to serve them on PORT alone`)
  }
  // main.ts's shutdown backstop waits this long; past Node's longest timer it would fire at once.
  if (shutdownBackstopMs(config) > MAX_TIMER_MS) {
    throw new ConfigError(`SHUTDOWN_GRACE_MS + 2 × WORKER_STOP_GRACE_MS (${config.shutdownGraceMs} + 2 × ${config.workerStopGraceMs}) must stay under ${MAX_TIMER_MS - SHUTDOWN_BACKSTOP_MARGIN_MS} ms (Node's longest timer, about 24.8 days, less ${SHUTDOWN_BACKSTOP_MARGIN_MS / 1000} s): lower one of them`)
  }
  return Object.freeze(config)
}
