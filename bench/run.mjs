// npm run bench [-- options]: pyfleet and its baselines, interleaved in one
// run on one machine, repeated; writes bench/results/<timestamp>.json and, for
// full runs, bench/results/latest.md and bench/chart.svg. See bench/README.md.
//
//   --quick              CI size: 1 repetition, short runs, fewer cases (< 2 minutes)
//   --reps N             repetitions (default 3; medians need at least 3)
//   --warmup S --measure S   seconds of warm-up (default 1) and of measurement (4; quick 2) per run
//   --cases a,b          only cases whose id contains one of these (echo-100B@50, mix, ...)
//   --designs a,b        only these designs (pyfleet, proto, bare, pipe, spawn, gunicorn)
//   --baseline-dir DIR   also run pyfleet from DIR (another checkout, built) as "pyfleet-base"
//   --env K=V            extra environment for pyfleet (repeatable), e.g. --env MAX_CALLS_PER_WORKER=0
//   --node-arg ARG       extra node flag for pyfleet (repeatable), e.g. --node-arg=--max-semi-space-size=4
//   --cpu-prof           run pyfleet under node --cpu-prof (profiles in bench/results/profiles/)
//   --log-level L        pyfleet's LOG_LEVEL (default warn: no per-request log line)
//   --report FILE        only render latest.md and chart.svg from a results file
//   --no-write           do not replace latest.md and chart.svg (quick runs never do)
//   --out DIR            where results/<timestamp>.json goes (default bench/results)
//   --help               this text

import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, hostname, release, tmpdir, totalmem } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import { CASES, QUICK_CASES, caseId, pathOf, requestsOf } from './lib/scenarios.mjs'
import { DESIGN_ORDER, gunicornAvailability, startDesign } from './lib/designs.mjs'
import { ignoredNote, withoutPyfleetSettings } from './lib/environment.mjs'
import { measure } from './lib/measure.mjs'
import { renderMarkdown } from './lib/report.mjs'
import { renderChart } from './lib/chart.mjs'
import { processTree } from './lib/procs.mjs'
import { parseOptions } from './lib/usage.mjs'

const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
const ROOT = join(BENCH_DIR, '..')

const OPTIONS = {
  quick: { type: 'boolean', default: false },
  reps: { type: 'string' },
  warmup: { type: 'string' },
  measure: { type: 'string' },
  cases: { type: 'string' },
  designs: { type: 'string' },
  'baseline-dir': { type: 'string' },
  env: { type: 'string', multiple: true, default: [] },
  'node-arg': { type: 'string', multiple: true, default: [] },
  'cpu-prof': { type: 'boolean', default: false },
  'log-level': { type: 'string', default: 'warn' },
  report: { type: 'string' },
  'no-write': { type: 'boolean', default: false },
  out: { type: 'string', default: join(BENCH_DIR, 'results') }
}
const opts = parseOptions(import.meta.url, OPTIONS, 'bench')

function writeOutputs (data, file) {
  writeFileSync(join(BENCH_DIR, 'results', 'latest.md'), renderMarkdown(data, { resultsFile: relative(ROOT, file) }))
  writeFileSync(join(BENCH_DIR, 'chart.svg'), renderChart(data))
  console.log(`wrote bench/results/latest.md and bench/chart.svg from ${relative(ROOT, file)}`)
}

if (opts.report !== undefined) {
  try { readFileSync(opts.report) } catch (error) { console.error(`bench: --report ${opts.report}: ${error.message}`); process.exit(2) }
  writeOutputs(JSON.parse(readFileSync(opts.report, 'utf8')), opts.report)
  process.exit(0)
}

function fail (message) {
  console.error(`bench: ${message} (npm run bench -- --help)`)
  process.exit(2)
}
function number (name, fallback, { integer = false, min = 0 } = {}) {
  const value = Number(opts[name] ?? fallback)
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) fail(`--${name} must be ${integer ? 'an integer' : 'a number'} of at least ${min}, not ${opts[name]}`)
  return value
}

