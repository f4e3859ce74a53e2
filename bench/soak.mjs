#!/usr/bin/env node
// npm run bench:soak [-- options]: does pyfleet leak, or wedge, over a long run of hostile
// traffic? One server (this checkout's dist/, DIAG_TASKS=1), for --minutes:
//   - closed-loop clients sending a mix: echo as JSON and msgpack, short sleeps, malformed
//     JSON, input that fails its schema, an unknown task, a task that rejects (422) or
//     raises (500), a client budget that runs out (504), a client that leaves mid-call;
//   - on timers beside them: a worker exiting in its call (502), a call past its task's
//     timeout (504, the worker killed), bodies over BODY_LIMIT_BYTES (413), 300 KB bodies
//     (the offload thread), a rolling reload (POST /admin/reload), and the recycling every
//     few hundred calls that MAX_CALLS_PER_WORKER=300 brings;
//   - every --sample-s seconds, a scrape of /metrics and /proc: memory of Node and each
//     worker, V8's heap, open fds, handles, threads, workers by state, calls waiting.
// Every answer must have one of the statuses its kind allows, and come within 30 s. Quiet
// periods before and after the load (--quiet-s; V8 collects its garbage in them) are
// compared: the pool must be whole again, with nothing waiting, no more fds, handles or
// threads than before, and V8's heap no more than --max-heap-growth-mb larger.
// Exits 1 if any of that fails. A table per minute shows how the run went.
//
//   --minutes M               length of the load (default 10)
//   --clients N               closed-loop clients (default 16)
//   --sample-s S              seconds between samples (default 5)
//   --quiet-s S               quiet period before and after the load (default 45: longer than
//                             the offload thread's 30 s idle stop, so it has ended in both)
//   --max-heap-growth-mb MB   V8 heap used, quiet after minus quiet before (default 25)
//   --json FILE               also write every sample and count to FILE
//   --help                    this text

import { mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { pack } from 'msgpackr'
import { startPyfleetServer, stopTree, treeMemory } from './lib/procs.mjs'
import { ignoredNote, withoutPyfleetSettings } from './lib/environment.mjs'
import { parseOptions } from './lib/usage.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const opts = parseOptions(import.meta.url, {
  minutes: { type: 'string', default: '10' },
  clients: { type: 'string', default: '16' },
  'sample-s': { type: 'string', default: '5' },
  'quiet-s': { type: 'string', default: '45' },
  'max-heap-growth-mb': { type: 'string', default: '25' },
  json: { type: 'string' }
}, 'bench:soak')
const MINUTES = Number(opts.minutes)
const CLIENTS = Number(opts.clients)
const SAMPLE_MS = Number(opts['sample-s']) * 1000
const QUIET_MS = Number(opts['quiet-s']) * 1000
const MAX_HEAP_GROWTH = Number(opts['max-heap-growth-mb']) * 2 ** 20
for (const [name, value] of [['minutes', MINUTES], ['clients', CLIENTS], ['sample-s', SAMPLE_MS], ['quiet-s', QUIET_MS], ['max-heap-growth-mb', MAX_HEAP_GROWTH]]) {
  if (!(value > 0)) { console.error(`bench:soak: --${name} must be a positive number`); process.exit(2) }
}

const POOL_SIZE = 4
const ANSWER_DEADLINE_MS = 30_000
const ADMIN_TOKEN = 'soak-admin-token-0123456789abcdef'
const BODY_LIMIT_BYTES = 1024 * 1024
const SETTINGS = {
  POOL_SIZE: String(POOL_SIZE),
  DIAG_TASKS: '1',
  LOG_LEVEL: 'warn',
  ADMIN_TOKEN,
  BODY_LIMIT_BYTES: String(BODY_LIMIT_BYTES),
  MAX_FRAME_BYTES: String(4 * BODY_LIMIT_BYTES),
  MAX_CALLS_PER_WORKER: '300',
  QUEUE_LIMIT: '64',
  TASK_TIMEOUTS: 'diag.work=400'
}

