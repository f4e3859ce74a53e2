// Every metric family of an app's Registry, built on the Registry given, in the order the
// exposition lists them: names, help, labels, buckets, the series that exist from the start,
// and what each point-in-time gauge reads at scrape time. Updating them is metrics.ts's job.

import { Counter, Gauge, type Registry, collectDefaultMetrics } from 'prom-client'
import { LabelledCounter, LabelledHistogram } from './labelled-metrics.js'
import { PROBE_REFUSALS } from '../probe-listener.js'
import { KILLERS } from '../pool/oom-kills.js'
import { RESTART_REASONS, START_FAILURE_KINDS, type WorkerPool } from '../pool/worker-pool.js'

/** prom-client's gauges whose names end in _total, which promtool rejects; the same numbers exist without the suffix. */
const GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

// From sub-millisecond echo calls up to long tasks. The top buckets cover the
// defaults' longest request (30 s queued + 30 s running, plus the body) with room
// for raised timeouts: up to 30 minutes, past which every quantile would read as the
// top bucket (timeouts may be set far higher; such calls land in +Inf).
const CALL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
const WORKER_STATES = ['idle', 'busy', 'starting'] as const

/** A task as the per-task gauges need it. */
export interface DeclaredTask {
  readonly name: string
  /** The most of its calls that run at once (TASK_CONCURRENCY, its own max_concurrency, or POOL_SIZE). */
  readonly maxConcurrency: number
}

/** What the point-in-time gauges read at scrape time, filled in by the Metrics class as the rest of the app starts. */
export interface ScrapeSources {
  pool: WorkerPool | undefined
  /** The tasks served, with how many of each may run at once (declareTasks). */
  tasks: readonly DeclaredTask[]
  /** How many running workers declare other tasks than the table served (the worker-pool plugin knows both). */
  workersUnlikeTable: () => number
  connections: { readonly open: number } | undefined
  receiving: { readonly bytes: number } | undefined
  offloader: { readonly pendingJobs: number } | undefined
}

/** The families that are updated as things happen (the point-in-time gauges are set at scrape time, and have no handle). */
export interface Families {
  // The four metrics updated on every request are labelled-metrics.ts's, not prom-client's: see there why.
  readonly httpDuration: LabelledHistogram<'method' | 'route' | 'status_code'>
  readonly calls: LabelledCounter<'task' | 'outcome'>
  readonly callDuration: LabelledHistogram<'task' | 'outcome'>
  readonly queueWait: LabelledHistogram<'task'>
  readonly restarts: Counter<'reason'>
  readonly limited: Counter<'task' | 'limit'>
  readonly startFailures: Counter<'kind'>
  readonly receiveRefused: Counter
  readonly refused: Counter<'task' | 'code'>
  readonly killed: Counter
  readonly stderrDropped: Counter
  readonly connectionsDropped: Counter
  readonly logDropped: Counter
  readonly connectionsMax: Gauge
  readonly probeRefused: Counter<'reason'>
  readonly offloadJobs: Counter<'conversion'>
  readonly reloads: Counter<'outcome'>
  readonly reloadSucceeded: Gauge
  readonly buildInfo: Gauge<'version' | 'python'>
}