const quick = opts.quick
const reps = number('reps', quick ? 1 : 3, { integer: true, min: 1 })
const warmupMs = number('warmup', 1) * 1000
const measureMs = number('measure', quick ? 2 : 4, { min: 0.5 }) * 1000
const primeMs = quick ? 1000 : 2000

const notes = []
let cases = structuredClone(quick ? QUICK_CASES : CASES)
if (opts.cases !== undefined) {
  const wanted = opts.cases.split(',')
  cases = cases.filter((c) => wanted.some((w) => caseId(c).includes(w)))
}
if (cases.length === 0) fail(`--cases ${opts.cases} matches no case; the cases are ${CASES.map(caseId).join(', ')}`)
const unknown = (opts.designs?.split(',') ?? []).filter((d) => !DESIGN_ORDER.includes(d) || d === 'pyfleet-base')
if (unknown.length > 0) fail(`unknown design ${unknown.join(', ')}; the designs are ${DESIGN_ORDER.filter((d) => d !== 'pyfleet-base').join(', ')} (pyfleet-base comes with --baseline-dir)`)
for (const kv of opts.env) if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(kv)) fail(`--env wants KEY=VALUE, not ${kv}`)
const pyfleetEnv = Object.fromEntries(opts.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
// One interpreter for every design, the one pyfleet would run (--env PYTHON, PYTHON, else the
// server's own search: .venv, then python3 on PATH), handed to pyfleet and the baselines alike:
// pyfleet searched for its own while the baselines took /usr/bin/python3, and the ratios
// compared two Python builds (and the report named the baselines').
const python = pyfleetEnv.PYTHON ?? process.env.PYTHON ?? await (async () => {
  const { resolvePython } = await import(pathToFileURL(join(ROOT, 'dist', 'python-path.js')).href).catch(() => fail('dist/ is not built: npm run build (npm run bench does it)'))
  return (await resolvePython(undefined, ROOT).catch((error) => fail(error.message))).path
})()
const allowed = new Set(opts.designs?.split(',') ?? DESIGN_ORDER)
// The shell's pyfleet settings stay out of every design (lib/environment.mjs).
const { env: inheritedEnv, ignored } = await withoutPyfleetSettings(ROOT).catch(() => fail('dist/ is not built: npm run build (npm run bench does it)'))
if (ignored.length > 0) notes.push(ignoredNote(ignored))
const gunicorn = gunicornAvailability()
if (!gunicorn.ok) { allowed.delete('gunicorn'); notes.push(gunicorn.note) }
if (opts['baseline-dir'] !== undefined) {
  allowed.add('pyfleet-base')
  for (const c of cases) if (c.designs.includes('pyfleet')) c.designs.splice(1, 0, 'pyfleet-base')
} else {
  allowed.delete('pyfleet-base')
}
for (const c of cases) c.designs = c.designs.filter((d) => allowed.has(d))
cases = cases.filter((c) => c.designs.length > 0)
if (cases.length === 0) fail(`no case left: the designs ${[...allowed].join(', ')} run none of the chosen cases (${opts.cases ?? 'all'})`)
const designs = DESIGN_ORDER.filter((d) => cases.some((c) => c.designs.includes(d)))

const stamp = new Date().toISOString().replace(/[:.]/g, '-')
mkdirSync(opts.out, { recursive: true })
const ctx = {
  root: ROOT,
  benchDir: BENCH_DIR,
  outDir: opts.out,
  logDir: mkdtempSync(join(tmpdir(), 'pyfleet-bench-')),
  python,
  logLevel: opts['log-level'],
  cpuProf: opts['cpu-prof'],
  baselineDir: opts['baseline-dir'] === undefined ? undefined : resolve(opts['baseline-dir']),
  pyfleetEnv,
  inheritedEnv,
  nodeArgs: opts['node-arg']
}

function git (...args) {
  try { return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim() } catch { return undefined }
}
function version (command, args) {
  try { return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim() } catch { return undefined }
}

const machine = {
  hostname: hostname(),
  cpuModel: cpus()[0]?.model,
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
  python: version(python, ['--version']),
  gunicorn: gunicorn.ok ? version('gunicorn', ['--version']) : undefined,
  // Debian's gunicorn runs its own interpreter, which may not be the one pyfleet and the other baselines run.
  gunicornPython: gunicorn.ok ? version(gunicorn.python[0], [...gunicorn.python.slice(1), '--version']) : undefined,
  loadAverageAtStart: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number)
}

