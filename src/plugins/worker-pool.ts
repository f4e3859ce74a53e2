// Starts the pool of Python workers before the app listens, decorates the app
// with it and the task registry, and drains it when the app closes.

import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { resolvePython, type PythonInfo } from '../python-path.js'
import { TaskRegistry } from '../task-registry.js'
import { PythonWorker } from '../pool/python-worker.js'
import { WorkerPool } from '../pool/worker-pool.js'
import { Offloader } from '../offload/offloader.js'
import { trackConnections } from './connections.js'
import { version } from '../version.js'
import { declarationKey } from '../declaration-key.js'
import { groupKillNote, readCgroupLimits, sizingProblems } from '../cgroup-limits.js'

/** The project root: one level above src/ (tests) or dist/ (production). */
export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const WORKERS_DIR = join(PROJECT_ROOT, 'workers')
// At shutdown, after the drain: the longest answers still being written to slow readers get.
// Within main.ts's backstop, which leaves 5 s past the drain and the workers' stop.
const RESPONSE_FLUSH_MS = 3_000

declare module 'fastify' {
  interface FastifyInstance {
    pool: WorkerPool
    tasks: TaskRegistry
    offloader: Offloader
  }
}

export interface WorkerPoolPluginOptions {
  config: Config
  /** Aborts the first workers' start; later starts are aborted by the pool itself when it closes. */
  startSignal?: AbortSignal
  /**
   * `--check`: what serving logs as a warning about the task setup stops the start instead
   * (a TASK_MODULES entry that registers no task, TASK_TIMEOUTS or TASK_CONCURRENCY naming
   * no task). A pipeline is where such a mistake should stop; a server starts anyway.
   */
  strict?: boolean
  /** The offload thread's script (BuildOptions.offloadScript). */
  offloadScript?: URL
}

/**
 * A task module's import that failed for a missing package, when the search for an
 * interpreter passed one over: the package is most likely installed for that one (an
 * activated virtualenv without msgpack), and "install the package" alone would send the
 * user to install what they have. The start's one line says so; `pool ready`, which names
 * what was passed over, never comes then.
 */