/** Registers Node's default metrics and every pyfleet family on `registry`, in exposition order. */
export function buildFamilies (registry: Registry, sources: ScrapeSources): Families {
  const registers = [registry]
  collectDefaultMetrics({ register: registry })
  for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(name)
  const httpDuration = new LabelledHistogram({ name: 'http_request_duration_seconds', help: 'HTTP request duration by route template and status', labelNames: ['method', 'route', 'status_code'], buckets: HTTP_BUCKETS, registers })
  const calls = new LabelledCounter({ name: 'pyworker_calls_total', help: 'Calls that passed validation, by task and how they ended', labelNames: ['task', 'outcome'], registers })
  const callDuration = new LabelledHistogram({ name: 'pyworker_call_duration_seconds', help: 'Time from a call\'s start on a worker to its answer (a client\'s x-request-timeout-ms budget answers 504 before the worker is done)', labelNames: ['task', 'outcome'], buckets: CALL_BUCKETS, registers })
  const queueWait = new LabelledHistogram({ name: 'pyworker_queue_wait_seconds', help: 'Time a call waited for a worker', labelNames: ['task'], buckets: CALL_BUCKETS, registers })
  const limited = new Counter({
    name: 'pyfleet_calls_limited_total',
    help: 'Calls ended by a limit, not by their task or worker, by task and limit: the server\'s (queue_limit, queue_limit_bytes: 503 QUEUE_FULL; queue_timeout_ms: 503 QUEUE_TIMEOUT; task_timeout: 504 TASK_TIMEOUT, worker replaced) or the client\'s x-request-timeout-ms budget (client_budget_queued and shed_late_calls: 503 QUEUE_TIMEOUT; client_budget_running: 504 TASK_TIMEOUT, the task ran on). Each is also in pyworker_calls_total',
    labelNames: ['task', 'limit'],
    registers
  })
  const restarts = new Counter({ name: 'pyworker_worker_restarts_total', help: 'Workers replaced, by reason', labelNames: ['reason'], registers })
  for (const reason of RESTART_REASONS) restarts.labels(reason).inc(0)
  const startFailures = new Counter({ name: 'pyworker_worker_start_failures_total', help: 'Worker starts that failed: kind="replacement" (a slot left empty, retried with backoff), "spare" (for recycling: MAX_CALLS_PER_WORKER, MAX_WORKER_RSS_MB) or "reload" (a reload\'s spare); the old worker serves on past a spare\'s failure', labelNames: ['kind'], registers })
  for (const kind of START_FAILURE_KINDS) startFailures.labels(kind).inc(0)
  new Gauge({
    name: 'pyworker_pool_workers',
    help: 'Workers by state',
    labelNames: ['state'],
    registers,
    collect () {
      const counts = { idle: 0, busy: 0, starting: 0 }
      for (const w of sources.pool?.snapshot().workers ?? []) {
        if (w.state === 'idle' || w.state === 'busy' || w.state === 'starting') counts[w.state]++
      }
      for (const state of WORKER_STATES) this.labels(state).set(counts[state])
    }
  })
  new Gauge({
    name: 'pyworker_queue_waiting',
    help: 'Callers waiting for a worker (not running calls)',
    registers,
    collect () { this.set(sources.pool?.waiting ?? 0) }
  })
  new Gauge({
    name: 'pyfleet_queue_bytes',
    help: 'Request-body bytes the waiting calls hold (QUEUE_LIMIT_BYTES bounds it)',
    registers,
    collect () { this.set(sources.pool?.queuedBytes ?? 0) }
  })
  const killed = new Counter({
    name: 'pyfleet_worker_killed_total',
    help: 'Workers killed by a SIGKILL pyfleet did not send, by who most likely sent it: oom_killer (the kernel\'s count of OOM kills in /proc/vmstat went up while the worker lived), someone (it did not: a kill -9), unknown (/proc/vmstat unreadable). A ready worker\'s is a crash in pyworker_worker_restarts_total too, but for one the shutdown was stopping (no restart then); one killed while it started is a failed start (pyworker_worker_start_failures_total), retried with backoff',
    labelNames: ['by'],
    registers
  })
  for (const by of KILLERS) killed.labels(by).inc(0)
  const stderrDropped = new Counter({ name: 'pyfleet_worker_stderr_dropped_lines_total', help: 'Worker stderr lines not logged: a worker wrote faster than its log budget (5,000 lines or KiB a second)', registers })
  const logDropped = new Counter({ name: 'pyfleet_log_dropped_lines_total', help: 'Log lines not written: stdout was not read, and the lines waiting for it reached 16 MiB', registers })
  const connectionsDropped = new Counter({ name: 'pyfleet_http_connections_dropped_total', help: 'Client connections Node closed as it accepted them, unanswered: pyfleet_http_connections_max connections were open already', registers })
  new Gauge({
    name: 'pyfleet_http_connections',
    help: 'Client connections open now, idle keep-alive ones included (pyfleet_http_connections_max is the cap)',
    registers,
    collect () { this.set(sources.connections?.open ?? 0) }
  })
  const probeRefused = new Counter({ name: 'pyfleet_probe_port_refused_total', help: 'What PROBE_PORT turned away, by reason: "not_served" (a request for anything but /health, /ready, /metrics, /api/queue-stats: 404; or another method than GET or HEAD on them: 405), "at_cap" (a connection closed unanswered, its 64 places taken), "silent" (a connection that sent nothing within 5 s, closed), "stalled" (a connection whose answer did not move for 10 s: a client not reading, closed). Stays 0 without PROBE_PORT', labelNames: ['reason'], registers })
  for (const reason of PROBE_REFUSALS) probeRefused.labels(reason).inc(0)
  const connectionsMax = new Gauge({ name: 'pyfleet_http_connections_max', help: 'The cap on open client connections: MAX_CONNECTIONS, or less where the open-file limit leaves less room (0: no cap)', registers })
  const refused = new Counter({ name: 'pyfleet_task_requests_refused_total', help: 'Requests to POST /api/tasks/<name> answered 4xx before they became a call (a body that does not parse or fails the input schema, a task not served, a content type it does not take), by task ("unknown": not served) and error code', labelNames: ['task', 'code'], registers })
  const receiveRefused = new Counter({ name: 'pyfleet_receive_refused_total', help: 'Requests refused with 503 RECEIVE_FULL: their body would have taken the bytes being received past RECEIVE_LIMIT_BYTES', registers })
  new Gauge({
    name: 'pyfleet_receiving_bytes',
    help: 'Request-body bytes being received (the bytes so far of bodies over 16 KiB and chunked ones) or, arrived, waiting for the offload thread or being parsed on it (RECEIVE_LIMIT_BYTES bounds it)',
    registers,
    collect () { this.set(sources.receiving?.bytes ?? 0) }
  })
  const offloadJobs = new Counter({ name: 'pyfleet_offload_jobs_total', help: 'Conversions done on the offload thread, off the event loop: conversion="input" (a request body of at least OFFLOAD_MIN_BYTES parsed, checked and encoded), "answer" (a reply frame that large, or holding OFFLOAD_MIN_BYTES / 8 maps, arrays and bins, decoded and written)', labelNames: ['conversion'], registers })
  for (const conversion of ['input', 'answer']) offloadJobs.labels(conversion).inc(0)
  const reloads = new Counter({ name: 'pyfleet_reloads_total', help: 'Reloads of the task code (SIGHUP, POST /admin/reload, RELOAD_ON_CHANGE) by outcome: "ok", or "failed" (the workers not replaced serve the previous code; the log says why)', labelNames: ['outcome'], registers })
  for (const outcome of ['ok', 'failed']) reloads.labels(outcome).inc(0)
  // As Prometheus' own prometheus_config_last_reload_successful: one gauge to alert on.
  const reloadSucceeded = new Gauge({ name: 'pyfleet_reload_last_successful', help: '0 while the last reload of the task code has failed (some or all workers serve the previous code), else 1', registers })
  reloadSucceeded.set(1)
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
      const names = new Set(sources.tasks.map(({ name }) => name))
      for (const name of sources.pool?.tasksWithCalls() ?? []) names.add(name)
      for (const name of names) {
        const calls = sources.pool?.callsOf(name) ?? { waiting: 0, running: 0 }
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
      for (const { name, maxConcurrency } of sources.tasks) this.labels(name).set(maxConcurrency)
    }
  })
  new Gauge({
    name: 'pyfleet_workers_unlike_task_table',
    help: 'Running workers that declare other tasks than the table served: task code changed on disk under a running server (a replacement or a recycled worker loaded it), or a reload failed part way. Calls are validated against the table; reload or restart to serve one code again',
    registers,
    collect () { this.set(sources.workersUnlikeTable()) }
  })
  const buildInfo = new Gauge({ name: 'pyfleet_build_info', help: 'Always 1: pyfleet\'s version and the workers\' Python version as labels (which code a replica runs; join on instance)', labelNames: ['version', 'python'], registers })
  new Gauge({
    name: 'pyfleet_offload_pending_jobs',
    help: 'Conversions waiting for the offload thread or running on it (it does one at a time)',
    registers,
    collect () { this.set(sources.offloader?.pendingJobs ?? 0) }
  })
  new Gauge({
    name: 'pyworker_worker_rss_bytes',
    help: 'Resident memory of each worker, by slot',
    labelNames: ['worker'],
    registers,
    async collect () {
      await sources.pool?.sampleMemory()
      const workers = sources.pool?.members() ?? []
      this.reset()
      for (const w of workers) this.labels(String(w.id)).set(w.rssBytes)
    }
  })
  return { httpDuration, calls, callDuration, queueWait, restarts, limited, startFailures, receiveRefused, refused, killed, stderrDropped, connectionsDropped, logDropped, connectionsMax, probeRefused, offloadJobs, reloads, reloadSucceeded, buildInfo }
}