// What each kind of request sends, and the statuses it may get. 503 is allowed wherever a
// call queues (QUEUE_FULL or QUEUE_TIMEOUT when the workers are busy restarting).
const json = (value) => ({ type: 'application/json', body: Buffer.from(JSON.stringify(value)) })
const work = (input, statuses, extra = {}) => ({ path: '/api/tasks/diag.work', ...json(input), statuses: [...statuses, 503], ...extra })
const bigText = 'x'.repeat(300 * 1024)
const KINDS = {
  echo: { path: '/api/tasks/echo', ...json({ hello: 'soak', n: [1, 2, 3], nested: { ok: true } }), statuses: [200, 503] },
  echoMsgpack: { path: '/api/tasks/echo', type: 'application/msgpack', body: pack({ bytes: Buffer.alloc(64, 7), n: 2 ** 40 }), statuses: [200, 503] },
  sleep: work({ sleep_ms: 20 }, [200]),
  malformed: { path: '/api/tasks/echo', type: 'application/json', body: Buffer.from('{"a": [1, 2'), statuses: [400] },
  invalid: { path: '/api/tasks/stats.describe', ...json({ values: 'not a list' }), statuses: [400] },
  unknown: { path: '/api/tasks/no.such.task', ...json({}), statuses: [404] },
  reject: work({ reject: 'refused on purpose' }, [422]),
  raise: work({ raise: 'raised on purpose' }, [500]),
  budget: work({ sleep_ms: 200 }, [504], { headers: { 'x-request-timeout-ms': '50' } }),
  leave: work({ sleep_ms: 300 }, [], { leaveAfterMs: 30 }),
  // On timers, not in the clients' mix: each costs a worker, a megabyte or a reload.
  exit: work({ exit: 3 }, [502]),
  timeout: work({ sleep_ms: 2000 }, [504]),
  tooLarge: { path: '/api/tasks/echo', type: 'application/json', body: Buffer.from(JSON.stringify({ text: 'y'.repeat(BODY_LIMIT_BYTES + 1000) })), statuses: [413], mayReset: true },
  offloaded: { path: '/api/tasks/echo', ...json({ text: bigText }), statuses: [200, 503] },
  reload: { path: '/admin/reload', type: 'application/json', body: Buffer.alloc(0), statuses: [200], headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }
}
const MIX = [['echo', 40], ['echoMsgpack', 10], ['sleep', 10], ['malformed', 3], ['invalid', 3], ['unknown', 3], ['reject', 3], ['raise', 3], ['budget', 3], ['leave', 3]]
const TIMED = [['exit', 2000], ['timeout', 3000], ['tooLarge', 500], ['offloaded', 200], ['reload', 60_000]]
const MIX_TOTAL = MIX.reduce((sum, [, weight]) => sum + weight, 0)
function pickKind () {
  let r = Math.random() * MIX_TOTAL
  for (const [kind, weight] of MIX) { r -= weight; if (r < 0) return kind }
  return MIX[0][0]
}

const { env: inheritedEnv, ignored } = await withoutPyfleetSettings(ROOT)
if (ignored.length > 0) console.log(`note: ${ignoredNote(ignored)}`)
const LOGS = mkdtempSync(join(tmpdir(), 'pyfleet-soak-'))
const { child, port, url: base } = await startPyfleetServer({
  root: ROOT,
  logFile: join(LOGS, 'server.log'),
  env: { ...inheritedEnv, PYTHON: process.env.PYTHON ?? '/usr/bin/python3', ...SETTINGS }
})
const serverGone = () => child.exitCode !== null || child.signalCode !== null

// ---- requests -------------------------------------------------------------------------

/** Counts per kind: statuses seen, connection errors, hangs; the unexpected ones listed. */
const counts = Object.fromEntries(Object.keys(KINDS).map((kind) => [kind, { sent: 0, statuses: {}, errors: 0, left: 0, hangs: 0 }]))
const unexpected = []
let answeredSinceSample = 0

