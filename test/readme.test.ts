// The reference tables kept in step with the code: every module of src/ and
// workers/pyfleet/ is named in docs/architecture.md's layout table (and every row it has
// names something that exists, down to the modules a directory's row names), every
// setting config.ts reads is in README's one-line configuration table and in
// docs/configuration.md's full one, and every metric /metrics serves is in README's
// Monitoring table (and every metric it has a row for is served).
// (The error table: errors.test.ts. The built-in tasks' table: builtin-tasks.test.ts.)

import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { readmeRows } from './helpers/readme.js'
import { ROOT, callTask, startServer } from './helpers/server.js'

const layout = readFile(join(ROOT, 'docs', 'architecture.md'), 'utf8')

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

t.test('every module under src/ and workers/pyfleet/ is in the layout table', async (t) => {
  const text = await layout
  const sources = (await readdir(join(ROOT, 'src'), { recursive: true })).filter((file) => file.endsWith('.ts')).map((file) => `src/${file.split('\\').join('/')}`)
  const runtime = (await readdir(join(ROOT, 'workers', 'pyfleet'))).filter((file) => file.endsWith('.py') && file !== '__init__.py').map((file) => `workers/pyfleet/${file}`)
  t.ok(sources.length > 40 && runtime.length > 10, `${sources.length} + ${runtime.length} modules`)
  for (const path of [...sources, ...runtime].sort()) {
    const dir = path.slice(0, path.lastIndexOf('/') + 1)
    const name = path.slice(dir.length).replace(/\.(ts|py)$/, '')
    if (dir === 'src/') {
      t.match(text, new RegExp(`\\n\\| \`${escape(path)}\` \\|`), `${path} has its own row`)
    } else {
      t.match(text, new RegExp(`\\n\\| \`${escape(dir)}\` \\|[^\\n]*\`${escape(name)}\``), `${path} is named in the ${dir} row`)
    }
  }
})

/** docs/architecture.md's sections with one row per file, and the directory each describes. */
const FILE_SECTIONS: Record<string, string> = {
  'The pool': 'src/pool',
  'The routes': 'src/routes',
  'The offload thread': 'src/offload',
  'The Python runtime': 'workers/pyfleet'
}

