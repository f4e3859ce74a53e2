#!/usr/bin/env node
// Prints "N passed, N failed" for .ci/run: top-level test points of every tap
// result file (.tap/test-results) plus the Python suite (.tap/python-results.json).
// A test file that ended without a plan (crashed, timed out) counts as a failure.

import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

const root = process.argv[2] ?? '.'
let passed = 0
let failed = 0

async function * tapFiles (dir) {
  let entries
  try { entries = await readdir(dir, { withFileTypes: true }) } catch { return }
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield * tapFiles(path)
    else if (entry.name.endsWith('.tap')) yield path
  }
}

for await (const file of tapFiles(join(root, '.tap', 'test-results'))) {
  const text = await readFile(file, 'utf8')
  const lines = text.split('\n')
  passed += lines.filter((l) => /^ok \d+/.test(l)).length
  failed += lines.filter((l) => /^not ok \d+/.test(l)).length
  if (!lines.some((l) => /^1\.\.\d+/.test(l))) {
    process.stderr.write(`${file}: no plan (the test file crashed or timed out)\n`)
    failed++
  }
}
try {
  const python = JSON.parse(await readFile(join(root, '.tap', 'python-results.json'), 'utf8'))
  passed += python.passed
  failed += python.failed
} catch {
  process.stderr.write('no Python results: the Python suite did not run\n')
  failed++
}
process.stdout.write(`${passed} passed, ${failed} failed\n`)
