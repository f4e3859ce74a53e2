#!/usr/bin/env node
// npm run bench:stall: how long other requests wait while pyfleet converts one large
// body. pyfleet is started twice, with the offload thread (OFFLOAD_MIN_BYTES's
// default) and without it (OFFLOAD_MIN_BYTES=0); each large body is sent to echo (raw
// text to text.stats, which reads it) on
// one and then the other, alternating, while a separate process asks for /health
// every 10 ms. Reported: the slowest /health answer during each call (the event
// loop's stall, as a client or a liveness probe sees it) and the call's own time,
// medians of the repetitions, and their ratio (off ÷ on): ratios, measured side by
// side, because this machine is noisy.
//
//   --reps N             repetitions (default 3)
//   --mib N              the large bodies' size in MiB (default 16)
//   --python PATH        the workers' interpreter (default $PYTHON, else /usr/bin/python3)
//   --help               this text

import { fork } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Packr } from 'msgpackr'
import { startPyfleetServer, stopTree } from './lib/procs.mjs'
import { ignoredNote, withoutPyfleetSettings } from './lib/environment.mjs'
import { median, spread } from './lib/report.mjs'
import { parseOptions } from './lib/usage.mjs'

const BENCH = dirname(fileURLToPath(import.meta.url))
const ROOT = join(BENCH, '..')
const opts = parseOptions(import.meta.url, {
  reps: { type: 'string', default: '3' },
  mib: { type: 'string', default: '16' },
  python: { type: 'string', default: process.env.PYTHON ?? '/usr/bin/python3' }
}, 'bench:stall')
const REPS = Number(opts.reps)
const SIZE = Number(opts.mib) * 1024 * 1024 - 1024
const PYTHON = opts.python
// The shell's pyfleet settings stay out of the servers compared (lib/environment.mjs).
const { env: inheritedEnv, ignored } = await withoutPyfleetSettings(ROOT)
if (ignored.length > 0) console.log(`note: ${ignoredNote(ignored)}`)
const LOGS = mkdtempSync(join(tmpdir(), 'pyfleet-stall-'))

/**
 * Bodies of about SIZE bytes: the costly shape (distinct keys), an ordinary one
 * (records), the costly one as msgpack, and raw UTF-8 text (decoded, its length checked
 * by the schema, and encoded for the worker).
 */
const LINE = 'Héllo wörld, a line of ünïcode prose. It says things!\n'
function bodies () {
  const keys = {}
  for (let i = 0, size = 2; size < SIZE; i++) { const key = `k${i.toString(36)}x${i}`; keys[key] = i; size += key.length + String(i).length + 4 }
  const records = []
  for (let i = 0, size = 2; size < SIZE; i++) { const record = { id: i, name: `item ${i}`, price: Math.round(i * 137) / 100, tags: ['a', 'b'] }; records.push(record); size += JSON.stringify(record).length + 1 }
  const packr = new Packr({ useRecords: false, variableMapSize: true })
  return [
    { name: 'JSON, distinct keys', type: 'application/json', bytes: Buffer.from(JSON.stringify(keys)) },
    { name: 'JSON, records', type: 'application/json', bytes: Buffer.from(JSON.stringify(records)) },
    { name: 'msgpack, distinct keys', type: 'application/msgpack', bytes: packr.pack(keys) },
    { name: 'raw text to text.stats', type: 'text/plain; charset=utf-8', path: 'text.stats?top=5', bytes: Buffer.from(LINE.repeat(Math.floor(SIZE / Buffer.byteLength(LINE)))) }
  ]
}

async function startPyfleet (label, env) {
  const server = await startPyfleetServer({ root: ROOT, logFile: join(LOGS, `${label}.log`), env: { ...inheritedEnv, PYTHON, LOG_LEVEL: 'warn', ...env } })
  return { label, url: server.url, child: server.child }
}

/** One call with the body while the pinger watches /health: the slowest answer it saw, and the call's time. */
async function measure (server, body) {
  const pinger = fork(join(BENCH, 'lib', 'ping.mjs'))
  await new Promise((resolve) => { pinger.once('message', resolve); pinger.send({ url: `${server.url}/health` }) })
  const start = performance.now()
  const response = await fetch(`${server.url}/api/tasks/${body.path ?? 'echo'}`, { method: 'POST', headers: { 'content-type': body.type }, body: body.bytes })
  await response.arrayBuffer()
  const callMs = performance.now() - start
  const result = await new Promise((resolve) => { pinger.on('message', (m) => { if (m.type === 'result') resolve(m) }); pinger.send('stop') })
  if (response.status !== 200) throw new Error(`${server.label}: ${body.name} answered ${response.status}`)
  return { stallMs: result.maxMs, callMs }
}

const fmt = (values) => { const { median: middle, min, max } = spread(values); return `${Math.round(middle)} <sub>${Math.round(min)}–${Math.round(max)}</sub>` }

const servers = [await startPyfleet('offload', {}), await startPyfleet('event-loop', { OFFLOAD_MIN_BYTES: '0' })]
try {
  const rows = []
  for (const body of bodies()) {
    const runs = { offload: [], 'event-loop': [] }
    for (let rep = 0; rep < REPS; rep++) {
      // Alternated, and the order swapped each repetition: neither always goes first.
      for (const server of rep % 2 === 0 ? servers : [...servers].reverse()) {
        runs[server.label].push(await measure(server, body))
        process.stderr.write(`${body.name} rep ${rep + 1}/${REPS} ${server.label}: /health waited up to ${Math.round(runs[server.label].at(-1).stallMs)} ms\n`)
      }
    }
    const ratios = runs.offload.map((on, i) => runs['event-loop'][i].stallMs / on.stallMs)
    rows.push(`| ${body.name}, ${(body.bytes.length / 1024 / 1024).toFixed(1)} MiB | ${fmt(runs['event-loop'].map((r) => r.stallMs))} | ${fmt(runs.offload.map((r) => r.stallMs))} | ${median(ratios).toFixed(1)}× | ${fmt(runs['event-loop'].map((r) => r.callMs))} | ${fmt(runs.offload.map((r) => r.callMs))} |`)
  }
  console.log(`\n${REPS} repetitions, medians (min–max), ms; pyfleet ${ROOT}, Python ${PYTHON}; server logs in ${LOGS}\n`)
  console.log('| body sent to echo (or text.stats) | slowest /health, event loop (OFFLOAD_MIN_BYTES=0) | slowest /health, offload thread (default) | event loop ÷ thread | the call itself, event loop | the call itself, thread |')
  console.log('|---|---:|---:|---:|---:|---:|')
  for (const row of rows) console.log(row)
} finally {
  for (const server of servers) await stopTree(server.child)
}
