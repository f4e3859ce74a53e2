// A process or thread that could not be started because the limit on them is reached
// (EAGAIN from fork or pthread_create: a container's --pids-limit, a cgroup's pids.max,
// ulimit -u) or memory is short (ENOMEM). Node's own message is the bare code ("spawn
// /usr/bin/python3 EAGAIN"), which does not say which limit or what to do.

/**
 * What to do. pyfleet itself needs at most 12 + 2 × POOL_SIZE processes and threads: Node's
 * ~12 threads (V8's, libuv's four, the offload thread) and, per worker, the worker and the
 * spare or reload replacement that may start beside it (measured: 15 idle with POOL_SIZE=4,
 * 16 with the offload thread, 17 during a reload). Tasks' own threads and subprocesses come on top.
 */
export const PROCESS_LIMIT_FIX = 'the limit on processes and threads is reached (a container\'s --pids-limit, a cgroup\'s pids.max, ulimit -u) or memory is short: raise the limit (pyfleet needs up to 12 + 2 x POOL_SIZE, plus the threads and processes its tasks start) or free memory'

/** True for the errors that mean a process or thread could not be made for want of room. */
export function isProcessLimit (error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as NodeJS.ErrnoException).code
  // A Worker thread that cannot start says ERR_WORKER_INIT_FAILED with the errno in its message.
  return code === 'EAGAIN' || code === 'ENOMEM' || (code === 'ERR_WORKER_INIT_FAILED' && /\b(EAGAIN|ENOMEM)\b/.test(error.message))
}

/** The error's message, with what to do when it is a process limit. */
export function messageWithLimitAdvice (error: Error): string {
  return isProcessLimit(error) ? `${error.message}: ${PROCESS_LIMIT_FIX}` : error.message
}
