// Turns a results file into numbers worth reading: per case and design the
// median and min–max over repetitions; ratios of pyfleet to each baseline
// computed within each repetition (the designs ran minutes apart at most, on
// the same machine) and then summarised; and the issue's targets, met or not.

import { DESIGN_ORDER } from './designs.mjs'
import { SCENARIO_TITLES } from './scenarios.mjs'

export function median (values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = Math.floor(v.length / 2)
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/** {median, min, max, n} of the finite values. */
export function spread (values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x))
  if (v.length === 0) return null
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length }
}

export const runsOf = (data, caseId, design) => data.runs.filter((r) => r.case === caseId && r.design === design)

/** A metric of one design in one case, over repetitions. */
export function metric (data, caseId, design, pick) {
  return spread(runsOf(data, caseId, design).map(pick))
}

/** The run of `design` for the same scenario and repetition (pipe runs once per scenario, at one case). */
function partner (data, run, design) {
  const same = data.runs.filter((r) => r.rep === run.rep && r.design === design)
  return same.find((r) => r.case === run.case) ?? (design === 'pipe' ? same.find((r) => r.scenario === run.scenario) : undefined)
}

/** pyfleet's `pick` divided by `baseline`'s, within each repetition; summarised. */
export function ratio (data, caseId, baseline, pick = (r) => r.requestsPerSecond, subject = 'pyfleet') {
  const values = runsOf(data, caseId, subject).map((run) => {
    const other = partner(data, run, baseline)
    if (other === undefined) return null
    const a = pick(run)
    const b = pick(other)
    return a === null || b === null || b === 0 ? null : a / b
  })
  return spread(values)
}

const MB = 2 ** 20
const rps = (r) => r.requestsPerSecond
const p99 = (r) => r.latency.p99
const errorsOf = (r) => r.errors + r.non2xx

/** The issue's targets: [{name, goal, value (spread), met, unit}]. Missing data gives met: null. */
export function targets (data) {
  const list = []
  const add = (name, goal, value, test, format = 'ratio') => list.push({ name, goal, value, met: value === null ? null : test(value.median), format })
  add('echo@50 req/s, pyfleet ÷ bare', '≥ 0.45', ratio(data, 'echo-100B@50', 'bare'), (v) => v >= 0.45)
  add('echo@50 p99, pyfleet ÷ bare', '≤ 2', ratio(data, 'echo-100B@50', 'bare', p99), (v) => v <= 2)
  add('echo@50 req/s, pyfleet ÷ spawn', '≥ 150', ratio(data, 'echo-100B@50', 'spawn'), (v) => v >= 150)
  add('echo@50 req/s, pyfleet ÷ gunicorn', '≥ 3', ratio(data, 'echo-100B@50', 'gunicorn'), (v) => v >= 3)
  add('cpu-10ms req/s, pyfleet ÷ gunicorn', '≥ 1.2', ratio(data, 'cpu-10ms@50', 'gunicorn'), (v) => v >= 1.2)
  add('cpu-10ms: Python share of all cores (pyfleet)', '≥ 90 %', metric(data, 'cpu-10ms@50', 'pyfleet', (r) => r.cpu?.pythonShare ?? null), (v) => v >= 0.9, 'percent')
  add('echo@1000: total RSS, max during the run (pyfleet)', '≤ 140 MB', metric(data, 'echo-100B@1000', 'pyfleet', (r) => r.memory.maxBytes / MB), (v) => v <= 140, 'MB')
  // Met only if no repetition had any (the median of [0, 0, 12] is 0).
  const errors = metric(data, 'echo-100B@1000', 'pyfleet', errorsOf)
  list.push({ name: 'echo@1000: errors + non-2xx (pyfleet)', goal: '0', value: errors, met: errors === null ? null : errors.max === 0, format: 'count' })
  return list
}

// ---- Markdown ----

const num = (n, digits = 0) => n === null || n === undefined ? '–' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

/** A number with fixed significant figures for ratios: 0.512, 3.41, 182. */
function sig (n) {
  if (n === null || n === undefined) return '–'
  const a = Math.abs(n)
  return num(n, a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3)
}

function cell (s, format) {
  if (s === null) return '–'
  // Percentages to a tenth: 89.7 % shown as "90 %" beside "missed" read as a mistake.
  const one = (v) => format === 'percent' ? `${num(v * 100, 1)} %` : format === 'MB' ? num(v, 0) : format === 'ms' ? num(v, v >= 100 ? 0 : v >= 10 ? 1 : 2) : format === 'count' ? num(v) : format === 'int' ? num(v) : sig(v)
  if (s.n === 1 || s.min === s.max) return one(s.median)
  return `${one(s.median)} <sub>${one(s.min)}–${one(s.max)}</sub>`
}

