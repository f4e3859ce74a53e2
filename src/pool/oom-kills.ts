// How many processes the kernel's out-of-memory killer has killed since boot, from
// /proc/vmstat's `oom_kill` (Linux 4.13 and later; every OOM kill counts there, a container's
// memory limit included, and the file is not namespaced, so a container reads it too).
// A worker killed by a SIGKILL pyfleet did not send is told apart with it: the OOM killer if
// the count moved while the worker lived, someone's `kill -9` if it did not.

import { readFile } from 'node:fs/promises'

const VMSTAT = '/proc/vmstat'
/**
 * How long a reading may take before it is given up. A worker's exit waits for one reading
 * (and only when a SIGKILL came from elsewhere): a busy thread pool must not hold it long.
 */
export const OOM_READ_TIMEOUT_MS = 100

/** The count, or undefined where it cannot be read (not Linux, an old kernel, no /proc), or past the timeout. */
export async function readOomKillCount (path = VMSTAT): Promise<number | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const gaveUp = new Promise<undefined>((resolve) => { timer = setTimeout(() => { resolve(undefined) }, OOM_READ_TIMEOUT_MS) })
  try {
    const text = await Promise.race([readFile(path, 'latin1').catch(() => undefined), gaveUp])
    if (text === undefined) return undefined
    const match = /^oom_kill (\d+)$/m.exec(text)
    return match === null ? undefined : Number(match[1])
  } finally {
    clearTimeout(timer)
  }
}

/** Who most likely sent a SIGKILL pyfleet did not send (the label of pyfleet_worker_killed_total). */
export const KILLERS = ['oom_killer', 'someone', 'unknown'] as const
export type Killer = typeof KILLERS[number]

/** The killer the OOM kills a worker's exit accounts for point at (see OomLedger). */
export function killerOf (oomKills: number | undefined): Killer {
  return oomKills === undefined ? 'unknown' : oomKills > 0 ? 'oom_killer' : 'someone'
}

/**
 * The OOM kills already put down to a worker's exit, so that one kill is never put down to two:
 * a worker killed with kill -9 after a sibling's OOM kill, in that sibling's lifetime, was blamed
 * on the OOM killer too (a review in a container, where it is the usual case).
 */
export class OomLedger {
  /** The count up to which the kills have been put down to exits (undefined: none yet). */
  #accountedUpTo: number | undefined

  /**
   * Once a SIGKILL pyfleet did not send has ended a worker: how many of the OOM kills the kernel
   * made while it lived no other worker's exit accounts for (0: not the OOM killer, certainly;
   * more: most likely it, though the count is the machine's, and one may have been another
   * process's), or undefined where either reading is missing. A kill it returns is put down to
   * this exit.
   */
  unaccounted (atStart: number | undefined, atExit: number | undefined): number | undefined {
    if (atStart === undefined || atExit === undefined) return undefined
    const from = Math.max(atStart, this.#accountedUpTo ?? atStart)
    const kills = Math.max(0, atExit - from)
    if (kills > 0) this.#accountedUpTo = from + 1
    return kills
  }
}

/** The ledger of this process's workers. */
export const oomLedger = new OomLedger()
