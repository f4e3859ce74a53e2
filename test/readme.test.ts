// The reference tables kept in step with the code: every module of src/ and
// workers/pyfleet/ is named in docs/architecture.md's layout table (and every row it has
// names something that exists), and every setting config.ts reads is in README's
// one-line configuration table and in docs/configuration.md's full one.
// (The error table: errors.test.ts. The built-in tasks' table: builtin-tasks.test.ts.)

import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readmeRows } from './helpers/readme.js'
import { ROOT } from './helpers/server.js'

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

t.test('every file and directory the layout table has a row for exists (a removed one does not stay named)', async (t) => {
  const text = await layout
  const rows = [...text.matchAll(/\n\| `((?:src|workers|test|bench|deploy|scripts|docs)\/[^`]*)` \|/g)].map((m) => m[1])
  t.ok(rows.length > 15, `${rows.length} rows`)
  for (const path of rows) {
    const found = await readdir(join(ROOT, path.endsWith('/') ? path : path.slice(0, path.lastIndexOf('/') + 1))).then((names) => path.endsWith('/') || names.includes(path.slice(path.lastIndexOf('/') + 1)), () => false)
    t.ok(found, `${path} exists`)
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
