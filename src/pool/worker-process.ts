// A worker's OS process: spawned in its own process group, signalled as a group,
// cleaned up after (what a task left running), its exit told in words.
// python-worker.ts builds the protocol on top of it.

import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { open, type FileHandle } from 'node:fs/promises'
import type { Readable, Writable } from 'node:stream'
import type { SplitFrame } from './protocol.js'
import { killerOf, oomKillReadings, oomLedger, readOomKillCount, type Killer } from './oom-kills.js'
import { messageWithLimitAdvice } from '../process-limit.js'

/** /proc/<pid>/status is ~1.4 KB on Linux 6, VmRSS in its first kilobyte. */
const STATUS_READ_BYTES = 4096
/**
 * After the worker's exit, how long its pipes may stay open before they are closed. A worker
 * and its group close them at once; only a process a task started in a session of its own
 * (setsid, `start_new_session=True`), which inherited them, holds them past that, and with them
 * one or two of the server's files each, for as long as it lives: a review ran the server out
 * of files so.
 */
const STDIO_RELEASE_MS = 1_000

/**
 * What is left of a worker's group once it has exited gets SIGTERM, then SIGKILL this much
 * later. SIGKILL at once also killed multiprocessing's resource tracker, which a task's
 * SharedMemory or semaphore starts in the group: it ignores SIGTERM and, once the processes
 * holding its pipe are gone, unlinks what they leaked from /dev/shm (RAM, 64 MB in a default
 * container) within milliseconds. Killed with the rest, it left every leaked segment behind.
 */
const GROUP_KILL_GRACE_MS = 500
/**
 * How long an exit waits for the rest of the worker's stderr: its end comes a moment after the
 * exit, unless a process its task started holds the pipe (then STDIO_RELEASE_MS closes it).
 */
const STDERR_TAIL_MS = 200

/** Resolves once `stderr` has ended (everything in it read), or after `maxMs`. */
async function stderrEnd (stderr: Readable, maxMs: number): Promise<void> {
  if (stderr.readableEnded || stderr.destroyed) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, maxMs)
    function done (): void {
      clearTimeout(timer)
      stderr.off('end', done)
      stderr.off('close', done)
      resolve()
    }
    stderr.once('end', done)
    stderr.once('close', done)
  })
}

export interface ProcessOptions {
  python: string
  args: readonly string[]
  env: NodeJS.ProcessEnv
  cwd: string
}

export interface ProcessEvents {
  stdout: (chunk: Buffer) => void
  /** The protocol stream ended: the process is exiting, or a task closed it. */
  stdoutEnd: () => void
  stderr: (text: string) => void
  /** Once, after the process has exited and what was left of its group has been killed. */
  exit: (code: number | null, signal: NodeJS.Signals | null) => void
  /** The process could not be started (ENOENT, EACCES); `exit` may not follow. */
  spawnError: (error: Error) => void
  /** Its pipes were still held open STDIO_RELEASE_MS after its exit (by a process its task started in a session of its own): closed now. */
  stdioHeld?: () => void
}

export class WorkerProcess {
  readonly #child: ChildProcessByStdio<Writable, Readable, Readable>
  /** Resolves once the process has exited (never, if it could not be spawned). */
  readonly exited: Promise<void>
  /** The signals pyfleet sent: a SIGKILL that is not among them came from elsewhere (the OOM killer or a kill -9: see oom-kills.ts). */
  readonly #signalsSent = new Set<NodeJS.Signals>()
  /** /proc/<pid>/status, opened at the first reading and kept open until the process exits (see readRss). */
  #status: Promise<FileHandle | undefined> | undefined
  #hasExited = false
  /** The kernel's OOM-kill count when the worker was started (read once; see oom-kills.ts). */
  readonly #oomKillsAtStart: Promise<number | undefined>
  /** The OOM kills made while it lived that no other exit accounts for, once a SIGKILL pyfleet did not send has ended it (undefined: unknown). */
  #oomKillsUnaccounted: number | undefined
  /** Set once a SIGKILL pyfleet did not send has ended it. */
  #killedBy: Killer | undefined
  /** Whether a SIGKILL pyfleet did not send ended it, decided as it exited. */
  #foreignKill = false