function send (agent, kindName) {
  const kind = KINDS[kindName]
  const tally = counts[kindName]
  tally.sent++
  return new Promise((resolve) => {
    let done = false
    const finish = (what) => {
      if (done) return
      done = true
      clearTimeout(deadline)
      resolve(what)
    }
    const req = request({
      agent,
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: kind.path,
      headers: { 'content-type': kind.type, 'content-length': kind.body.length, ...kind.headers }
    }, (res) => {
      res.resume()
      res.on('end', () => {
        tally.statuses[res.statusCode] = (tally.statuses[res.statusCode] ?? 0) + 1
        answeredSinceSample++
        if (!kind.statuses.includes(res.statusCode)) {
          if (unexpected.length < 50) unexpected.push(`${kindName}: status ${res.statusCode}`)
        }
        finish()
      })
      res.on('error', () => {
        tally.errors++
        if (unexpected.length < 50) unexpected.push(`${kindName}: the answer was cut off`)
        finish()
      })
    })
    const deadline = setTimeout(() => {
      tally.hangs++
      unexpected.push(`${kindName}: no answer within ${ANSWER_DEADLINE_MS} ms`)
      req.destroy()
      finish()
    }, ANSWER_DEADLINE_MS)
    req.on('error', (error) => {
      if (done) return
      if (kind.leaveAfterMs !== undefined) tally.left++
      else if (kind.mayReset && /ECONNRESET|EPIPE/.test(error.code ?? '')) tally.statuses.reset = (tally.statuses.reset ?? 0) + 1
      else {
        tally.errors++
        if (unexpected.length < 50) unexpected.push(`${kindName}: ${error.code ?? error.message}`)
      }
      finish()
    })
    if (kind.leaveAfterMs !== undefined) setTimeout(() => req.destroy(), kind.leaveAfterMs)
    req.end(kind.body)
  })
}

// ---- samples --------------------------------------------------------------------------

/** The few series a sample keeps, from one scrape (label sets summed where not named). */
function parseScrape (text) {
  const value = (name, labels = '') => {
    let sum = 0
    let seen = false
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue
      const rest = line.slice(name.length)
      if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue
      if (labels !== '' && !rest.includes(labels)) continue
      sum += Number(rest.slice(rest.lastIndexOf(' ') + 1))
      seen = true
    }
    return seen ? sum : NaN
  }
  return {
    heapUsed: value('nodejs_heap_size_used_bytes'),
    nodeRss: value('process_resident_memory_bytes'),
    fds: value('process_open_fds'),
    handles: value('nodejs_active_handles'),
    idle: value('pyworker_pool_workers', 'state="idle"'),
    busy: value('pyworker_pool_workers', 'state="busy"'),
    starting: value('pyworker_pool_workers', 'state="starting"'),
    waiting: value('pyworker_queue_waiting'),
    connections: value('pyfleet_http_connections'),
    restarts: value('pyworker_worker_restarts_total'),
    calls: value('pyworker_calls_total')
  }
}

function threadsOf (pid) {
  try { return Number(/^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) } catch { return NaN }
}

function fdsOf (pid) {
  try { return readdirSync(`/proc/${pid}/fd`).length } catch { return NaN }
}

/** What a process's fds are, counted by kind ("socket", "pipe", "anon_inode:[eventpoll]", a file's path), for a failure's message. */
function fdKinds (pid) {
  const kinds = {}
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target
      try { target = readlinkSync(`/proc/${pid}/fd/${fd}`) } catch { continue }
      const kind = target.replace(/:\[\d+\]$/, '').replace(/^\/proc\/\d+\//, '/proc/<pid>/')
      kinds[kind] = (kinds[kind] ?? 0) + 1
    }
  } catch { /* gone */ }
  return kinds
}

async function sample (phase) {
  const response = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) })
  const scraped = parseScrape(await response.text())
  const memory = treeMemory(child.pid)
  return { at: Date.now(), phase, ...scraped, threads: threadsOf(child.pid), procFds: fdsOf(child.pid), treeRss: memory.rssBytes, treePss: memory.pssBytes, pythonRss: memory.pythonRssBytes, processes: memory.processes }
}

const samples = []

/** A quiet period: no load, a sample every 2 s; what it ends with, and its smallest heap. */
async function quiet (phase) {
  const seen = []
  const end = Date.now() + QUIET_MS
  while (Date.now() < end) {
    await sleep(2000)
    seen.push(await sample(phase))
  }
  samples.push(...seen)
  const last = seen[seen.length - 1]
  return { ...last, heapUsed: Math.min(...seen.map((s) => s.heapUsed)), fdKinds: fdKinds(child.pid) }
}

