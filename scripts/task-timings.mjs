#!/usr/bin/env node
// Median run time (server-timing "run") of each built-in task on a typical
// input, over 15 calls each, against a running server (default localhost:5000).
// Usage: node scripts/task-timings.mjs [http://host:port]

import { createHash } from 'node:crypto'

const base = process.argv[2] ?? 'http://localhost:5000'
const rows = Array.from({ length: 1000 }, (_, i) => `${i},user${i},${20 + (i % 50)},${(i * 1.37).toFixed(2)},2024-01-${String(1 + (i % 28)).padStart(2, '0')},${i % 2 === 0}`)
const items = Array.from({ length: 1000 }, (_, i) => `<item id="${i}"><title>Item ${i}</title><price currency="EUR">${i}.99</price><tag>a</tag><tag>b</tag></item>`)
const words = 'the quick brown fox jumps over the lazy dog while a cat watches from the old stone wall'.split(' ')
const text = Array.from({ length: 1500 }, (_, i) => words[i % words.length] + ((i % 12) === 11 ? '.' : '')).join(' ')
const xs = Array.from({ length: 1000 }, (_, i) => i / 10)
const cases = [
  ['echo', 'application/json', JSON.stringify({ hello: 'world', list: [1, 2, 3] }), '100-byte JSON'],
  ['xml.import', 'application/xml', `<catalog>${items.join('')}</catalog>`, '1,000 records, 110 KB'],
  ['csv.profile', 'text/csv', `id,name,age,score,joined,active\n${rows.join('\n')}`, '1,000 rows x 6 columns, 40 KB'],
  ['text.stats', 'text/plain', text, '1,500 words, 8 KB'],
  ['stats.describe', 'application/json', JSON.stringify({ values: Array.from({ length: 10000 }, (_, i) => Math.sin(i) * 100) }), '10,000 values'],
  ['stats.regression', 'application/json', JSON.stringify({ x: xs, y: xs.map((x) => 1 + 2 * x - 0.1 * x * x + Math.sin(x)), degree: 3 }), '1,000 points, degree 3'],
  ['hash.digest?algorithms=sha256,md5', 'application/octet-stream', createHash('sha512').update('x').digest().toString('hex').repeat(8192), '1 MB, sha256 + md5']
]
const median = (values) => { const s = [...values].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }
console.log('| task | input | median run (ms) | median end-to-end (ms) |\n|---|---|---|---|')
for (const [task, type, body, label] of cases) {
  const runs = []
  const totals = []
  for (let i = 0; i < 15; i++) {
    const started = performance.now()
    const response = await fetch(`${base}/api/tasks/${task}`, { method: 'POST', headers: { 'content-type': type }, body })
    await response.arrayBuffer()
    totals.push(performance.now() - started)
    if (response.status !== 200) throw new Error(`${task}: ${response.status}`)
    runs.push(Number(/run;dur=([\d.]+)/.exec(response.headers.get('server-timing'))[1]))
  }
  console.log(`| ${task.split('?')[0]} | ${label} | ${median(runs).toFixed(2)} | ${median(totals).toFixed(2)} |`)
}