  /**
   * Workers started and not yet reaped. A server that exits without stopping them (an
   * uncaught exception, a second SIGTERM, the shutdown's backstop) kills their process
   * groups on its way out: the workers themselves die by PR_SET_PDEATHSIG, but the processes
   * their tasks started would be left running (only kill -9 of the server skips this).
   * Safe from pid reuse: a worker not yet reaped still holds its pid, so the group is its own.
   */
  static readonly #unreaped = new Set<WorkerProcess>()
  /** Groups sent SIGTERM whose SIGKILL is still to come (GROUP_KILL_GRACE_MS): sent at once if the server exits first. */
  static readonly #ending = new Set<WorkerProcess>()
  static {
    process.on('exit', () => {
      for (const worker of WorkerProcess.#unreaped) worker.#killGroup('SIGKILL')
      for (const worker of WorkerProcess.#ending) worker.#killGroup('SIGKILL')
    })
  }

  constructor (options: ProcessOptions, on: ProcessEvents) {
    this.#oomKillsAtStart = readOomKillCount()
    try {
      this.#child = spawn(options.python, options.args, {
        cwd: options.cwd,
        env: options.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        // Its own process group (setsid), so that signals reach the processes a task
        // starts too (see signal()). Pipes are unaffected; not unref()ed: the server
        // still owns it, and kill -9 of the server still ends it (PR_SET_PDEATHSIG).
        detached: true
      })
    } catch (error) {
      // Node 20 throws, rather than emits, the errors of fork it does not expect (ENOMEM, as
      // `spawn ENOMEM`): said with what to do, as an emitted EAGAIN is (python-worker.ts).
      if (error instanceof Error) error.message = messageWithLimitAdvice(error)
      throw error
    }
    // Out of files (EMFILE, ENFILE), spawn() returns before it has made the pipes, and says so
    // with an 'error' a tick later: the pipes' listeners below would throw first, and that
    // 'error' then reached a worker half made, an uncaught exception that ended the server.
    if (this.#child.stdin === undefined || this.#child.stdout === undefined || this.#child.stderr === undefined) {
      this.#child.once('error', () => {})
      throw new Error('its pipes could not be made: too many open files (the open-file limit, ulimit -n, or the system\'s is reached); retried with backoff')
    }
    if (this.#child.pid !== undefined) WorkerProcess.#unreaped.add(this) // no pid: it never started (EAGAIN), nothing to kill
    this.exited = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        this.#hasExited = true
        WorkerProcess.#unreaped.delete(this)
        void this.#status?.then((handle) => handle?.close()).catch(() => {})
        this.#status = undefined
        this.#endGroup()
        this.#releaseStdioSoon(on.stdioHeld)
        // Decided now: a kill() or timeout during the reading below must not turn it into pyfleet's own.
        this.#foreignKill = signal === 'SIGKILL' && !this.#signalsSent.has('SIGKILL')
        // 'exit' can come before the last of stderr is read, and the fatal line that says why
        // a start failed is the last thing a worker writes: under load a failed import was
        // reported as "exited with code 3 before it was ready", its reason read a moment later.
        const tail = stderrEnd(this.#child.stderr, STDERR_TAIL_MS)
        if (!this.#foreignKill) {
          void tail.then(() => {
            on.exit(code, signal)
            resolve()
          })
          return
        }
        // A SIGKILL from elsewhere: the OOM killer's or someone's kill -9. One reading of the
        // kernel's count (bounded: OOM_READ_TIMEOUT_MS) says which, before the exit is told.
        void Promise.all([oomKillReadings(this.#oomKillsAtStart), tail]).then(([[atStart, atExit]]) => {
          this.#oomKillsUnaccounted = oomLedger.unaccounted(atStart, atExit)
          this.#killedBy = killerOf(this.#oomKillsUnaccounted)
          on.exit(code, signal)
          resolve()
        })
      })
    })
    this.#child.once('error', on.spawnError)
    this.#child.stdout.on('data', on.stdout)
    this.#child.stdout.on('end', on.stdoutEnd)
    this.#child.stderr.setEncoding('utf8')
    this.#child.stderr.on('data', on.stderr)
    // EPIPE when the worker dies with a frame half written: the exit handler reports it.
    this.#child.stdin.on('error', () => {})
  }

  get pid (): number { return this.#child.pid ?? 0 }

  /** Who most likely killed it, once a SIGKILL pyfleet did not send has (undefined otherwise). */
  get killedBy (): Killer | undefined { return this.#killedBy }

  /** One frame, in one write. */
  write (frame: Buffer | SplitFrame): void {
    const stdin = this.#child.stdin
    if (Buffer.isBuffer(frame)) { stdin.write(frame); return }
    // Both parts in one writev; nothing else writes to stdin between them (one call at a time).
    stdin.cork()
    stdin.write(frame.head)
    stdin.write(frame.input)
    stdin.uncork()
  }

  /** Closes the worker's stdin: the runtime exits at EOF after its current call. */
  endInput (): void { this.#child.stdin.end() }

  /** Signals the worker alone, not the processes its tasks started (SIGUSR1: a stack dump they would die of). */
  signalWorker (signal: NodeJS.Signals): void {
    const pid = this.#child.pid
    if (pid === undefined || pid <= 0 || this.#hasExited) return // reaped: its pid may be another's
    this.#signalsSent.add(signal)
    try { process.kill(pid, signal) } catch { /* already gone */ }
  }

  /**
   * Signals the worker's process group: the worker and whatever its tasks started. SIGKILL
   * goes to the worker alone: the rest of its group is ended once it has exited (#endGroup,
   * SIGTERM then SIGKILL), so that multiprocessing's resource tracker among them gets to
   * unlink the shared memory a task killed mid-call leaked.
   */
  signal (signal: NodeJS.Signals): void {
    const pid = this.#child.pid
    if (pid === undefined || pid <= 0) return // never spawned; and kill(-0) would be our own group
    if (this.#hasExited) return // reaped, and what was left of its group ended then (#endGroup)
    if (signal === 'SIGKILL') {
      this.signalWorker(signal)
      return
    }
    this.#signalsSent.add(signal)
    try {
      process.kill(-pid, signal)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') return // the whole group is gone
      this.signalWorker(signal)
    }
  }

  /** How the process ended, in words, for logs and for the error a call in flight gets. */
  describeExit (code: number | null, signal: NodeJS.Signals | null): string {
    if (signal === null) return `exited with code ${String(code)}`
    if (signal === 'SIGKILL' && this.#foreignKill) {
      const kills = this.#oomKillsUnaccounted
      if (kills === undefined) return 'was killed by a SIGKILL pyfleet did not send (out of memory? the kernel OOM-kills with SIGKILL when the container or machine runs out)'
      if (kills === 0) return 'was killed by a SIGKILL pyfleet did not send, and not by the kernel\'s out-of-memory killer (/proc/vmstat\'s count of OOM kills did not move while it lived, or another worker\'s exit accounts for the move): someone or something ran kill -9'
      // The count is the machine's: "most likely", not "certainly" (another process may have been the one).
      return `was killed by a SIGKILL pyfleet did not send, most likely by the kernel's out-of-memory killer (/proc/vmstat counts ${kills} OOM kill${kills === 1 ? '' : 's'} while it lived that no other worker's exit accounts for): the container or the machine ran out of memory`
    }
    // The SIGUSR1 that asks for a stack dump (a call or a start past its time) kills a process
    // that has not yet installed the runtime's handler for it: one still starting Python.
    if (signal === 'SIGUSR1' && this.#signalsSent.has('SIGUSR1')) return 'was ended by the SIGUSR1 pyfleet sent for its stacks, before it had installed the handler for it (Python was still starting)'
    return `was killed by ${signal}`
  }

  /**
   * The resident set size from /proc (Linux), or undefined if it cannot be read (exited, not
   * Linux). The status file stays open between readings, and each reading is one read at
   * offset 0, which makes the kernel write it afresh: readFile's open, stat, reads and close
   * were five trips through libuv's thread pool, ~7 µs of Node's time per request of the
   * benchmark's mix (each worker is read every 250 ms under load). An open file also keeps
   * to the process it was opened for: a later process given the same pid is never read.
   */
  async readRss (): Promise<number | undefined> {
    if (this.#hasExited) return undefined
    try {
      this.#status ??= open(`/proc/${this.pid}/status`, 'r').catch(() => undefined)
      const handle = await this.#status
      if (handle === undefined) { this.#status = undefined; return undefined } // not opened: tried again next time
      const text = Buffer.allocUnsafe(STATUS_READ_BYTES) // one per reading: readings may overlap
      const { bytesRead } = await handle.read(text, 0, STATUS_READ_BYTES, 0)
      const match = /^VmRSS:\s+(\d+) kB/m.exec(text.toString('latin1', 0, bytesRead))
      return match === null ? undefined : Number(match[1]) * 1024
    } catch {
      return undefined
    }
  }

  /**
   * Once the worker has exited, ends what is left of its group: processes a task started
   * that a graceful stop, a recycle or a crash left behind. SIGTERM first, SIGKILL
   * GROUP_KILL_GRACE_MS later (see there why not at once), or as the server exits.
   * Safe from pid reuse: Linux keeps a pid number allocated while any process still has
   * it as its process-group id, so while a member is left the number is still this
   * group's. The SIGTERM is sent from the exit callback, in the same turn of the event
   * loop as the reap (libuv reaps every exited child, then runs their callbacks); if it
   * empties the group, the number would have to come round again (pid_max, 32,768 or
   * more) and be taken by a new group's leader within the grace for the SIGKILL to miss.
   */
  #endGroup (): void {
    if (!this.#killGroup('SIGTERM')) return
    WorkerProcess.#ending.add(this)
    setTimeout(() => {
      WorkerProcess.#ending.delete(this)
      this.#killGroup('SIGKILL')
    }, GROUP_KILL_GRACE_MS).unref()
  }

  /** Sends `signal` to the worker's process group; false when no member was left to send it to (ESRCH). */
  #killGroup (signal: NodeJS.Signals): boolean {
    const pid = this.#child.pid
    if (pid === undefined || pid <= 0) return false
    try {
      process.kill(-pid, signal)
      return true
    } catch {
      return false // ESRCH: no member left
    }
  }

  /**
   * Closes the pipes STDIO_RELEASE_MS after the exit unless they have all closed by then
   * (`held` is told when they had not): what is still to read of the worker's own output has
   * arrived by then, and the rest can only come from a process that escaped its group.
   */
  #releaseStdioSoon (held: (() => void) | undefined): void {
    const child = this.#child
    const release = setTimeout(() => {
      child.stdin.destroy()
      child.stdout.destroy()
      child.stderr.destroy()
      held?.()
    }, STDIO_RELEASE_MS)
    release.unref()
    // 'close': every pipe has closed (the usual case, at once).
    child.once('close', () => { clearTimeout(release) })
  }
}
