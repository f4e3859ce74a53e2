// Owns the one prom-client Registry of an app: Node's default metrics, HTTP
// durations, and the pool's counters, which are also the source of truth for
// /api/queue-stats (no second set of counters that could drift).

import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { LabelledCounter, LabelledHistogram, type CounterChild, type HistogramChild } from './labelled-metrics.js'
import { observeRoutes } from './route-metrics.js'
import { PROBE_REFUSALS, type ProbeRefusal } from '../probe-listener.js'
import { KILLERS, type Killer } from '../pool/oom-kills.js'
import { CALL_LIMITS, CALL_OUTCOMES, RESTART_REASONS, START_FAILURE_KINDS, type StartFailureKind, type Call, type CallOutcome, type PoolObserver, type RestartReason, type WorkerPool } from '../pool/worker-pool.js'

/** prom-client's gauges whose names end in _total, which promtool rejects; the same numbers exist without the suffix. */
const GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

// From sub-millisecond echo calls up to long tasks. The top buckets cover the
// defaults' longest request (30 s queued + 30 s running, plus the body) with room
// for raised timeouts: up to 30 minutes, past which every quantile would read as the
// top bucket (timeouts may be set far higher; such calls land in +Inf).
const CALL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
const WORKER_STATES = ['idle', 'busy', 'starting'] as const
/** The series one task and outcome updates; the histograms' appear with their first observation, as prom-client's did. */
interface CallSeries {
  calls: CounterChild<'task' | 'outcome'>
  duration: HistogramChild<'task' | 'outcome'> | undefined
  queueWait: HistogramChild<'task'> | undefined
}

export interface PoolCounts {
  calls: Record<CallOutcome, number>
  restarts: Record<RestartReason, number>
  /** Requests refused with 503 RECEIVE_FULL (not calls: their bodies were not read whole). */
  receiveRefused: number
  /** Reloads of the task code by outcome, and why the last one failed (null: it did not, or none ran). */
  reloads: { ok: number, failed: number, lastError: string | null }
}

/** A task as the per-task gauges need it. */
export interface DeclaredTask {
  readonly name: string
  /** The most of its calls that run at once (TASK_CONCURRENCY, its own max_concurrency, or POOL_SIZE). */
  readonly maxConcurrency: number
}

export class Metrics implements PoolObserver {
  readonly registry = new Registry()
  // The four metrics updated on every request are labelled-metrics.ts's, not prom-client's: see there why.
  readonly #httpDuration: LabelledHistogram<'method' | 'route' | 'status_code'>
  readonly #calls: LabelledCounter<'task' | 'outcome'>
  readonly #callDuration: LabelledHistogram<'task' | 'outcome'>
  readonly #queueWait: LabelledHistogram<'task'>
  readonly #restarts: Counter<'reason'>
  readonly #limited: Counter<'task' | 'limit'>
  readonly #startFailures: Counter<'kind'>
  readonly #receiveRefused: Counter
  readonly #refused: Counter<'task' | 'code'>
  readonly #killed: Counter
  readonly #stderrDropped: Counter
  readonly #connectionsDropped: Counter
  readonly #logDropped: Counter
  readonly #connectionsMax: Gauge
  readonly #probeRefused: Counter<'reason'>
  readonly #offloadJobs: Counter<'conversion'>
  readonly #reloads: Counter<'outcome'>
  readonly #reloadSucceeded: Gauge
  /** Why the last reload failed; null once one succeeds. */
  #lastReloadError: string | null = null
  #offloader: { readonly pendingJobs: number } | undefined
  /** The tasks served, with how many of each may run at once (declareTasks). */
  #tasks: readonly DeclaredTask[] = []
  /** How many running workers declare other tasks than the table served (the worker-pool plugin knows both). */
  #workersUnlikeTable: () => number = () => 0
  readonly #buildInfo: Gauge<'version' | 'python'>
  readonly #unmatched: (method: string, statusCode: number, seconds: number) => void
  readonly #series = new Map<string, CallSeries>()
  #pool: WorkerPool | undefined
  #receiving: { readonly bytes: number } | undefined
  #connections: { readonly open: number } | undefined

