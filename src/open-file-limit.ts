// How many client connections the process's open-file limit leaves room for: the limit
// as the process has it once started, less the files the server keeps for itself and its
// workers. Setting the cap and logging it is plugins/connection-limit.ts's job.

import { readFile } from 'node:fs/promises'

/**
 * Files the server may hold open besides client connections and its workers' files.
 * Measured (Node 20.20, `node dist/server.js`, idle): 20 to 21: stdio (3), the event loops
 * of libuv and of V8's threads (epoll, eventfds, signal and wake-up pipes: 14), /dev/null
 * (1 or 2: libuv keeps one to shed connections at EMFILE), the listening socket, and one
 * inherited from the shell that started it. Kept for beyond that: more inherited files,
 * a second listening socket, a log file, name lookups, the synchronous /proc reads of a
 * scrape and of under-pressure (one at a time, but Node exits when under-pressure's finds
 * no file free), a worker being spawned (5 more while spawn() runs), and the connection
 * Node accepts only to close it at the cap. 64 is three times what was measured.
 */
const SERVER_FILES = 64
/**
 * Per worker: its stdin, stdout and stderr (3), and its /proc status, kept open for RSS readings (worker-process.ts),
 * twice over: recycling and reloads start a spare beside the worker it replaces, so for a
 * moment the pool can be twice POOL_SIZE. Measured idle with POOL_SIZE 1, 4 and 16: 23,
 * 32 and 68 files, 20 + 3 per worker.
 */
const FILES_PER_WORKER = 2 * (3 + 1)

/**
 * Files kept for the server and its workers, and `probeFiles` for the PROBE_PORT listener
 * (its socket and its own cap on connections; 0 without one): an open-file limit less this
 * is what client connections may use.
 */
export function reservedFiles (poolSize: number, probeFiles = 0): number {
  return SERVER_FILES + FILES_PER_WORKER * poolSize + probeFiles
}

/**
 * The soft limit on open files from /proc/self/limits' text ("Max open files", the first
 * figure), or undefined where there is none or it is unlimited.
 */
export function parseOpenFileLimit (limits: string): number | undefined {
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1]
  if (soft === undefined || !/^\d+$/.test(soft)) return undefined // "unlimited", or not a number
  const value = Number(soft)
  return Number.isSafeInteger(value) ? value : undefined
}

/**
 * The process's soft limit on open files, as it is now (Linux), or undefined where it
 * cannot be read (no /proc) or is unlimited. Read at start, not taken from `ulimit -n`
 * before it: Node 20 raises its soft limit to the hard one as it starts.
 */
export async function readOpenFileLimit (): Promise<number | undefined> {
  try {
    return parseOpenFileLimit(await readFile('/proc/self/limits', 'utf8'))
  } catch {
    return undefined
  }
}

/** Why a cap was lowered: the open-file limit, and the files kept from it for the server. */
export interface OpenFileShare {
  openFileLimit: number
  reservedFiles: number
}

export interface ConnectionCap {
  /** The cap in effect; 0: none. */
  maxConnections: number
  /** MAX_CONNECTIONS as configured (0: no cap of its own). */
  configured: number
  /** Set when the open-file limit lowered the cap. */
  lowered?: OpenFileShare
}

/**
 * MAX_CONNECTIONS, lowered to what the open-file limit leaves once the server's own files
 * are kept; MAX_CONNECTIONS=0 (no cap of its own) too, since past the limit Node exits
 * (EMFILE). Never below 1: Node 21 and later read a cap of 0 as "close every connection",
 * and a limit that leaves nothing is still better served one connection at a time than
 * refused at start. An unknown or unlimited limit leaves MAX_CONNECTIONS as it is.
 */
export function connectionCap (configured: number, poolSize: number, openFileLimit: number | undefined, probeFiles = 0): ConnectionCap {
  if (openFileLimit === undefined) return { maxConnections: configured, configured }
  const reserved = reservedFiles(poolSize, probeFiles)
  const room = Math.max(1, openFileLimit - reserved)
  if (configured !== 0 && configured <= room) return { maxConnections: configured, configured }
  return { maxConnections: room, configured, lowered: { openFileLimit, reservedFiles: reserved } }
}
