#!/usr/bin/env node
// npm run bench:overload [-- options]: what clients get when a slow task is offered more
// calls than the workers can run, each with its own x-request-timeout-ms budget.
// Open-loop load (a call every 1/rate s, whatever the answers do), as clients with
// deadlines send it, on two designs alternated and repeated: this checkout with the
// --env settings against the same without them (the default: SHED_LATE_CALLS=1 against
// none), or against another built checkout (--baseline-dir) with the same settings.
// Reported per design: answers 200 a second (goodput: calls answered in time), 504s
// (budget spent while the call ran: the worker's time went to an answer nobody got), 503s
// (refused or timed out while queued), and the goodput ratio, medians of the repetitions.
//
//   --env K=V            settings for this checkout (repeatable; default SHED_LATE_CALLS=1)
//   --baseline-dir DIR   compare with pyfleet from DIR (another checkout, built), same settings
//   --reps N             repetitions (default 3)
//   --seconds S          load per run (default 10)
//   --load X             offered load as a multiple of the workers' capacity (default 2.5)
//   --task-ms MS         the task's time (diag.work sleep_ms; default 200)
//   --budget A-B         budgets drawn uniformly from A to B ms (default 500-1500)
//   --help               this text

import { mkdtempSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startPyfleetServer, stopTree } from './lib/procs.mjs'
import { ignoredNote, withoutPyfleetSettings } from './lib/environment.mjs'
import { median, spread } from './lib/report.mjs'
import { parseOptions } from './lib/usage.mjs'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const opts = parseOptions(import.meta.url, {
  'baseline-dir': { type: 'string' },
  env: { type: 'string', multiple: true, default: ['SHED_LATE_CALLS=1'] },
  reps: { type: 'string', default: '3' },
  seconds: { type: 'string', default: '10' },
  load: { type: 'string', default: '2.5' },
  'task-ms': { type: 'string', default: '200' },
  budget: { type: 'string', default: '500-1500' }
}, 'bench:overload')
const POOL_SIZE = 4
const TASK_MS = Number(opts['task-ms'])
const RATE = Number(opts.load) * POOL_SIZE * 1000 / TASK_MS
const SECONDS = Number(opts.seconds)
const [BUDGET_MIN, BUDGET_MAX] = opts.budget.split('-').map(Number)
const PYTHON = process.env.PYTHON ?? '/usr/bin/python3'
// The shell's pyfleet settings stay out of the servers compared (lib/environment.mjs).
const { env: inheritedEnv, ignored } = await withoutPyfleetSettings(ROOT)
if (ignored.length > 0) console.log(`note: ${ignoredNote(ignored)}`)
const LOGS = mkdtempSync(join(tmpdir(), 'pyfleet-overload-'))

const ENV = Object.fromEntries(opts.env.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]))

async function startPyfleet (label, root, extraEnv) {
  const env = { ...inheritedEnv, PYTHON, LOG_LEVEL: 'warn', DIAG_TASKS: '1', POOL_SIZE: String(POOL_SIZE), ...extraEnv }
  return { label, ...await startPyfleetServer({ root, logFile: join(LOGS, `${label}.log`), env }) }
}

/** Offers RATE calls a second for SECONDS, then waits for every answer; counts them by status. */
async function offer (server) {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity })
  const body = JSON.stringify({ sleep_ms: TASK_MS })
  const counts = { 200: 0, 503: 0, 504: 0, other: 0 }
  const answers = []
  const send = () => new Promise((resolve) => {
    const budget = Math.round(BUDGET_MIN + Math.random() * (BUDGET_MAX - BUDGET_MIN))
    const req = request({ agent, host: '127.0.0.1', port: server.port, method: 'POST', path: '/api/tasks/diag.work', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-timeout-ms': String(budget) } }, (res) => {
      res.resume()
      res.on('end', () => { counts[res.statusCode in counts ? res.statusCode : 'other']++; resolve() })
    })
    req.on('error', () => { counts.other++; resolve() })
    req.end(body)
  })
  const start = performance.now()
  for (let sent = 0; sent < RATE * SECONDS; sent++) {
    const due = start + sent * 1000 / RATE
    const wait = due - performance.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    answers.push(send())
  }
  await Promise.all(answers)
  agent.destroy()
  return { goodput: counts[200] / SECONDS, ...counts }
}

const designs = opts['baseline-dir'] === undefined
  ? [['this', ROOT, ENV], ['base', ROOT, {}]]
  : [['this', ROOT, ENV], ['base', resolve(opts['baseline-dir']), ENV]]
const results = Object.fromEntries(designs.map(([label]) => [label, []]))
console.log(`offered ${RATE.toFixed(1)} calls/s (${opts.load} × the capacity of ${POOL_SIZE} workers at ${TASK_MS} ms) for ${SECONDS} s, budgets ${BUDGET_MIN}-${BUDGET_MAX} ms; this: ${opts.env.join(' ')}; base: ${opts['baseline-dir'] ?? 'this checkout without them'}`)
for (let rep = 0; rep < Number(opts.reps); rep++) {
  for (const [label, root, env] of rep % 2 === 0 ? designs : [...designs].reverse()) {
    const server = await startPyfleet(label, root, env)
    try {
      await offer(server) // warm-up run, not counted: the pool learns the task's pace
      const result = await offer(server)
      results[label].push(result)
      console.log(`rep ${rep + 1} ${label}: ${result.goodput.toFixed(1)} answered in time/s, 504 ${result[504]}, 503 ${result[503]}, other ${result.other}`)
    } finally {
      await stopTree(server.child)
    }
  }
}
const fmt = (values) => { const { median: middle, min, max } = spread(values); return `${middle.toFixed(1)} (${min.toFixed(1)}-${max.toFixed(1)})` }
console.log('\n| design | 200 a second | 504s | 503s |\n|---|---:|---:|---:|')
for (const [label] of designs) {
  const runs = results[label]
  console.log(`| ${label} | ${fmt(runs.map((r) => r.goodput))} | ${median(runs.map((r) => r[504]))} | ${median(runs.map((r) => r[503]))} |`)
}
{
  const ratios = results.this.map((r, i) => r.goodput / results.base[i].goodput)
  console.log(`\ngoodput this ÷ base, per repetition: ${ratios.map((r) => r.toFixed(2)).join(', ')}; median ${median(ratios).toFixed(2)}`)
}
