// RELOAD_ON_CHANGE=1, for writing tasks: the workers are reloaded (rolling, as on SIGHUP)
// once a .py file has been saved, so an edit is served without a restart. It looks at
// the built-in tasks and under each PYTHONPATH entry (task modules and the helpers they
// import); code that fails to import leaves the workers on the code before.
//
// It polls (the files' size and mtime, twice a second) rather than use fs.watch: Node 20's
// recursive watch on Linux loses a file once an editor saves by renaming a temporary file
// over it, and a watch on a directory that is deleted and made again (a branch switch)
// ends without a word. A development setting can afford the stat calls; it needs to be right.

import { readdir, realpath, stat } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { reloadWorkers } from '../reload.js'
import { PROJECT_ROOT, WORKERS_DIR } from '../project-paths.js'

/** How often the sources are looked at; a reload follows the first look that finds nothing new since a change. */
const POLL_MS = 500
/** More than a project holds: a PYTHONPATH entry that is a whole tree is looked at this far only (files and directories). */
const MAX_ENTRIES = 20_000
/** Directories that hold no task code, and may hold a great many files. */
const SKIPPED = new Set(['__pycache__', 'node_modules', 'site-packages'])

/** A directory looked at, recursively. */
export interface Source { dir: string }

async function kindOf (path: string): Promise<'dir' | 'file' | undefined> {
  return await stat(path).then((found) => found.isDirectory() ? 'dir' : found.isFile() ? 'file' : undefined, () => undefined)
}

/**
 * Where to look: the built-in tasks, and each PYTHONPATH entry (a relative one read from
 * the workers' directory, as Python reads it). `missing` names the TASK_MODULES packages
 * found under none of them (installed elsewhere): their changes are not seen.
 */
async function taskSources (config: Config): Promise<{ sources: Source[], missing: string[] }> {
  const sources: Source[] = [{ dir: join(WORKERS_DIR, 'pyfleet_tasks') }]
  const path = (config.workerEnv.PYTHONPATH ?? '').split(':').filter((entry) => entry !== '')
    .map((entry) => isAbsolute(entry) ? entry : resolve(PROJECT_ROOT, entry))
  for (const entry of new Set(path)) if (await kindOf(entry) === 'dir') sources.push({ dir: entry })
  const missing: string[] = []
  for (const top of new Set(config.taskModules.map((name) => name.split('.')[0]))) {
    if (top === 'pyfleet_tasks') continue // the built-in tasks, looked at already
    let found = false
    for (const entry of path) {
      if (await kindOf(join(entry, top)) === 'dir' || await kindOf(join(entry, `${top}.py`)) === 'file') { found = true; break }
    }
    if (!found) missing.push(top)
  }
  return { sources, missing }
}

/** Every .py file of the sources with its size and mtime (bytecode in __pycache__ is not source). */
async function fingerprint (sources: readonly Source[]): Promise<{ files: Map<string, string>, truncated: boolean }> {
  const files = new Map<string, string>()
  let truncated = false
  const note = async (path: string): Promise<void> => {
    const found = await stat(path).catch(() => undefined)
    files.set(path, found === undefined ? 'missing' : `${found.size} ${found.mtimeMs}`)
  }
  let seen = 0
  /** Directories walked, by real path: a symlink may lead back up, or to one walked already. */
  const walked = new Set<string>()
  const walk = async (dir: string): Promise<void> => {
    const real = await realpath(dir).catch(() => dir)
    if (walked.has(real)) return
    walked.add(real)
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined)
    if (entries === undefined) { files.set(dir, 'missing'); return }
    for (const entry of entries) {
      if (++seen > MAX_ENTRIES) { truncated = true; return }
      if (entry.name.startsWith('.') || SKIPPED.has(entry.name)) continue
      const path = join(dir, entry.name)
      // A symlinked package too (a package linked in from its repository): Python imports through
      // it, and the start-up check found it, but its edits went unseen and nothing said so.
      if (entry.isDirectory() || (entry.isSymbolicLink() && await kindOf(path) === 'dir')) await walk(path)
      else if (entry.name.endsWith('.py')) await note(path)
    }
  }
  for (const source of sources) await walk(source.dir)
  return { files, truncated }
}

/** The paths whose fingerprint differs, added or gone. */
function changes (before: Map<string, string>, after: Map<string, string>): string[] {
  const changed = [...after].filter(([path, print]) => before.get(path) !== print).map(([path]) => path)
  return [...changed, ...[...before.keys()].filter((path) => !after.has(path))]
}

async function reloadOnChange (fastify: FastifyInstance, { config }: { config: Config }): Promise<void> {
  if (!config.reloadOnChange) return
  const { sources, missing } = await taskSources(config)
  for (const top of missing) fastify.log.warn({ package: top }, `RELOAD_ON_CHANGE: ${top} (TASK_MODULES) is not found on PYTHONPATH, so its changes are not seen; SIGHUP reloads it`)
  let seen = (await fingerprint(sources)).files
  let warnedTruncated = false
  /** Paths changed since the last reload began. */
  const changed = new Set<string>()
  let settling = false
  let reloading = false
  let closed = false
  let timer: NodeJS.Timeout | undefined

  const reload = (): void => {
    if (closed || fastify.pool.isDraining || fastify.stopAnnounced) return
    reloading = true
    fastify.log.info({ files: [...changed] }, 'task sources changed: reloading the workers (RELOAD_ON_CHANGE)')
    changed.clear()
    reloadWorkers(fastify, 'change').catch(() => { /* logged by reloadWorkers; the workers keep the code before */ }).finally(() => { reloading = false })
  }
  const look = async (): Promise<void> => {
    const now = await fingerprint(sources)
    if (now.truncated && !warnedTruncated) {
      warnedTruncated = true
      fastify.log.warn({ maxEntries: MAX_ENTRIES }, `RELOAD_ON_CHANGE looks at the first ${MAX_ENTRIES} files and directories only: a PYTHONPATH entry holds more (a whole tree?); point PYTHONPATH at your task code`)
    }
    const found = changes(seen, now.files)
    seen = now.files
    if (found.length > 0) {
      // Still being written (an editor saves in steps, a checkout writes many files): wait for a look that finds nothing new.
      for (const path of found) changed.add(path)
      settling = true
    } else if (settling && !reloading) {
      settling = false
      reload()
    }
  }
  const poll = (): void => {
    timer = setTimeout(() => { look().catch((error: unknown) => { fastify.log.warn({ err: error }, 'RELOAD_ON_CHANGE could not look at the task sources') }).finally(() => { if (!closed) poll() }) }, POLL_MS)
    timer.unref()
  }
  poll()
  fastify.log.info({ watching: sources.map((source) => source.dir) }, 'the workers reload when a task source changes (RELOAD_ON_CHANGE)')
  fastify.addHook('onClose', async () => {
    closed = true
    clearTimeout(timer)
  })
}

export default fp(reloadOnChange, { name: 'pyfleet-reload-on-change', fastify: '5.x', dependencies: ['pyfleet-worker-pool'] })
