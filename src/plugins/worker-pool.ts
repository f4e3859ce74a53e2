// Starts the pool of Python workers before the app listens, decorates the app
// with it and the task registry, and drains it when the app closes.

import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { resolvePython } from '../python-path.js'
import { TaskRegistry } from '../task-registry.js'
import { PythonWorker } from '../pool/python-worker.js'
import { WorkerPool } from '../pool/worker-pool.js'
import { Offloader } from '../offload/offloader.js'
import { trackConnections } from './connections.js'
import { version } from '../version.js'
import { groupKillNote, readCgroupLimits, sizingProblems } from '../cgroup-limits.js'
import { PROJECT_ROOT } from '../project-paths.js'
import { workerCommand } from '../worker-command.js'
import { rssLimitBelowIdle, withPassedOver } from '../start-problems.js'
import { DriftWarning, workersUnlikeTable } from '../task-drift.js'

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

async function workerPoolPlugin (fastify: FastifyInstance, { config, startSignal, strict = false, offloadScript }: WorkerPoolPluginOptions): Promise<void> {
  const python = await resolvePython(config.python, PROJECT_ROOT, startSignal)
  const { args, env } = workerCommand(config, { strict })
  const log = fastify.log.child({ component: 'pool' })
  let pool: WorkerPool | undefined
  const tasks = new TaskRegistry(config)
  const drift = new DriftWarning(tasks, log)
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
    // The first workers make the table, and a reload changes it: other workers should match it.
    if (pool !== undefined && !pool.isReloading) drift.check(worker)
    return worker
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

export default fp(workerPoolPlugin, { name: 'pyfleet-worker-pool', fastify: '5.x', dependencies: ['pyfleet-metrics'] })