  constructor () {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    for (const name of GAUGES_NAMED_LIKE_COUNTERS) this.registry.removeSingleMetric(name)
    this.#httpDuration = new LabelledHistogram({ name: 'http_request_duration_seconds', help: 'HTTP request duration by route template and status', labelNames: ['method', 'route', 'status_code'], buckets: HTTP_BUCKETS, registers })
    this.#calls = new LabelledCounter({ name: 'pyworker_calls_total', help: 'Calls that passed validation, by task and how they ended', labelNames: ['task', 'outcome'], registers })
    this.#callDuration = new LabelledHistogram({ name: 'pyworker_call_duration_seconds', help: 'Time from a call\'s start on a worker to its answer (a client\'s x-request-timeout-ms budget answers 504 before the worker is done)', labelNames: ['task', 'outcome'], buckets: CALL_BUCKETS, registers })
    this.#queueWait = new LabelledHistogram({ name: 'pyworker_queue_wait_seconds', help: 'Time a call waited for a worker', labelNames: ['task'], buckets: CALL_BUCKETS, registers })
    this.#limited = new Counter({
      name: 'pyfleet_calls_limited_total',
      help: 'Calls ended by a limit, not by their task or worker, by task and limit: the server\'s (queue_limit, queue_limit_bytes: 503 QUEUE_FULL; queue_timeout_ms: 503 QUEUE_TIMEOUT; task_timeout: 504 TASK_TIMEOUT, worker replaced) or the client\'s x-request-timeout-ms budget (client_budget_queued and shed_late_calls: 503 QUEUE_TIMEOUT; client_budget_running: 504 TIMEOUT, the task ran on). Each is also in pyworker_calls_total',
      labelNames: ['task', 'limit'],
      registers
    })
    this.#restarts = new Counter({ name: 'pyworker_worker_restarts_total', help: 'Workers replaced, by reason', labelNames: ['reason'], registers })
    for (const reason of RESTART_REASONS) this.#restarts.labels(reason).inc(0)
    this.#unmatched = this.httpObserver('unmatched')
    this.#startFailures = new Counter({ name: 'pyworker_worker_start_failures_total', help: 'Worker starts that failed: kind="replacement" (a slot left empty, retried with backoff), "spare" (for recycling: MAX_CALLS_PER_WORKER, MAX_WORKER_RSS_MB) or "reload" (a reload\'s spare); the old worker serves on past a spare\'s failure', labelNames: ['kind'], registers })
    for (const kind of START_FAILURE_KINDS) this.#startFailures.labels(kind).inc(0)
    const metrics = this
    new Gauge({
      name: 'pyworker_pool_workers',
      help: 'Workers by state',
      labelNames: ['state'],
      registers,
      collect () {
        const counts = { idle: 0, busy: 0, starting: 0 }
        for (const w of metrics.#pool?.snapshot().workers ?? []) {
          if (w.state === 'idle' || w.state === 'busy' || w.state === 'starting') counts[w.state]++
        }
        for (const state of WORKER_STATES) this.labels(state).set(counts[state])
      }
    })
    new Gauge({
      name: 'pyworker_queue_waiting',
      help: 'Callers waiting for a worker (not running calls)',
      registers,
      collect () { this.set(metrics.#pool?.waiting ?? 0) }
    })
    new Gauge({
      name: 'pyfleet_queue_bytes',
      help: 'Request-body bytes the waiting calls hold (QUEUE_LIMIT_BYTES bounds it)',
      registers,
      collect () { this.set(metrics.#pool?.queuedBytes ?? 0) }
    })
    this.#killed = new Counter({
      name: 'pyfleet_worker_killed_total',
      help: 'Workers killed by a SIGKILL pyfleet did not send, by who most likely sent it: oom_killer (the kernel\'s count of OOM kills in /proc/vmstat went up while the worker lived), someone (it did not: a kill -9), unknown (/proc/vmstat unreadable). Each is a crash in pyworker_worker_restarts_total too',
      labelNames: ['by'],
      registers
    })
    for (const by of KILLERS) this.#killed.labels(by).inc(0)
    this.#stderrDropped = new Counter({ name: 'pyfleet_worker_stderr_dropped_lines_total', help: 'Worker stderr lines not logged: a worker wrote faster than its log budget (5,000 lines or KiB a second)', registers })
    this.#logDropped = new Counter({ name: 'pyfleet_log_dropped_lines_total', help: 'Log lines not written: stdout was not read, and the lines waiting for it reached 16 MiB', registers })
    this.#connectionsDropped = new Counter({ name: 'pyfleet_http_connections_dropped_total', help: 'Client connections Node closed as it accepted them, unanswered: pyfleet_http_connections_max connections were open already', registers })
    new Gauge({
      name: 'pyfleet_http_connections',
      help: 'Client connections open now, idle keep-alive ones included (pyfleet_http_connections_max is the cap)',
      registers,
      collect () { this.set(metrics.#connections?.open ?? 0) }
    })
    this.#probeRefused = new Counter({ name: 'pyfleet_probe_port_refused_total', help: 'What PROBE_PORT turned away, by reason: "not_served" (a request for anything but /health, /ready, /metrics, /api/queue-stats: 404), "at_cap" (a connection closed unanswered, its 64 places taken), "silent" (a connection that sent nothing within 5 s, closed), "stalled" (a connection whose answer did not move for 10 s: a client not reading, closed). Stays 0 without PROBE_PORT', labelNames: ['reason'], registers })
    for (const reason of PROBE_REFUSALS) this.#probeRefused.labels(reason).inc(0)
    this.#connectionsMax = new Gauge({ name: 'pyfleet_http_connections_max', help: 'The cap on open client connections: MAX_CONNECTIONS, or less where the open-file limit leaves less room (0: no cap)', registers })
    this.#refused = new Counter({ name: 'pyfleet_task_requests_refused_total', help: 'Requests to POST /api/tasks/<name> answered 4xx before they became a call (a body that does not parse or fails the input schema, a task not served, a content type it does not take), by task ("unknown": not served) and error code', labelNames: ['task', 'code'], registers })
    this.#receiveRefused = new Counter({ name: 'pyfleet_receive_refused_total', help: 'Requests refused with 503 RECEIVE_FULL: their body would have taken the bytes being received past RECEIVE_LIMIT_BYTES', registers })
    new Gauge({
      name: 'pyfleet_receiving_bytes',
      help: 'Request-body bytes being received (the bytes so far of bodies over 16 KiB and chunked ones) or, arrived, waiting for the offload thread (RECEIVE_LIMIT_BYTES bounds it)',
      registers,
      collect () { this.set(metrics.#receiving?.bytes ?? 0) }
    })
    this.#offloadJobs = new Counter({ name: 'pyfleet_offload_jobs_total', help: 'Conversions done on the offload thread, off the event loop: conversion="input" (a request body of at least OFFLOAD_MIN_BYTES parsed, checked and encoded), "answer" (a reply frame that large, or holding OFFLOAD_MIN_BYTES / 8 maps, arrays and bins, decoded and written)', labelNames: ['conversion'], registers })
    for (const conversion of ['input', 'answer']) this.#offloadJobs.labels(conversion).inc(0)
    this.#reloads = new Counter({ name: 'pyfleet_reloads_total', help: 'Reloads of the task code (SIGHUP, POST /admin/reload, RELOAD_ON_CHANGE) by outcome: "ok", or "failed" (the workers not replaced serve the previous code; the log says why)', labelNames: ['outcome'], registers })
    for (const outcome of ['ok', 'failed']) this.#reloads.labels(outcome).inc(0)
    // As Prometheus' own prometheus_config_last_reload_successful: one gauge to alert on.
    this.#reloadSucceeded = new Gauge({ name: 'pyfleet_reload_last_successful', help: '0 while the last reload of the task code has failed (some or all workers serve the previous code), else 1', registers })
    this.#reloadSucceeded.set(1)
    // Per task: a call held back by its task's TASK_CONCURRENCY waits while workers sit idle, which
    // pyworker_queue_waiting and pyworker_pool_workers alone show as a pool short of workers.
    new Gauge({
      name: 'pyfleet_task_calls',
      help: 'Calls of each task waiting for a worker (state="waiting") or running on one (state="running", answered 504 by a client\'s budget included: they hold their worker until the task ends); a task at its pyfleet_task_concurrency waits whatever the pool has free',
      labelNames: ['task', 'state'],
      registers,
      collect () {
        this.reset()
        // The tasks served, and any a reload removed while calls of theirs still run.
        const names = new Set(metrics.#tasks.map(({ name }) => name))
        for (const name of metrics.#pool?.tasksWithCalls() ?? []) names.add(name)
        for (const name of names) {
          const calls = metrics.#pool?.callsOf(name) ?? { waiting: 0, running: 0 }
          this.labels(name, 'waiting').set(calls.waiting)
          this.labels(name, 'running').set(calls.running)
        }
      }
    })
    new Gauge({
      name: 'pyfleet_task_concurrency',
      help: 'The most calls of each task that run at once: its TASK_CONCURRENCY, else its own max_concurrency, else POOL_SIZE',
      labelNames: ['task'],
      registers,
      collect () {
        this.reset()
        for (const { name, maxConcurrency } of metrics.#tasks) this.labels(name).set(maxConcurrency)
      }
    })
    new Gauge({
      name: 'pyfleet_workers_unlike_task_table',
      help: 'Running workers that declare other tasks than the table served: task code changed on disk under a running server (a replacement or a recycled worker loaded it), or a reload failed part way. Calls are validated against the table; reload or restart to serve one code again',
      registers,
      collect () { this.set(metrics.#workersUnlikeTable()) }
    })
    this.#buildInfo = new Gauge({ name: 'pyfleet_build_info', help: 'Always 1: pyfleet\'s version and the workers\' Python version as labels (which code a replica runs; join on instance)', labelNames: ['version', 'python'], registers })
    new Gauge({
      name: 'pyfleet_offload_pending_jobs',
      help: 'Conversions waiting for the offload thread or running on it (it does one at a time)',
      registers,
      collect () { this.set(metrics.#offloader?.pendingJobs ?? 0) }
    })
    new Gauge({
      name: 'pyworker_worker_rss_bytes',
      help: 'Resident memory of each worker, by slot',
      labelNames: ['worker'],
      registers,
      async collect () {
        await metrics.#pool?.sampleMemory()
        const workers = metrics.#pool?.members() ?? []
        this.reset()
        for (const w of workers) this.labels(String(w.id)).set(w.rssBytes)
      }
    })
  }

  /** Lets the gauges read the pool at scrape time. */
  watch (pool: WorkerPool): void {
    this.#pool = pool
  }

  /** Lets pyfleet_workers_unlike_task_table count, at scrape time, the workers whose tasks differ from the table. */
  watchTaskTable (workersUnlikeTable: () => number): void {
    this.#workersUnlikeTable = workersUnlikeTable
  }

  /** pyfleet_build_info's labels: pyfleet's version, and the Python version the workers run. */
  setBuildInfo (version: string, python: string): void {
    this.#buildInfo.reset()
    this.#buildInfo.labels(version, python).set(1)
  }

  /** Lets pyfleet_http_connections read the open connections (plugins/connections.ts) at scrape time. */
  watchConnections (connections: { readonly open: number }): void {
    this.#connections = connections
  }

  /** Lets pyfleet_receiving_bytes read the bodies being received (routes/receive-limit.ts) at scrape time. */
  watchReceiving (receiving: { readonly bytes: number }): void {
    this.#receiving = receiving
  }

  /** Lets pyfleet_offload_pending_jobs read the offload thread's queue (offload/offloader.ts) at scrape time. */
  watchOffloader (offloader: { readonly pendingJobs: number }): void {
    this.#offloader = offloader
  }

  /** PROBE_PORT turned a request or a connection away (probe-listener.ts). */
  readonly probeRefused = (why: ProbeRefusal): void => {
    this.#probeRefused.labels(why).inc()
  }

  /** A conversion the offload thread has done. */
  readonly offloadJobDone = (conversion: 'input' | 'answer'): void => {
    this.#offloadJobs.labels(conversion).inc()
  }

  /** A reload of the task code ended: `error` says why one failed (not counted: one a shutdown cut short). */
  reloaded (outcome: 'ok' | 'failed', error?: string): void {
    this.#reloads.labels(outcome).inc()
    this.#reloadSucceeded.set(outcome === 'ok' ? 1 : 0)
    this.#lastReloadError = outcome === 'ok' ? null : error ?? 'unknown'
  }

  /** A task request refused before it became a call (pyworker_calls_total does not count those, SPEC §6). */
  readonly taskRequestRefused = (task: string, code: string): void => {
    this.#refused.labels(task, code).inc()
  }

  readonly receiveRefused = (): void => {
    this.#receiveRefused.inc()
  }

  /** Log lines the log's backlog had no room for (log-destination.ts). */
  readonly logLinesDropped = (lines: number): void => {
    this.#logDropped.inc(lines)
  }

  /** A connection Node closed unanswered at MAX_CONNECTIONS (plugins/connection-limit.ts). */
  readonly connectionDropped = (): void => {
    this.#connectionsDropped.inc()
  }

  /** The cap on open connections in effect, set once at start (plugins/connection-limit.ts). */
  setConnectionCap (maxConnections: number): void {
    this.#connectionsMax.set(maxConnections)
  }

  /**
   * The tasks served (at start, and after each reload): every outcome and limit series of
   * each is created at 0, so rates work from the first scrape, and the per-task gauges list them.
   */
  declareTasks (tasks: readonly DeclaredTask[]): void {
    this.#tasks = tasks.map(({ name, maxConcurrency }) => ({ name, maxConcurrency }))
    for (const { name } of tasks) {
      for (const outcome of CALL_OUTCOMES) this.#seriesFor(name, outcome)
      for (const limit of CALL_LIMITS) this.#limited.labels(name, limit).inc(0)
    }
  }

  #seriesFor (task: string, outcome: CallOutcome): CallSeries {
    const key = `${task}\n${outcome}`
    let series = this.#series.get(key)
    if (series === undefined) {
      series = { calls: this.#calls.labels(task, outcome), duration: undefined, queueWait: undefined }
      this.#series.set(key, series)
    }
    return series
  }

  readonly callEnded = (call: Call, outcome: CallOutcome): void => {
    const series = this.#seriesFor(call.task.name, outcome)
    series.calls.inc()
    if (call.limit !== undefined) this.#limited.labels(call.task.name, call.limit).inc()
    ;(series.queueWait ??= this.#queueWait.labels(call.task.name)).observe(call.queueMs / 1000)
    if (call.runMs > 0) (series.duration ??= this.#callDuration.labels(call.task.name, outcome)).observe(call.runMs / 1000)
  }

  /** Counted, but it never waited: no queue-wait sample (a 0 would pull the quantiles down in an outage). */
  readonly callRefused = (call: Call, outcome: CallOutcome): void => {
    this.#seriesFor(call.task.name, outcome).calls.inc()
    if (call.limit !== undefined) this.#limited.labels(call.task.name, call.limit).inc()
  }

  readonly workerRestarted = (reason: RestartReason): void => {
    this.#restarts.labels(reason).inc()
  }

  /** A worker killed by a SIGKILL pyfleet did not send (worker-process.ts says by whom). */
  readonly workerKilled = (by: Killer): void => {
    this.#killed.labels(by).inc()
  }

  readonly workerStartFailed = (kind: StartFailureKind): void => {
    this.#startFailures.labels(kind).inc()
  }

  /** Worker stderr lines dropped past a worker's log budget. */
  readonly stderrLinesDropped = (lines: number): void => {
    this.#stderrDropped.inc(lines)
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
      for (const status of statuses) series.set(method + status, this.#httpDuration.labels(method, route, String(status)))
    }
    return (method, statusCode, seconds) => {
      const key = method + statusCode
      let child = series.get(key)
      if (child === undefined) series.set(key, child = this.#httpDuration.labels(method, route, String(statusCode)))
      child.observe(seconds)
    }
  }

  /** Totals by outcome and by restart reason, read from the counters themselves. */
  async counts (): Promise<PoolCounts> {
    const calls = Object.fromEntries(CALL_OUTCOMES.map((o) => [o, 0])) as Record<CallOutcome, number>
    for (const { labels, value } of this.#calls.children) calls[labels.outcome as CallOutcome] += value
    const restarts = Object.fromEntries(RESTART_REASONS.map((r) => [r, 0])) as Record<RestartReason, number>
    for (const { labels, value } of (await this.#restarts.get()).values) restarts[labels.reason as RestartReason] += value
    const receiveRefused = (await this.#receiveRefused.get()).values[0]?.value ?? 0
    const reloads = { ok: 0, failed: 0, lastError: this.#lastReloadError }
    for (const { labels, value } of (await this.#reloads.get()).values) reloads[labels.outcome as 'ok' | 'failed'] += value
    return { calls, restarts, receiveRefused, reloads }
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