function table (header, rows) {
  return [`| ${header.join(' | ')} |`, `|${header.map((h, i) => i === 0 ? '---' : '---:').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

function designsOf (data, caseId) {
  const present = new Set(data.runs.filter((r) => r.case === caseId).map((r) => r.design))
  return DESIGN_ORDER.filter((d) => present.has(d))
}

function machineLine (data) {
  const m = data.machine
  return `${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, Linux ${m.kernel}; Node ${m.node}, ${m.python}${m.gunicorn ? `, ${m.gunicorn}${m.gunicornPython && m.gunicornPython !== m.python ? ` on ${m.gunicornPython}` : ''}` : ''}; load average at start ${m.loadAverageAtStart.join(' ')}`
}

export function renderMarkdown (data, { resultsFile, brief = false } = {}) {
  const out = []
  const commit = `${data.commit ?? 'unknown commit'}${data.dirty ? ' with local changes' : ''}`
  if (!brief) {
    out.push(`## Benchmark results, ${data.startedAt.slice(0, 10)} (commit ${commit})`, '')
    out.push(`- Machine: ${machineLine(data)}.`)
    out.push(`- ${data.reps} repetitions; every run is one continuous autocannon run of ${data.warmupMs / 1000} s warm-up then ${data.measureMs / 1000} s measured; designs interleaved within each case, order rotated each repetition; ${data.durationSeconds} s in all.`)
    out.push('- Figures are medians over the repetitions with min–max in small print; ratios are taken within each repetition, then summarised the same way.')
    out.push(`- pyfleet runs with POOL_SIZE=4, DIAG_TASKS=1, LOG_LEVEL=${data.logLevel}${Object.keys(data.pyfleetEnv ?? {}).length > 0 ? ', ' + Object.entries(data.pyfleetEnv).map(([k, v]) => `${k}=${v}`).join(', ') : ''}, defaults otherwise${(data.nodeArgs ?? []).length > 0 ? `; node flags ${data.nodeArgs.join(' ')}` : ''}. RSS is the sum over the server's whole process tree (Node and every Python process), read from /proc.`)
    for (const note of data.notes) out.push(`- Note: ${note}.`)
    if (resultsFile) out.push(`- Raw data: \`${resultsFile}\` (not committed).`)
    out.push('')
  }

  out.push('### Targets (50 connections unless stated; measured in the same run)', '')
  out.push(table(['target', 'goal', 'measured', ''], targets(data).map((t) => [t.name, t.goal, cell(t.value, t.format), t.met === null ? 'not measured' : t.met ? 'met' : '**missed**'])))
  out.push('')

  out.push('### Ratios: pyfleet ÷ baseline, req/s (same repetition)', '')
  const baselines = ['proto', 'bare', 'pipe', 'spawn', 'gunicorn']
  if (data.cases.some((c) => c.designs.includes('pyfleet-base'))) baselines.push('pyfleet-base')
  const ratioRows = data.cases.filter((c) => c.designs.includes('pyfleet')).map((c) => [
    c.id,
    ...baselines.map((b) => cell(ratio(data, c.id, b))),
    cell(ratio(data, c.id, 'bare', p99)),
    cell(metric(data, c.id, 'pyfleet', (r) => r.memory.maxBytes / MB), 'MB')
  ])
  out.push(table(['case', ...baselines.map((b) => `÷ ${b}`), 'p99 ÷ bare p99', 'pyfleet RSS max, MB'], ratioRows))
  out.push('')

  out.push('### Every design, every case', '')
  const rows = []
  for (const c of data.cases) {
    for (const design of designsOf(data, c.id)) {
      const m = (pick, format) => cell(metric(data, c.id, design, pick), format)
      const errors = runsOf(data, c.id, design).reduce((n, r) => n + r.errors, 0)
      const non2xx = runsOf(data, c.id, design).reduce((n, r) => n + r.non2xx, 0)
      rows.push([
        `${c.id}`, design === 'pipe' ? 'pipe (4 in flight)' : design,
        m(rps, 'int'), m((r) => r.latency.p50, 'ms'), m((r) => r.latency.p90, 'ms'), m(p99, 'ms'),
        `${errors} / ${non2xx}`,
        `${m((r) => r.memory.beforeBytes / MB, 'MB')} → ${m((r) => r.memory.maxBytes / MB, 'MB')} → ${m((r) => r.memory.afterBytes / MB, 'MB')}`,
        m((r) => r.memory.maxPssBytes / MB, 'MB'),
        `${m((r) => r.cpu?.nodeCores ?? null, 'ratio')} / ${m((r) => r.cpu?.pythonCores ?? null, 'ratio')}`
      ])
    }
  }
  out.push(table(['case', 'design', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'errors / non-2xx (all reps)', 'RSS MB before → max → after', 'PSS MB max', 'CPU cores node / python'], rows))
  if (!brief) {
    out.push('')
    out.push('Cases: ' + Object.entries(SCENARIO_TITLES).map(([k, v]) => `\`${k}\` ${v}`).join('; ') + '. `@N` is the number of connections; pipe has no connections and keeps one call in flight per worker.')
  }
  return out.join('\n') + '\n'
}
