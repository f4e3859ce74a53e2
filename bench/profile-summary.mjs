// Summarises a V8 .cpuprofile (node --cpu-prof) by self time: the top
// functions, and the same time grouped by where the code lives (pyfleet's
// dist/, each npm package, Node internals, GC, idle).
//
//   node bench/profile-summary.mjs bench/results/profiles/pyfleet/CPU.*.cpuprofile [--top 40]

import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '40' } } })

function place (url) {
  if (url === '') return '(native/V8)'
  if (url.startsWith('node:')) return 'node internals'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg !== null) return pkg[1]
  const dist = /\/dist\/(.+)$/.exec(url)
  if (dist !== null) return `pyfleet ${dist[1]}`
  return url.replace(/^file:\/\//, '')
}

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map()
  // timeDeltas[i] is the time before samples[i]; attribute it to that sample's node.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  let total = 0
  let idle = 0
  const byFunction = new Map()
  const byPlace = new Map()
  for (const [id, us] of self) {
    const { callFrame } = byId.get(id)
    total += us
    if (callFrame.functionName === '(idle)') { idle += us; continue }
    const name = callFrame.functionName || '(anonymous)'
    const where = place(callFrame.url)
    const key = `${name}  ${where}${callFrame.url ? `:${callFrame.lineNumber + 1}` : ''}`
    byFunction.set(key, (byFunction.get(key) ?? 0) + us)
    const group = name.startsWith('(') ? name : where
    byPlace.set(group, (byPlace.get(group) ?? 0) + us)
  }
  const busy = total - idle
  const pct = (us) => `${(us / busy * 100).toFixed(1).padStart(5)} %`
  console.log(`${file}\n  ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (${(idle / total * 100).toFixed(1)} % idle); shares below are of busy time\n`)
  console.log('  by place:')
  for (const [k, v] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`  ${pct(v)}  ${k}`)
  console.log(`\n  top ${values.top} functions by self time:`)
  for (const [k, v] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`  ${pct(v)}  ${k}`)
  console.log()
}
