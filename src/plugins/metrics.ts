// Owns the one prom-client Registry of an app, decorated as `fastify.metrics`: the methods the
// rest of the app counts with, and those that tell the gauges what to read at scrape time. The families
// themselves (Node's default metrics, HTTP durations, the pool's counters) are metric-families.ts's;
// the totals /api/queue-stats reads from those counters are pool-counts.ts's.

import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import type { CounterChild, HistogramChild } from './labelled-metrics.js'
import { buildFamilies, type DeclaredTask, type Families, type ScrapeSources } from './metric-families.js'
import { poolCounts, type PoolCounts } from './pool-counts.js'
import { observeRoutes } from './route-metrics.js'
import type { ProbeRefusal } from '../probe-listener.js'
import type { Killer } from '../pool/oom-kills.js'
import { CALL_LIMITS, CALL_OUTCOMES, type StartFailureKind, type Call, type CallOutcome, type PoolObserver, type RestartReason, type WorkerPool } from '../pool/worker-pool.js'

export type { DeclaredTask } from './metric-families.js'
export type { PoolCounts } from './pool-counts.js'

/** The series one task and outcome updates; the histograms' appear with their first observation, as prom-client's did. */
interface CallSeries {
  calls: CounterChild<'task' | 'outcome'>
  duration: HistogramChild<'task' | 'outcome'> | undefined
  queueWait: HistogramChild<'task'> | undefined
}

export class Metrics implements PoolObserver {
  readonly registry = new Registry()
  readonly #sources: ScrapeSources = { pool: undefined, tasks: [], workersUnlikeTable: () => 0, connections: undefined, receiving: undefined, offloader: undefined }
  readonly #families: Families
  /** Why the last reload failed; null once one succeeds. */
  #lastReloadError: string | null = null
  readonly #unmatched: (method: string, statusCode: number, seconds: number) => void
  readonly #series = new Map<string, CallSeries>()

  constructor () {
    this.#families = buildFamilies(this.registry, this.#sources)
    this.#unmatched = this.httpObserver('unmatched')
  }

  /** Lets the gauges read the pool at scrape time. */
  watch (pool: WorkerPool): void {
    this.#sources.pool = pool
  }

  /** Lets pyfleet_workers_unlike_task_table count, at scrape time, the workers whose tasks differ from the table. */
  watchTaskTable (workersUnlikeTable: () => number): void {
    this.#sources.workersUnlikeTable = workersUnlikeTable
  }

  /** pyfleet_build_info's labels: pyfleet's version, and the Python version the workers run. */
  setBuildInfo (version: string, python: string): void {
    this.#families.buildInfo.reset()
    this.#families.buildInfo.labels(version, python).set(1)
  }

  /** Lets pyfleet_http_connections read the open connections (plugins/connections.ts) at scrape time. */
  watchConnections (connections: { readonly open: number }): void {
    this.#sources.connections = connections
  }

  /** Lets pyfleet_receiving_bytes read the bodies being received (routes/receive-limit.ts) at scrape time. */
  watchReceiving (receiving: { readonly bytes: number }): void {
    this.#sources.receiving = receiving
  }

  /** Lets pyfleet_offload_pending_jobs read the offload thread's queue (offload/offloader.ts) at scrape time. */
  watchOffloader (offloader: { readonly pendingJobs: number }): void {
    this.#sources.offloader = offloader
  }

  /** PROBE_PORT turned a request or a connection away (probe-listener.ts). */
  readonly probeRefused = (why: ProbeRefusal): void => {
    this.#families.probeRefused.labels(why).inc()
  }

  /** A conversion the offload thread has done. */
  readonly offloadJobDone = (conversion: 'input' | 'answer'): void => {
    this.#families.offloadJobs.labels(conversion).inc()
  }

  /** A reload of the task code ended: `error` says why one failed (not counted: one a shutdown cut short). */
  reloaded (outcome: 'ok' | 'failed', error?: string): void {
    this.#families.reloads.labels(outcome).inc()
    this.#families.reloadSucceeded.set(outcome === 'ok' ? 1 : 0)
    this.#lastReloadError = outcome === 'ok' ? null : error ?? 'unknown'
  }

  /** A task request refused before it became a call (pyworker_calls_total does not count those, SPEC §6). */
  readonly taskRequestRefused = (task: string, code: string): void => {
    this.#families.refused.labels(task, code).inc()
  }

  readonly receiveRefused = (): void => {
    this.#families.receiveRefused.inc()
  }

  /** Log lines the log's backlog had no room for (log-destination.ts). */
  readonly logLinesDropped = (lines: number): void => {
    this.#families.logDropped.inc(lines)
  }

