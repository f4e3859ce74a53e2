// The environment variables pyfleet reads, and which of those set look like a misspelling
// of one: a mistyped setting (POOLSIZE, TASK_TIMEOUT, pool_size) is otherwise ignored
// without a word, and the server runs on a default its operator thought was changed.

import { distance } from './edit-distance.js'

/** Every setting config.ts reads, and PYTHONPATH, which the pool extends (README, "Configuration"). */
export const SETTING_NAMES: readonly string[] = [
  'HOST', 'PORT', 'PROBE_PORT', 'PYTHON', 'PYTHONPATH', 'POOL_SIZE', 'QUEUE_LIMIT', 'QUEUE_LIMIT_BYTES',
  'RECEIVE_LIMIT_BYTES', 'OFFLOAD_MIN_BYTES', 'QUEUE_TIMEOUT_MS', 'TASK_TIMEOUT_MS',
  'TASK_CONCURRENCY', 'TASK_TIMEOUTS', 'MAX_CALLS_PER_WORKER', 'MAX_WORKER_RSS_MB',
  'BODY_LIMIT_BYTES', 'REQUEST_BODY_TIMEOUT_MS', 'KEEP_ALIVE_TIMEOUT_MS', 'RESPONSE_STALL_TIMEOUT_MS', 'MAX_CONNECTIONS',
  'MAX_FRAME_BYTES', 'TASK_MODULES', 'DIAG_TASKS', 'ADMIN_TOKEN', 'SHUTDOWN_DELAY_MS', 'SHUTDOWN_GRACE_MS',
  'WORKER_START_TIMEOUT_MS', 'WORKER_STOP_GRACE_MS', 'MAX_EVENT_LOOP_DELAY_MS',
  'MAX_HEAP_USED_BYTES', 'MAX_RSS_BYTES', 'WORKER_SCHED_BATCH', 'SHED_LATE_CALLS', 'RELOAD_ON_CHANGE', 'VALIDATE_RESULTS', 'LOG_LEVEL'
]

/** A variable that is set, is not a setting, and looks like `meant`. */
export interface Lookalike {
  readonly name: string
  readonly meant: readonly string[]
}

const KNOWN = new Set(SETTING_NAMES)
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** The units settings' names end with: BODY_LIMIT is BODY_LIMIT_BYTES without its unit. */
const UNITS = ['_MS', '_BYTES', '_MB']

/**
 * A setting's name with a number or an S after it (PORT0, PORTS: Marathon sets those in
 * every container), or none of it: names other software sets, not typos.
 */
function isDerived (upper: string): boolean {
  const stem = upper.replace(/(\d+|S)$/, '')
  return stem !== upper && KNOWN.has(stem)
}

/**
 * The settings `name` may have meant: the same name in another case, one a typo or two
 * away (one for short names: PATH is not PORT), or one with its unit left off (BODY_LIMIT).
 */
function settingsLike (name: string): string[] {
  const upper = name.toUpperCase()
  if (KNOWN.has(upper)) return [upper]
  if (upper.length < 4 || isDerived(upper)) return []
  const limit = upper.length >= 8 ? 2 : 1
  return SETTING_NAMES.filter((setting) => distance(upper, setting, limit) <= limit ||
    UNITS.some((unit) => setting === `${upper}${unit}`))
}

/** The variables of `env` that are not settings but look like one, for a warning at start. */
export function lookalikeSettings (env: Readonly<Record<string, string | undefined>>): Lookalike[] {
  const found: Lookalike[] = []
  for (const name of Object.keys(env)) {
    if (KNOWN.has(name) || !VARIABLE_NAME.test(name)) continue
    const meant = settingsLike(name)
    if (meant.length > 0) found.push({ name, meant })
  }
  return found
}

/** The warning's words: "POOLSIZE is not a pyfleet setting, and is ignored: did you mean POOL_SIZE?" */
export function lookalikeMessage ({ name, meant }: Lookalike): string {
  const options = meant.length === 1 ? meant[0] : `${meant.slice(0, -1).join(', ')} or ${meant[meant.length - 1]}`
  return `${name} is not a pyfleet setting, and is ignored: did you mean ${options}?`
}
