// RELOAD_ON_CHANGE=1, for writing tasks: the workers are reloaded (rolling, as on SIGHUP)
// a moment after a task module's .py file is saved, so an edit is served without a
// restart. It watches the built-in tasks and each TASK_MODULES package found on
// PYTHONPATH; code that fails to import leaves the workers on the code before.

import { watch, type FSWatcher } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { reloadWorkers } from '../routes/admin.js'
import { WORKERS_DIR } from './worker-pool.js'

/** Editors write a file in several steps (and several files at once): one reload after the last. */
const SETTLE_MS = 300

/** A directory to watch: a package, recursively, or the directory of a one-file module, for that file. */
interface Place { dir: string, file?: string }

async function isDirectory (path: string): Promise<boolean> {
  return await stat(path).then((found) => found.isDirectory(), () => false)
}

async function isFile (path: string): Promise<boolean> {
  return await stat(path).then((found) => found.isFile(), () => false)
}

/** Where the task modules' sources are: the built-in tasks, and each TASK_MODULES top-level package on PYTHONPATH. */
export async function taskSources (config: Config): Promise<Place[]> {
  const places: Place[] = [{ dir: join(WORKERS_DIR, 'pyfleet_tasks') }]
  const path = (config.workerEnv.PYTHONPATH ?? '').split(':').filter((entry) => entry !== '')
  for (const top of new Set(config.taskModules.map((name) => name.split('.')[0]))) {
    for (const entry of path) {
      if (await isDirectory(join(entry, top))) { places.push({ dir: join(entry, top) }); break }
      if (await isFile(join(entry, `${top}.py`))) { places.push({ dir: entry, file: `${top}.py` }); break }
    }
  }
  return places
}

/** A Python source file, not the bytecode Python writes beside it when it imports one. */
function isSource (file: string, place: Place): boolean {
  if (place.file !== undefined) return file === place.file
  return file.endsWith('.py') && !file.split('/').includes('__pycache__')
}

async function reloadOnChange (fastify: FastifyInstance, { config }: { config: Config }): Promise<void> {
  if (!config.reloadOnChange) return
  const places = await taskSources(config)
  const watchers: FSWatcher[] = []
  let settle: NodeJS.Timeout | undefined
  let reloading = false
  let changedMeanwhile = false
  const changed: string[] = []
  const reload = (): void => {
    settle = undefined
    if (reloading) { changedMeanwhile = true; return }
    reloading = true
    fastify.log.info({ files: changed.splice(0) }, 'task sources changed: reloading the workers (RELOAD_ON_CHANGE)')
    reloadWorkers(fastify, 'change').catch(() => { /* logged by reloadWorkers; the workers keep the code before */ }).finally(() => {
      reloading = false
      if (changedMeanwhile) { changedMeanwhile = false; reload() }
    })
  }
  for (const place of places) {
    try {
      const watcher = watch(place.dir, { recursive: place.file === undefined }, (_event, file) => {
        if (file === null || !isSource(file, place)) return
        const path = join(place.dir, file)
        if (!changed.includes(path)) changed.push(path)
        clearTimeout(settle)
        settle = setTimeout(reload, SETTLE_MS)
      })
      watcher.on('error', (error) => { fastify.log.warn({ dir: place.dir, err: error }, 'stopped watching task sources for changes') })
      watchers.push(watcher)
    } catch (error) {
      // Out of inotify watches (ENOSPC), say: serving goes on, without reloads on change.
      fastify.log.warn({ dir: place.dir, err: error }, 'cannot watch task sources for changes (RELOAD_ON_CHANGE)')
    }
  }
  fastify.log.info({ watching: places.map((place) => place.file === undefined ? place.dir : join(place.dir, place.file)) }, 'the workers reload when a task source changes (RELOAD_ON_CHANGE)')
  fastify.addHook('onClose', async () => {
    clearTimeout(settle)
    for (const watcher of watchers) watcher.close()
  })
}

export default fp(reloadOnChange, { name: 'pyfleet-reload-on-change', fastify: '5.x', dependencies: ['pyfleet-worker-pool'] })