export function withPassedOver (error: unknown, python: PythonInfo): unknown {
  if (python.passedOver === undefined || !(error instanceof Error)) return error
  const missing = /task module '([^']+)' could not be imported: No module named '([^']+)'/.exec(error.message)
  // Only a package the task module imports (or a module of one: a namespace package such as
  // google.cloud is found in part). The task module itself, or a package above it, not found
  // (a typo in TASK_MODULES, a PYTHONPATH without its directory) is no package to install
  // anywhere, as the worker decides too (task_modules.py).
  if (missing === null) return error
  const [, module, name] = missing
  if (module === name || module.startsWith(`${name}.`)) return error
  error.message += `. The workers run ${python.path}, found after passing over ${python.passedOver.join('; ')}: if that package is installed for another interpreter, install msgpack and defusedxml there too, or point PYTHON at the one that has them all`
  return error
}

async function workerPoolPlugin (fastify: FastifyInstance, { config, startSignal, strict = false, offloadScript }: WorkerPoolPluginOptions): Promise<void> {
  const python = await resolvePython(config.python, PROJECT_ROOT, startSignal)
  const args = ['-m', 'pyfleet', '--max-frame-bytes', String(config.maxFrameBytes), '--parent-pid', String(process.pid)]
  // Each worker reads its own RSS after every call and says so in the reply once past the limit (resident.py).
  if (config.maxWorkerRssMb > 0) args.push('--max-rss-bytes', String(config.maxWorkerRssMb * 1024 * 1024))
  if (strict) args.push('--strict')
  if (config.workerSchedBatch) args.push('--sched-batch')
  if (config.diagTasks) args.push('--diag')
  for (const module of config.taskModules) args.push('--module', module)
  const env = {
    ...config.workerEnv,
    PYTHONPATH: [WORKERS_DIR, config.workerEnv.PYTHONPATH].filter(Boolean).join(':'),
    PYTHONUNBUFFERED: '1'
  }
  const log = fastify.log.child({ component: 'pool' })
  let pool: WorkerPool | undefined
  const tasks = new TaskRegistry(config)
  // Its thread starts with the first large body or reply, if one ever comes.
  const offloader = new Offloader({
    minBytes: config.offloadMinBytes,
    queueTimeoutMs: config.queueTimeoutMs,
    log: fastify.log.child({ component: 'offload' }),
    // Bodies waiting for the thread are held as bytes, as while they arrived: the same bound.
    holdBody: (bytes, request) => fastify.receiving.holdArrived(bytes, request),
    onJobDone: fastify.metrics.offloadJobDone,
    script: offloadScript
  })
  let lastDrift = ''
  // The server's start-up signal (SIGTERM during it), until the pool has started. Not after:
  // AbortSignal.any() leaves an entry in each source's set of dependants that Node 20 never
  // removes (100,000 combined signals, listeners removed, left 100,000 entries after a GC),
  // and the start-up signal lives as long as the process, so every spawn after start-up
  // (recycling, replacements, reloads) grew it for good.
  let startingSignal = startSignal

  // `signal`: the pool's (a sibling's failed start, the pool closing); during start-up the server's start-up signal aborts every start too.
  const spawn = async (id: number, signal?: AbortSignal): Promise<PythonWorker> => {
    const either = signal === undefined || startingSignal === undefined ? signal ?? startingSignal : AbortSignal.any([signal, startingSignal])
    const worker = await PythonWorker.spawn({
      id, python: python.path, args, env, cwd: PROJECT_ROOT, maxFrameBytes: config.maxFrameBytes, startTimeoutMs: config.workerStartTimeoutMs, log, signal: either,
      onExit: (w, code, signal) => {
        // `how` in words: an idle worker the kernel OOM-killed has no call to fail, and this line is where it says so.
        // exitCode, not code: a request line's code is an error code (a string), and log indexes type a field once.
        log.info({ worker: w.id, workerPid: w.pid, exitCode: code, signal, how: w.exitDescription }, 'worker exited')
        if (w.killedBy !== undefined) fastify.metrics.workerKilled(w.killedBy)
        pool?.onWorkerExit(w)
      },
      onStderrDropped: fastify.metrics.stderrLinesDropped,
      offloadMinBytes: config.offloadMinBytes
    })
    // taskCount: `tasks` is the list of names on `pool ready` and `reload finished`.
    log.info({ worker: worker.id, workerPid: worker.pid, python: python.path, version: worker.python, taskCount: worker.tasks.length }, 'worker ready')
    warnOnDrift(worker)
    return worker
  }

  /**
   * A worker started outside a reload (crash replacement, recycling) that declares other
   * tasks than the table served: task files were edited under a running server. Calls are
   * still validated against the old table, and this worker may run code the others do not.
   * Said once per distinct difference, not on every recycle.
   */
  function warnOnDrift (worker: PythonWorker): void {
    if (pool === undefined || pool.isReloading) return // the first workers make the table; a reload changes it
    const drift = tasks.drift(worker.tasks)
    const key = drift === undefined ? '' : JSON.stringify(drift)
    // A worker matching the table again re-arms the warning for the next edit.
    if (key === lastDrift) return
    lastDrift = key
    if (drift === undefined) return
    log.warn({ worker: worker.id, workerPid: worker.pid, ...drift },
      'a new worker declares tasks that differ from the table being served: task code was changed on disk under a running server. ' +
      'Workers now run different code, and calls are validated against the old table; reload (SIGHUP or POST /admin/reload) or restart to apply it')
  }

  pool = await WorkerPool.start({
    size: config.poolSize,
    queueLimit: config.queueLimit,
    queueLimitBytes: config.queueLimitBytes,
    queueTimeoutMs: config.queueTimeoutMs,
    shedLateCalls: config.shedLateCalls,
    maxCallsPerWorker: config.maxCallsPerWorker,
    maxWorkerRssBytes: config.maxWorkerRssMb * 1024 * 1024,
    stopGraceMs: config.workerStopGraceMs,
    spawn,
    log,
    observer: fastify.metrics,
    offloader
  }).catch((error: unknown) => { throw withPassedOver(error, python) })
  startingSignal = undefined
  try {
    tasks.update(pool.tasks)
    const unused = strict ? tasks.unusedLimitsProblem() : undefined
    if (unused !== undefined) throw new Error(unused)
    const rssProblem = await rssLimitBelowIdle(pool, config.maxWorkerRssMb)
    if (rssProblem !== undefined && strict) throw new Error(rssProblem)
    if (rssProblem !== undefined) log.warn({ maxWorkerRssMb: config.maxWorkerRssMb }, rssProblem)
  } catch (error) {
    await pool.drain(0, false)
    throw error
  }
  tasks.warnAboutUnusedLimits(log)
  // Warnings, not failures (--check too): a limit may be set with tasks in mind this cannot see.
  const limits = await readCgroupLimits()
  for (const problem of sizingProblems(config, limits)) log.warn({ poolSize: config.poolSize, maxWorkerRssMb: config.maxWorkerRssMb }, problem)
  const groupKill = groupKillNote(limits)
  if (groupKill !== undefined) log.info({ memoryLimitBytes: limits.memoryBytes }, groupKill)
  fastify.metrics.watch(pool)
  fastify.metrics.declareTasks(tasks.all())
  fastify.metrics.watchTaskTable(workersUnlikeTable(pool, tasks))
  fastify.metrics.setBuildInfo(await version(), pool.members()[0]?.python ?? '')
  fastify.decorate('pool', pool)
  fastify.decorate('tasks', tasks)
  fastify.decorate('offloader', offloader)
  fastify.metrics.watchOffloader(offloader)
  // An interpreter passed over says why: a package installed into it would otherwise seem ignored.
  log.info({ workers: config.poolSize, python: python.path, ...(python.passedOver === undefined ? {} : { pythonPassedOver: python.passedOver }), tasks: tasks.names() }, 'pool ready')

  // preClose runs while the listener is still open: new calls get 503 from the
  // draining pool, admitted ones finish, then workers stop and HTTP closes.
  const activePool = pool
  const connections = trackConnections(fastify.server, config.responseStallTimeoutMs, fastify.log)
  fastify.metrics.watchConnections(connections)
  // The lame duck (SHUTDOWN_DELAY_MS): answers already being made when it begins (a call
  // running, a body arriving) close their connections too, not only those to requests after it.
  fastify.whenStopAnnounced(() => { connections.closeAfterAnswers(true) })
  fastify.addHook('preClose', async () => {
    offloader.drain()
    connections.stop()
    connections.closeAfterAnswers()
    await activePool.drain(config.shutdownGraceMs)
    // Every admitted call has its answer now: let answers to slow readers finish, and
    // close what would otherwise hold the server open (see connections.ts).
    await connections.settle(RESPONSE_FLUSH_MS)
  })
  // After the drain: every admitted call has its answer, and bodies still waiting are answered 503.
  fastify.addHook('onClose', async () => { await offloader.close() })
}

/**
 * What is wrong with a MAX_WORKER_RSS_MB that a worker passes before its first call, or
 * undefined: every call would then replace its worker (a review saw /ready flap with 5 MB,
 * where an idle worker is 17-19 MB). Read once the first workers are ready.
 */
async function rssLimitBelowIdle (pool: WorkerPool, maxWorkerRssMb: number): Promise<string | undefined> {
  if (maxWorkerRssMb <= 0) return undefined
  await pool.sampleMemory()
  const idle = Math.max(0, ...pool.members().map((worker) => worker.rssBytes))
  if (idle < maxWorkerRssMb * 1024 * 1024) return undefined
  const idleMb = Math.ceil(idle / (1024 * 1024))
  return `MAX_WORKER_RSS_MB=${maxWorkerRssMb} is below what a worker uses before any call (${idleMb} MB with these task modules): every call would replace its worker. Set it well above that (several times, to leave room for calls), or 0 for no limit`
}

/**
 * Counts the running workers whose declared tasks differ from the table served, for
 * pyfleet_workers_unlike_task_table. Each worker's declaration is made its key (declaration-key.ts) once (a table of
 * hundreds of tasks is most of a megabyte), not on every scrape.
 */
function workersUnlikeTable (pool: WorkerPool, tasks: TaskRegistry): () => number {
  const declarations = new WeakMap<PythonWorker, string>()
  return () => {
    let unlike = 0
    for (const worker of pool.members()) {
      if (!worker.isAlive) continue
      let declaration = declarations.get(worker)
      if (declaration === undefined) {
        declaration = declarationKey(worker.tasks)
        declarations.set(worker, declaration)
      }
      if (!tasks.isServedTable(declaration)) unlike++
    }
    return unlike
  }
}

export default fp(workerPoolPlugin, { name: 'pyfleet-worker-pool', fastify: '5.x', dependencies: ['pyfleet-metrics'] })