// ---- the run ----------------------------------------------------------------------------

const mb = (bytes) => (bytes / 2 ** 20).toFixed(1)
const failures = []
let stopping = false
try {
  console.log(`pyfleet on :${port} (log ${join(LOGS, 'server.log')}), ${Object.entries(SETTINGS).map(([k, v]) => `${k}=${v}`).join(' ')}`)
  console.log(`warm-up of 10 s, a quiet ${QUIET_MS / 1000} s, ${MINUTES} min of load from ${CLIENTS} clients plus timed calls, a quiet ${QUIET_MS / 1000} s`)

  // Warm-up: every kind once, then 10 s of the mix, so that "before" has every code path's
  // lazy state (compiled schemas, the offload thread's first start, label children) in it.
  const warmAgent = new Agent({ keepAlive: true })
  for (const kind of Object.keys(KINDS)) if (kind !== 'reload') await send(warmAgent, kind)
  const warmEnd = Date.now() + 10_000
  await Promise.all(Array.from({ length: CLIENTS }, async () => { while (Date.now() < warmEnd) await send(warmAgent, pickKind()) }))
  warmAgent.destroy()
  const before = await quiet('before')
  console.log(`quiet before: heap ${mb(before.heapUsed)} MB, Node RSS ${mb(before.nodeRss)} MB, tree RSS ${mb(before.treeRss)} MB, fds ${before.fds}, handles ${before.handles}, threads ${before.threads}`)

  for (const tally of Object.values(counts)) Object.assign(tally, { sent: 0, statuses: {}, errors: 0, left: 0, hangs: 0 })
  unexpected.length = 0
  const agent = new Agent({ keepAlive: true })
  const loadEnd = Date.now() + MINUTES * 60_000
  const clients = Array.from({ length: CLIENTS }, async () => { while (Date.now() < loadEnd && !stopping) await send(agent, pickKind()) })
  const timed = TIMED.map(async ([kind, everyMs]) => {
    while (Date.now() + everyMs < loadEnd && !stopping) { await sleep(everyMs); await send(agent, kind) }
  })
  const minutes = []
  const sampler = (async () => {
    const freshMinute = () => ({ answers: 0, heapMin: Infinity, nodeRssMax: 0, treeRssMax: 0, fdsMax: 0, handlesMax: 0, restarts: NaN })
    let minute = freshMinute()
    let minuteEnd = Date.now() + 60_000
    answeredSinceSample = 0
    while (Date.now() < loadEnd && !stopping) {
      await sleep(Math.min(SAMPLE_MS, Math.max(0, loadEnd - Date.now())))
      if (serverGone()) { failures.push(`the server exited during the load (code ${child.exitCode}, signal ${child.signalCode})`); stopping = true; break }
      const s = await sample('load')
      samples.push(s)
      minute.answers += answeredSinceSample
      answeredSinceSample = 0
      minute.heapMin = Math.min(minute.heapMin, s.heapUsed)
      minute.nodeRssMax = Math.max(minute.nodeRssMax, s.nodeRss)
      minute.treeRssMax = Math.max(minute.treeRssMax, s.treeRss)
      minute.fdsMax = Math.max(minute.fdsMax, s.fds)
      minute.handlesMax = Math.max(minute.handlesMax, s.handles)
      minute.restarts = s.restarts
      if (Date.now() >= minuteEnd || Date.now() >= loadEnd) {
        minutes.push(minute)
        console.log(`minute ${minutes.length}: ${Math.round(minute.answers / 60)} answers/s, heap min ${mb(minute.heapMin)} MB, Node RSS max ${mb(minute.nodeRssMax)} MB, tree RSS max ${mb(minute.treeRssMax)} MB, fds max ${minute.fdsMax}, handles max ${minute.handlesMax}, restarts so far ${minute.restarts}, unexpected so far ${unexpected.length}`)
        minute = freshMinute()
        minuteEnd += 60_000
      }
    }
  })()
  await Promise.all([...clients, ...timed, sampler])
  agent.destroy()

  const after = await quiet('after')
  console.log(`quiet after:  heap ${mb(after.heapUsed)} MB, Node RSS ${mb(after.nodeRss)} MB, tree RSS ${mb(after.treeRss)} MB, fds ${after.fds}, handles ${after.handles}, threads ${after.threads}`)

  // The verdict.
  const hangs = Object.values(counts).reduce((sum, tally) => sum + tally.hangs, 0)
  if (hangs > 0) failures.push(`${hangs} requests got no answer within ${ANSWER_DEADLINE_MS} ms`)
  if (unexpected.length > 0) failures.push(`unexpected answers (first ${Math.min(unexpected.length, 10)}): ${unexpected.slice(0, 10).join('; ')}`)
  if (!(after.idle === POOL_SIZE && after.busy === 0 && after.starting === 0)) failures.push(`the pool is not whole after the load: idle ${after.idle}, busy ${after.busy}, starting ${after.starting}`)
  if (after.waiting !== 0) failures.push(`${after.waiting} calls still waiting after the load`)
  // The scrape's own connection is the one left.
  if (after.connections > 1) failures.push(`${after.connections} client connections open after the load`)
  for (const [name, slack] of [['fds', 2], ['handles', 2], ['threads', 1]]) {
    if (after[name] <= before[name] + slack) continue
    failures.push(`${name}: ${before[name]} before the load, ${after[name]} after it`)
    if (name === 'fds') {
      const kinds = new Set([...Object.keys(before.fdKinds), ...Object.keys(after.fdKinds)])
      const changed = [...kinds].filter((kind) => before.fdKinds[kind] !== after.fdKinds[kind]).map((kind) => `${kind} ${before.fdKinds[kind] ?? 0} -> ${after.fdKinds[kind] ?? 0}`)
      failures.push(`fds by kind, before -> after: ${changed.join(', ')}`)
      // A running offload thread holds an event poll, an eventfd and two pipes of its own.
      if (after.threads > before.threads) failures.push(`a thread more than before: the offload thread, if --quiet-s (${QUIET_MS / 1000}) is shorter than its 30 s idle stop`)
    }
  }
  if (!(after.heapUsed - before.heapUsed <= MAX_HEAP_GROWTH)) failures.push(`V8 heap used grew by ${mb(after.heapUsed - before.heapUsed)} MB (bound ${mb(MAX_HEAP_GROWTH)})`)
  if (serverGone()) failures.push('the server exited')

  console.log('\n| kind | sent | statuses | connection errors | left mid-call |\n|---|---:|---|---:|---:|')
  for (const [kind, tally] of Object.entries(counts)) {
    const statuses = Object.entries(tally.statuses).map(([status, n]) => `${status}: ${n}`).join(', ')
    console.log(`| ${kind} | ${tally.sent} | ${statuses} | ${tally.errors} | ${tally.left} |`)
  }
  console.log(`\n| quiet | V8 heap used, MB (least) | Node RSS, MB | tree RSS, MB | tree PSS, MB | open fds | handles | threads | workers idle |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|`)
  for (const [label, s] of [['before', before], ['after', after]]) {
    console.log(`| ${label} | ${mb(s.heapUsed)} | ${mb(s.nodeRss)} | ${mb(s.treeRss)} | ${mb(s.treePss)} | ${s.fds} | ${s.handles} | ${s.threads} | ${s.idle} |`)
  }
  console.log(`\nworker restarts during the run: ${after.restarts - before.restarts}; calls: ${after.calls - before.calls}`)
  if (opts.json !== undefined) writeFileSync(opts.json, JSON.stringify({ settings: SETTINGS, minutes: MINUTES, clients: CLIENTS, counts, unexpected, before, after, samples }, null, 1))
} catch (error) {
  failures.push(`the run stopped: ${error.message}`)
} finally {
  stopping = true
  const survivors = await stopTree(child)
  if (survivors?.length > 0) failures.push(`processes left after the stop: ${survivors.join(', ')}`)
}
if (failures.length > 0) {
  console.log(`\nsoak FAILED:\n- ${failures.join('\n- ')}`)
  process.exit(1)
}
console.log('\nsoak passed: every answer as expected and in time, the pool whole afterwards, nothing left growing beyond its bound')
