// The environment the bench hands its servers: the shell's, without pyfleet's settings.
// POOL_SIZE=8 or MAX_CALLS_PER_WORKER left exported in a shell changed pyfleet (and
// POOL_SIZE the proto and pipe baselines, which read it too) without a word, and a run said
// to use the default settings did not. A bench sets what it compares itself; an operator's
// own settings go in with --env (run.mjs), where the report records them.

import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

/**
 * `env` without pyfleet's settings (dist/setting-names.js: npm run build first), and the names
 * it left out. PYTHON is left out too: each bench reads it once, for every design alike.
 */
export async function withoutPyfleetSettings (root, env = process.env) {
  const { SETTING_NAMES } = await import(pathToFileURL(join(root, 'dist', 'setting-names.js')).href)
  const names = new Set(SETTING_NAMES)
  const ignored = Object.keys(env).filter((name) => names.has(name) && name !== 'PYTHON')
  return { env: Object.fromEntries(Object.entries(env).filter(([name]) => !names.has(name))), ignored }
}

/** The line a bench prints for the settings it left out, or undefined. */
export function ignoredNote (ignored) {
  return ignored.length === 0 ? undefined : `pyfleet settings in the environment are left out of every server (pass them with --env): ${ignored.join(', ')}`
}