const runSeconds = (warmupMs + measureMs) / 1000 + 0.8
const runsPerRep = cases.reduce((n, c) => n + c.designs.length, 0)
console.log(`pyfleet bench${quick ? ' (quick)' : ''}: ${cases.length} cases, ${designs.join(', ')}; ${reps} repetition(s) of ${runsPerRep} runs of ${warmupMs / 1000}+${measureMs / 1000} s; about ${Math.ceil(reps * (runsPerRep * runSeconds + 4 * designs.length) / 60)} min`)
console.log(`machine: ${machine.cores} x ${machine.cpuModel}, ${machine.memoryGiB} GiB, load ${machine.loadAverageAtStart.join(' ')}; server logs in ${ctx.logDir}`)
for (const note of notes) console.log(`note: ${note}`)

const running = new Set()
async function stopAll () {
  const leftovers = []
  for (const handle of running) {
    leftovers.push(...(await handle.stop()) ?? [])
    running.delete(handle)
  }
  if (leftovers.length > 0) console.error(`warning: processes still alive after stop: ${leftovers.join(' ')}`)
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => { console.error(`\n${signal}: stopping servers`); stopAll().finally(() => process.exit(130)) })
}

const scenariosOf = (design) => [...new Set(cases.filter((c) => c.designs.includes(design)).map((c) => c.scenario))]
/** A scenario with a body of 64 KiB or more (the 1 MB ones). */
const isLarge = (scenario) => requestsOf(scenario).some((request) => request.body.length >= 64 * 1024)

/**
 * Sends every request of the given scenarios once and checks the answer, so a
 * broken design fails before it is timed. A scenario already checked on this
 * server is skipped.
 */
const preflighted = new WeakMap()
async function preflight (handle, scenarios) {
  if (handle.url === null) return
  if (!preflighted.has(handle)) preflighted.set(handle, new Set())
  const done = preflighted.get(handle)
  for (const scenario of scenarios) {
    if (done.has(scenario)) continue
    done.add(scenario)
    for (const request of requestsOf(scenario)) {
      const response = await fetch(handle.url + pathOf(request), { method: 'POST', headers: { 'content-type': request.contentType }, body: request.body })
      const text = await response.text()
      if (response.status !== 200) throw new Error(`${handle.name}: ${request.task} (${scenario}) answered ${response.status}: ${text.slice(0, 300)}`)
      if (request.task === 'echo' && !isDeepStrictEqual(JSON.parse(text), request.input)) throw new Error(`${handle.name}: echo (${scenario}) answered a different value`)
    }
  }
}

const fmt = (n, digits = 0) => n === null || n === undefined ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const mb = (bytes) => fmt(bytes / 2 ** 20)

function progress (rep, c, design, r) {
  const l = r.latency
  const cpu = r.cpu === undefined ? '' : `  cpu node ${fmt(r.cpu.nodeCores, 2)} py ${fmt(r.cpu.pythonCores, 2)} load ${fmt(r.cpu.driverCores, 2)} other ${fmt(r.cpu.otherCores, 2)}`
  const restarts = r.restarts?.total > 0 ? `  recycled ${r.restarts.total}` : ''
  console.log(`[${rep}/${reps}] ${caseId(c).padEnd(15)} ${design.padEnd(12)} ${fmt(r.requestsPerSecond).padStart(7)} req/s  p50 ${fmt(l.p50, 3)}  p90 ${fmt(l.p90, 3)}  p99 ${fmt(l.p99, 3)} ms  err ${r.errors}  non2xx ${r.non2xx}  RSS ${mb(r.memory.beforeBytes)}/${mb(r.memory.maxBytes)}/${mb(r.memory.afterBytes)} MB${cpu}${restarts}`)
}

