#!/usr/bin/env node
// Run by tap before any test file (package.json "tap.before"): builds dist/ when a file
// under src/ is newer than the last build. Some e2e tests start dist/server.js as a
// process (startup, shutdown, task-children): with a stale dist/ they would test old code
// and pass or fail for the wrong reason. `npx tap test/x.test.ts` alone is then safe too.

/* c8 ignore start */ // tap measures coverage of this script too; pyfleet measures none
import { spawnSync } from 'node:child_process'
import { readdir, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const built = await stat(join(root, 'dist', 'server.js')).then((s) => s.mtimeMs, () => -Infinity)
// TypeScript sources only: an editor's lock file or a half-saved temporary one may vanish under us.
const sources = [join(root, 'tsconfig.json'), ...(await readdir(join(root, 'src'), { recursive: true })).filter((file) => file.endsWith('.ts')).map((file) => join(root, 'src', file))]
const newest = Math.max(...await Promise.all(sources.map(async (file) => await stat(file).then((s) => s.mtimeMs, () => -Infinity))))
if (newest > built) {
  console.error('dist/ is older than src/: building it')
  // --noEmitOnError: a failed build leaves dist/ as old as it was, so the next run tries (and says) again.
  const { status } = spawnSync('npx', ['tsc', '-p', '.', '--noEmitOnError'], { cwd: root, stdio: 'inherit' })
  process.exit(status ?? 1)
}
/* c8 ignore stop */