t.test('the sections of one row per file have a row for each file of their directory, and no other', async (t) => {
  const text = await layout
  for (const [heading, dir] of Object.entries(FILE_SECTIONS)) {
    const start = text.indexOf(`\n## ${heading}\n`)
    t.ok(start >= 0, `a section "${heading}"`)
    const section = text.slice(start + 1).split(/\n## /)[0]
    const rows = [...section.matchAll(/\n\| `([^`/]+\.(?:ts|py))` \|/g)].map((m) => m[1]).sort()
    const files = (await readdir(join(ROOT, dir))).filter((file) => /\.(ts|py)$/.test(file) && file !== '__init__.py').sort()
    t.same(rows, files, `"${heading}" has one row per file of ${dir}/`)
  }
})

t.test('every file and directory the layout table has a row for exists (a removed one does not stay named)', async (t) => {
  const text = await layout
  const rows = [...text.matchAll(/\n\| `((?:src|workers|test|bench|deploy|scripts|docs)\/[^`]*)` \|/g)].map((m) => m[1])
  t.ok(rows.length > 15, `${rows.length} rows`)
  for (const path of rows) {
    const found = await readdir(join(ROOT, path.endsWith('/') ? path : path.slice(0, path.lastIndexOf('/') + 1))).then((names) => path.endsWith('/') || names.includes(path.slice(path.lastIndexOf('/') + 1)), () => false)
    t.ok(found, `${path} exists`)
  }
})

/** The code spans of a table cell outside parentheses: a directory row's module names, not the code its descriptions mention. */
function topLevelCode (cell: string, row: string): string[] {
  const names: string[] = []
  let depth = 0
  // A code span is one token, so that parentheses inside it (`request_id()`) are not counted.
  for (const [token] of cell.matchAll(/`[^`]*`|[()]/g)) {
    if (token === '(') depth++
    else if (token === ')') depth--
    else if (depth === 0) names.push(token.slice(1, -1))
  }
  // Unbalanced, the rest of the row would be read as description and its modules go unchecked.
  if (depth !== 0) throw new Error(`the ${row} row of docs/architecture.md has a parenthesis left open, or one closed that was not opened`)
  return names
}

// The test above has every module named in its directory's row; this one the other way: a module a
// row names is a file of that directory (a renamed or removed one does not stay named). A row names
// its modules outside parentheses and describes them inside, where other code is mentioned too
// (`RELOAD_ON_CHANGE`, `request_id()`, `mytasks/shop.py, line 12`): those are not modules.
t.test('every module a directory row of the layout table names is a file in that directory', async (t) => {
  const text = await layout
  const rows = [...text.matchAll(/\n\| `((?:src|workers)\/[^`]*\/)` \|([^\n]*)/g)].map((m) => ({ dir: m[1], names: topLevelCode(m[2], m[1]) }))
  t.ok(rows.filter(({ names }) => names.length > 0).length >= 5, `${rows.length} directory rows`)
  for (const { dir, names } of rows) {
    const extension = dir.startsWith('src/') ? '.ts' : '.py'
    const files = await readdir(join(ROOT, dir))
    for (const name of names) t.ok(files.includes(`${name}${extension}`), `${dir}${name}${extension} exists (named in the ${dir} row of docs/architecture.md)`)
  }
})

t.test('every setting config.ts reads is in README\'s one-line table and in docs/configuration.md\'s full one', async (t) => {
  const source = await readFile(join(ROOT, 'src', 'config.ts'), 'utf8')
  const names = new Set([...source.matchAll(/\benv\.([A-Z][A-Z0-9_]+)|\(env, '([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1] ?? m[2]))
  t.ok(names.size >= 25, `${names.size} settings read`)
  const table = await readmeRows('## Configuration')
  const full = (await readFile(join(ROOT, 'docs', 'configuration.md'), 'utf8')).split('\n').filter((line) => line.startsWith('| `'))
  for (const name of names) {
    t.ok(table.some((row) => row.split('|')[1].includes(`\`${name}\``)), `${name} has a row in README`)
    t.ok(full.some((row) => row.split('|')[1].includes(`\`${name}\``)), `${name} has a row in docs/configuration.md`)
  }
})

t.test('every metric /metrics serves has a row in README\'s Monitoring table, and every row names a metric served', async (t) => {
  // prom-client's default process metrics are README's prose ("Node's default process metrics"), not rows:
  // the set is prom-client's own, read from a registry of them alone, so an upgrade that adds one does not fail here.
  const defaults = new Registry()
  collectDefaultMetrics({ register: defaults })
  const processMetrics = new Set((await defaults.getMetricsAsJSON()).map(({ name }) => name))
  const server = await startServer(t, { POOL_SIZE: '1' })
  // prom-client writes every registered metric's # TYPE line from the start, series or not, so no
  // metric needs its event here (none is allowed to be missing); one call anyway, so that a metric
  // registered only at a first call would be seen too.
  t.equal((await callTask(server.url, 'echo', { n: 1 })).status, 200)
  const exposition = await (await fetch(`${server.url}/metrics`)).text()
  // A histogram's _bucket, _sum and _count series come under its one # TYPE line, by its base name.
  const served = [...exposition.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]).filter((name) => !processMetrics.has(name))
  t.ok(served.length > 25, `${served.length} metrics served`)
  // A row's first cell names one metric, or several of one type (the pressure gauges).
  const rows = (await readmeRows('## Monitoring')).flatMap((row) => [...row.split('|')[1].matchAll(/`([a-z_:]+)`/g)].map((m) => m[1]))
  t.ok(rows.length > 25, `${rows.length} metrics in README's rows`)
  for (const name of served.filter((name) => !rows.includes(name)).sort()) t.fail(`add a row for ${name} to README's Monitoring table (/metrics serves it)`)
  for (const name of rows.filter((name) => !served.includes(name)).sort()) t.fail(`remove ${name}'s row from README's Monitoring table, or fix its name: /metrics does not serve it`)
})