const runs = []
const started = Date.now()
try {
  for (let rep = 1; rep <= reps; rep++) {
    const handles = new Map()
    for (const name of designs) {
      const handle = await startDesign(ctx, name)
      running.add(handle)
      handles.set(name, handle)
    }
    // A fresh Node server runs its first seconds in unoptimised code: prime the
    // JIT of every Node HTTP design (untimed) before its first measured run.
    for (const [name, handle] of handles) {
      if (name === 'pyfleet' || name === 'pyfleet-base' || name === 'proto' || name === 'bare') await handle.run({ scenario: 'echo-100B', connections: 50, warmupMs: 0, measureMs: primeMs, timeoutSeconds: 30 }, () => {})
    }
    if (rep === 1) {
      for (const [name, handle] of handles) {
        await preflight(handle, scenariosOf(name).filter((scenario) => !isLarge(scenario)))
      }
    }
    for (const c of cases) {
      // Large bodies are checked just before their first case, not up front:
      // V8 keeps the heap they grow, which would count in the memory of every
      // small-body case measured after them (CI bounds that memory).
      if (rep === 1 && isLarge(c.scenario)) {
        for (const design of c.designs) await preflight(handles.get(design), [c.scenario])
      }
      // Rotate the order each repetition so no design always runs first (or right after the heaviest).
      const order = c.designs.map((_, i) => c.designs[(i + rep - 1) % c.designs.length])
      for (const design of order) {
        const spec = { scenario: c.scenario, connections: c.connections, warmupMs, measureMs, timeoutSeconds: 30 }
        const result = await measure(handles.get(design), spec)
        const record = { rep, case: caseId(c), scenario: c.scenario, connections: design === 'pipe' ? 4 : c.connections, caseConnections: c.connections, design, ...result }
        runs.push(record)
        progress(rep, c, design, record)
      }
    }
    await stopAll()
  }
} catch (error) {
  await stopAll()
  console.error(error.stack ?? error)
  process.exit(1)
}

const mine = processTree(process.pid).filter((p) => p.pid !== process.pid)
if (mine.length > 0) console.error(`warning: child processes still alive: ${mine.map((p) => `${p.pid} ${p.comm}`).join(', ')}`)

const data = {
  version: 1,
  startedAt: new Date(started).toISOString(),
  durationSeconds: Math.round((Date.now() - started) / 1000),
  quick,
  reps,
  warmupMs,
  measureMs,
  commit: git('rev-parse', '--short', 'HEAD'),
  dirty: (git('status', '--porcelain', '--', 'src', 'workers') ?? '') !== '',
  baselineDir: ctx.baselineDir,
  pyfleetEnv,
  nodeArgs: ctx.nodeArgs,
  logLevel: ctx.logLevel,
  machine,
  notes,
  cases: cases.map((c) => ({ id: caseId(c), ...c })),
  runs
}
const file = join(opts.out, `${stamp}${quick ? '-quick' : ''}.json`)
writeFileSync(file, JSON.stringify(data, null, 1))
console.log(`\nresults: ${relative(ROOT, file)} (${data.durationSeconds} s)`)
// The servers' logs are worth keeping only when something went wrong.
if (runs.every((r) => r.errors === 0 && r.non2xx === 0)) rmSync(ctx.logDir, { recursive: true, force: true })
else console.log(`server logs kept in ${ctx.logDir}: some runs had errors or non-2xx answers`)
console.log('\n' + renderMarkdown(data, { resultsFile: relative(ROOT, file), brief: true }))
// Only a full run of this checkout with default settings replaces the committed report.
const canonical = opts.cases === undefined && opts.designs === undefined && ctx.baselineDir === undefined &&
  Object.keys(pyfleetEnv).length === 0 && ctx.nodeArgs.length === 0 && !ctx.cpuProf && ctx.logLevel === 'warn'
if (!quick && !opts['no-write'] && canonical) writeOutputs(data, file)
else if (!quick) console.log('latest.md and chart.svg left as they were (not a canonical full run; re-render with --report FILE)')
