// How many processes the kernel's out-of-memory killer has killed since boot, from
// /proc/vmstat's `oom_kill` (Linux 4.13 and later; every OOM kill counts there, a container's
// memory limit included, and the file is not namespaced, so a container reads it too).
// A worker killed by a SIGKILL pyfleet did not send is told apart with it: the OOM killer if
// the count moved while the worker lived, someone's `kill -9` if it did not.

import { readFile } from 'node:fs/promises'

const VMSTAT = '/proc/vmstat'
/**
 * How long a worker's exit waits for the readings (only when a SIGKILL came from elsewhere:
 * the rare case), before its verdict is "unknown". 100 ms was too short on a loaded machine:
 * the thread pool that reads files was busy, and a CI run logged a kill -9 as a possible OOM.
 */
export const OOM_READ_TIMEOUT_MS = 500

/** The count, or undefined where it cannot be read (not Linux, an old kernel, no /proc). */
export async function readOomKillCount (path = VMSTAT): Promise<number | undefined> {
  const text = await readFile(path, 'latin1').catch(() => undefined)
  if (text === undefined) return undefined
  const match = /^oom_kill (\d+)$/m.exec(text)
  return match === null ? undefined : Number(match[1])
}

/**
 * The count at a worker's start and at its exit, as read (the one at start was begun then, and
 * has had the worker's life to finish), or undefined ones past OOM_READ_TIMEOUT_MS.
 */
export async function oomKillReadings (atStart: Promise<number | undefined>, path = VMSTAT): Promise<[number | undefined, number | undefined]> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const gaveUp = new Promise<[undefined, undefined]>((resolve) => { timer = setTimeout(() => { resolve([undefined, undefined]) }, OOM_READ_TIMEOUT_MS) })
  try {
    return await Promise.race([Promise.all([atStart, readOomKillCount(path)]), gaveUp])
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