  /** A connection Node closed unanswered at MAX_CONNECTIONS (plugins/connection-limit.ts). */
  readonly connectionDropped = (): void => {
    this.#families.connectionsDropped.inc()
  }

  /** The cap on open connections in effect, set once at start (plugins/connection-limit.ts). */
  setConnectionCap (maxConnections: number): void {
    this.#families.connectionsMax.set(maxConnections)
  }

  /**
   * The tasks served (at start, and after each reload): every outcome and limit series of
   * each is created at 0, so rates work from the first scrape, and the per-task gauges list them.
   */
  declareTasks (tasks: readonly DeclaredTask[]): void {
    this.#sources.tasks = tasks.map(({ name, maxConcurrency }) => ({ name, maxConcurrency }))
    for (const { name } of tasks) {
      for (const outcome of CALL_OUTCOMES) this.#seriesFor(name, outcome)
      for (const limit of CALL_LIMITS) this.#families.limited.labels(name, limit).inc(0)
    }
  }

  #seriesFor (task: string, outcome: CallOutcome): CallSeries {
    const key = `${task}\n${outcome}`
    let series = this.#series.get(key)
    if (series === undefined) {
      series = { calls: this.#families.calls.labels(task, outcome), duration: undefined, queueWait: undefined }
      this.#series.set(key, series)
    }
    return series
  }

  readonly callEnded = (call: Call, outcome: CallOutcome): void => {
    const series = this.#seriesFor(call.task.name, outcome)
    series.calls.inc()
    if (call.limit !== undefined) this.#families.limited.labels(call.task.name, call.limit).inc()
    ;(series.queueWait ??= this.#families.queueWait.labels(call.task.name)).observe(call.queueMs / 1000)
    if (call.runMs > 0) (series.duration ??= this.#families.callDuration.labels(call.task.name, outcome)).observe(call.runMs / 1000)
  }

  /** Counted, but it never waited: no queue-wait sample (a 0 would pull the quantiles down in an outage). */
  readonly callRefused = (call: Call, outcome: CallOutcome): void => {
    this.#seriesFor(call.task.name, outcome).calls.inc()
    if (call.limit !== undefined) this.#families.limited.labels(call.task.name, call.limit).inc()
  }

  readonly workerRestarted = (reason: RestartReason): void => {
    this.#families.restarts.labels(reason).inc()
  }

  /** A worker killed by a SIGKILL pyfleet did not send (worker-process.ts says by whom). */
  readonly workerKilled = (by: Killer): void => {
    this.#families.killed.labels(by).inc()
  }

  readonly workerStartFailed = (kind: StartFailureKind): void => {
    this.#families.startFailures.labels(kind).inc()
  }

  /** Worker stderr lines dropped past a worker's log budget. */
  readonly stderrLinesDropped = (lines: number): void => {
    this.#families.stderrDropped.inc(lines)
  }

  /** A request no route matched; `method` already bounded. */
  observeUnmatched (method: string, statusCode: number, seconds: number): void {
    this.#unmatched(method, statusCode, seconds)
  }

  /** Bytes Node could not parse as a request (or did not receive in time): no method, no duration. */
  observeUnparsed (statusCode: number): void {
    this.#unmatched('other', statusCode, 0)
  }

  /**
   * An observer for one route template: the labelled series are looked up once
   * per status code, not hashed from a label object on every request. `expected`:
   * the status codes of one method whose series exist from now on, at 0; any other
   * appears with its first sample, so rate() and increase() miss that first burst.
   */
  httpObserver (route: string, expected?: { method: string, statuses: readonly number[] }): (method: string, statusCode: number, seconds: number) => void {
    const series = new Map<string, HistogramChild<'method' | 'route' | 'status_code'>>()
    if (expected !== undefined) {
      const { method, statuses } = expected
      for (const status of statuses) series.set(method + status, this.#families.httpDuration.labels(method, route, String(status)))
    }
    return (method, statusCode, seconds) => {
      const key = method + statusCode
      let child = series.get(key)
      if (child === undefined) series.set(key, child = this.#families.httpDuration.labels(method, route, String(statusCode)))
      child.observe(seconds)
    }
  }

  /** Totals by outcome and by restart reason, read from the counters themselves. */
  async counts (): Promise<PoolCounts> {
    return await poolCounts(this.#families, this.#lastReloadError)
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

async function metricsPlugin (fastify: FastifyInstance): Promise<void> {
  const metrics = new Metrics()
  fastify.decorate('metrics', metrics)
  observeRoutes(fastify, metrics)
}

export default fp(metricsPlugin, { name: 'pyfleet-metrics', fastify: '5.x' })
