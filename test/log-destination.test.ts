// The log's destination on its own, writing to a real pipe (a FIFO) whose reader
// the test controls: lines are batched but still shown when the server is quiet,
// and a reader that stops costs dropped lines (counted, then reported), never
// unbounded memory.

import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { flushLogs, LogDestination } from '../src/log-destination.js'
import { waitFor, type Teardown } from './helpers/server.js'

/** A FIFO with its read end open (non-blocking), so the destination's writes succeed until the pipe is full. */
function fifo (t: Teardown): { path: string, reader: number } {
  const dir = mkdtempSync(join(tmpdir(), 'pyfleet-log-'))
  const path = join(dir, 'out')
  execFileSync('mkfifo', [path])
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  t.teardown(() => { closeSync(reader); rmSync(dir, { recursive: true, force: true }) })
  return { path, reader }
}

/** Whatever the pipe holds now. */
function drain (fd: number): string {
  const buffer = Buffer.alloc(64 * 1024)
  let text = ''
  for (;;) {
    let n: number
    try {
      n = readSync(fd, buffer)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return text
      throw error
    }
    if (n === 0) return text
    text += buffer.toString('utf8', 0, n)
  }
}

/** A LogDestination with its file open, ended when the test is. */
async function openedDestination (t: Teardown, options: ConstructorParameters<typeof LogDestination>[0]): Promise<LogDestination> {
  const destination = new LogDestination(options)
  await new Promise<void>((resolve) => { destination.stream.once('ready', () => { resolve() }) })
  t.teardown(() => { destination.stream.end() })
  return destination
}

/**
 * What the destination says on stderr while `log` writes `first`, waits for something to be
 * said, then writes ten lines of `then` and waits out two batch timers (nothing more should come).
 */
async function saidOnStderr (log: pino.Logger, first: string, then: string): Promise<string[]> {
  const said: string[] = []
  const write = process.stderr.write
  process.stderr.write = ((chunk: string) => { said.push(String(chunk)); return true }) as typeof process.stderr.write
  try {
    log.info(first)
    await waitFor(() => said.length > 0, 5000, 'the failure to be said')
    for (let n = 0; n < 10; n++) log.info({ n }, then)
    await new Promise((resolve) => setTimeout(resolve, 250))
  } finally {
    process.stderr.write = write
  }
  return said
}

t.test('a single line is written without waiting for a batch to fill', async (t) => {
  const { path, reader } = fifo(t)
  const destination = await openedDestination(t, { dest: path })
  const log = pino(destination.stream)
  log.info('one quiet line')
  let read = ''
  await waitFor(() => (read += drain(reader)).includes('one quiet line'), 5000, 'the line to reach the reader')
  t.pass('it did, well short of a 4 KiB batch')
})

t.test('flushLogs resolves once every line logged before it is written, also those buffered while a write was under way', async (t) => {
  // A failed start writes its one line on stderr after flushLogs: under load, "worker exited"
  // came after it, left in the batch while the write before it was under way (sonic-boom
  // calls a flush back when that write is done, without writing what was buffered meanwhile).
  const { path, reader } = fifo(t)
  const destination = await openedDestination(t, { dest: path })
  const log = pino(destination.stream)
  for (let round = 0; round < 20; round++) {
    log.info(`a batch's worth ${round} ${'x'.repeat(4000)}`) // over a batch's size: written at once, through the thread pool
    log.info(`the line after it ${round}`) // buffered: the write above is still under way
    await flushLogs(5000)
    t.ok(drain(reader).includes(`the line after it ${round}`), `round ${round}: the last line was written when flushLogs resolved`)
  }
})

t.test('a line buffered while a write was under way is written by the batch timer, not left for the next line', async (t) => {
  const { path, reader } = fifo(t)
  const destination = await openedDestination(t, { dest: path })
  const log = pino(destination.stream)
  // Over the pipe's 64 KiB: the write stays under way until the reader reads.
  for (let n = 0; n < 40; n++) log.info(`filling the pipe ${n} ${'x'.repeat(4000)}`)
  log.error('the line that matters') // short of a batch: buffered behind the write
  await new Promise((resolve) => setTimeout(resolve, 350)) // the batch timer's turns come while the write waits
  let read = ''
  await waitFor(() => (read += drain(reader)).includes('the line that matters'), 5000, 'the buffered line to be written, with nothing logged after it')
  t.match(read, /filling the pipe 39 [\s\S]*the line that matters/, 'after the lines before it')
})

t.test('an idle log writes nothing: the batch timer writes only when a line came', async (t) => {
  const { path, reader } = fifo(t)
  const destination = await openedDestination(t, { dest: path })
  let writes = 0
  destination.stream.on('write', () => { writes++ })
  pino(destination.stream).info('one line')
  await waitFor(() => drain(reader).includes('one line'), 5000, 'the line')
  // The reader can see the bytes before the write's callback has run on the event loop (a busy machine).
  await waitFor(() => writes >= 1, 5000, 'the write to be reported')
  const after = writes
  await new Promise((resolve) => setTimeout(resolve, 500)) // five of the timer's turns
  t.equal(writes, after, 'no write while nothing is logged')
})

t.test('a reader that stops: lines past the backlog are dropped and counted, then reported once it reads again', async (t) => {
  const { path, reader } = fifo(t)
  const backlogMaxBytes = 64 * 1024
  const destination = await openedDestination(t, { dest: path, backlogMaxBytes })
  const log = pino(destination.stream)
  let dropped = 0
  destination.watch(log, (lines) => { dropped += lines })

  const sent = 5000
  const text = 'x'.repeat(200)
  // sonic-boom's own count of the bytes it holds, read after every line.
  const held = (): number => (destination.stream as unknown as { _len: number })._len
  let mostHeld = 0
  for (let i = 0; i < sent; i++) {
    log.info({ i }, text)
    mostHeld = Math.max(mostHeld, held())
  }
  t.ok(mostHeld <= backlogMaxBytes, `the backlog never held more than its bound (at most ${mostHeld} of ${backlogMaxBytes} bytes)`)
  t.ok(dropped > 0, `lines dropped while nobody read (${dropped} of ${sent})`)
  t.ok(dropped < sent, 'but not all: the pipe and the backlog took some')

  // The reader comes back: every line is either read or counted, and the drop is reported.
  let read = ''
  await waitFor(() => (read += drain(reader)).includes('log line(s) dropped'), 10_000, 'the report of dropped lines')
  const lines = read.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>)
  const written = lines.filter((line) => typeof line.i === 'number').length
  t.equal(written + dropped, sent, `${written} read + ${dropped} dropped = ${sent} written`)
  const report = lines.find((line) => typeof line.droppedLines === 'number')
  t.match(report, { level: 40, droppedLines: dropped, backlogMaxBytes }, 'one warning with the count')
})

/** A destination writing to the FIFO through a non-blocking description, as the server's is for a stdout pipe. */
function nonBlockingDestination (t: Teardown, path: string): LogDestination {
  const destination = new LogDestination({ dest: openSync(path, constants.O_WRONLY | constants.O_NONBLOCK) })
  t.teardown(() => {
    destination.stream.on('error', () => {}) // a retry of the full pipe still due writes to the closed fd
    destination.stream.destroy()
  })
  return destination
}

/** Logs numbered lines of ~1 KB until `bytes` are written, then waits for the async write to meet the full pipe. */
async function fillPipe (destination: LogDestination, bytes: number): Promise<number> {
  const log = pino(destination.stream)
  const lines = Math.ceil(bytes / 1050)
  for (let n = 0; n < lines; n++) log.info({ n }, 'x'.repeat(1000))
  await new Promise((resolve) => setTimeout(resolve, 50)) // a write took what fitted; the rest waits for a retry
  return lines
}

t.test('at exit, a pipe that takes nothing gets a bounded wait (1 s without progress), not an endless one', async (t) => {
  const { path } = fifo(t) // its reader never reads
  const destination = nonBlockingDestination(t, path)
  await fillPipe(destination, 200_000) // more than the pipe's 64 KiB
  const started = performance.now()
  // What pino's exit hook calls. sonic-boom retried EAGAIN every 100 ms for ever here: the test hung.
  destination.stream.flushSync()
  t.ok(performance.now() - started >= 900, 'it waited for the reader first')
})

/** A destination on a FIFO whose read end the test closes itself (so its teardown does not). */
function pipeWhoseReaderTheTestCloses (t: Teardown): { reader: number, destination: LogDestination } {
  const dir = mkdtempSync(join(tmpdir(), 'pyfleet-log-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const path = join(dir, 'out')
  execFileSync('mkfifo', [path])
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  return { reader, destination: nonBlockingDestination(t, path) }
}

t.test('at exit, a pipe whose reader has gone ends the write at once (EPIPE), without an error', async (t) => {
  const { reader, destination } = pipeWhoseReaderTheTestCloses(t)
  await fillPipe(destination, 200_000)
  closeSync(reader) // the reader goes: every write now fails with EPIPE
  const started = performance.now()
  // sonic-boom retried EPIPE every 100 ms for ever here.
  destination.stream.flushSync()
  t.ok(performance.now() - started < 900, 'returned without waiting out the stall limit')
})

t.test('a reader gone for good (EPIPE): said once on stderr, and every line from then on counted as dropped, not buffered', async (t) => {
  const { reader, destination } = pipeWhoseReaderTheTestCloses(t)
  const dropped: number[] = []
  const log = pino(destination.stream)
  destination.watch(log, (lines) => { dropped.push(lines) })
  log.info('read')
  await waitFor(() => drain(reader).includes('"msg":"read"'), 5000, 'the first line to arrive')
  closeSync(reader) // a `| head` that has had enough
  const said = await saidOnStderr(log, 'meets the closed pipe', 'lost')
  t.same(said, ['pyfleet: stdout was closed by its reader (EPIPE): log lines are lost from now on, counted in pyfleet_log_dropped_lines_total\n'])
  t.equal(dropped.reduce((a, b) => a + b, 0), 10, 'each line after it counted')
})

t.test('a write that fails for another reason (ENOSPC: a full disk under a log file) is said once on stderr, and the exit says why lines were left', async (t) => {
  // /dev/full fails every write with ENOSPC. It went unsaid: a log on a full disk went quiet,
  // and the exit blamed a stalled or gone reader.
  const destination = await openedDestination(t, { dest: '/dev/full' })
  const log = pino(destination.stream)
  const said = await saidOnStderr(log, 'meets a full disk', 'kept, and tried again')
  t.equal(said.length, 1, said.join(''))
  t.match(said[0], /^pyfleet: writing log lines to stdout failed \(ENOSPC: [^)]*\): they are kept, up to \d+ bytes, and written again with the next line; past that, dropped and counted in pyfleet_log_dropped_lines_total\n$/)
  // At exit: the cause as it was, written to fd 2 by the exit's own write (a child process, to read it).
  const script = `import { LogDestination } from './src/log-destination.ts'; import pino from 'pino'
const d = new LogDestination({ dest: '/dev/full' }); d.stream.on('error', () => {}); await new Promise((r) => d.stream.once('ready', r))
const log = pino(d.stream); log.info('left behind'); log.fatal('why the process exits'); d.stream.flushSync()`
  const child = spawn(process.execPath, ['--import=tsx/esm', '--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..'), env: { PATH: process.env.PATH }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d) => { stderr += String(d) })
  await new Promise((resolve) => child.once('close', resolve))
  t.match(stderr, /pyfleet: \d+ bytes of log lines not written at exit: writing to stdout failed \(ENOSPC\)\n\{"level":60,[^\n]*"msg":"why the process exits"\}\n$/, 'the fatal line left behind is written to stderr, not lost with the rest')
  t.notMatch(stderr, /left behind"/, 'the others are counted only')
})

t.test('at exit, a reader that resumes gets every line once, in order, the one cut by a full pipe included', async (t) => {
  const { path } = fifo(t)
  const outDir = mkdtempSync(join(tmpdir(), 'pyfleet-log-out-'))
  t.teardown(() => { rmSync(outDir, { recursive: true, force: true }) })
  const out = join(outDir, 'read')
  // A second reader, another process, that starts reading 0.4 s after the exit's write begins and reads slowly.
  const cat = spawn('sh', ['-c', `sleep 0.4; exec dd if="${path}" of="${out}" bs=4096 2>/dev/null`])
  const finished = new Promise((resolve) => cat.once('exit', resolve))
  const destination = nonBlockingDestination(t, path)
  const lines = await fillPipe(destination, 400_000)
  destination.stream.flushSync()
  destination.stream.on('error', () => {}) // sonic-boom's retry, still due, writes to the closed fd
  destination.stream.destroy() // the last writer closes: dd reads to the end
  await finished
  const read = readFileSync(out, 'utf8').split('\n').filter((line) => line !== '').map((line) => (JSON.parse(line) as { n: number }).n)
  t.same(read, Array.from({ length: lines }, (_, n) => n), `${lines} lines, each once, in order`)
})

t.test('a socket stdout nobody reads (spawn()\'s, systemd journal\'s) is written without blocking, and the process still exits', async (t) => {
  // The server's destination in a process of its own, whose stdout is the socket spawn() gives
  // it and which the test never reads: more lines than the socket holds, then exit. Blocking
  // writes held a libuv thread (and the exit's own write the main thread) for ever.
  const script = [
    "import { readFileSync } from 'node:fs'",
    "import pino from 'pino'",
    "import { LogDestination } from './dist/log-destination.js'",
    'const destination = new LogDestination()',
    "const flags = parseInt(/flags:\\s+(\\d+)/.exec(readFileSync('/proc/self/fdinfo/1', 'utf8'))[1], 8)",
    "process.stderr.write(`non-blocking: ${(flags & 0o4000) !== 0}\\n`)",
    'const log = pino(destination.stream)',
    "for (let n = 0; n < 2000; n++) log.info({ n }, 'x'.repeat(1000))",
    'setTimeout(() => { process.exit(0) }, 300)'
  ].join('\n')
  // A few lines of Python make the socket blocking, as systemd's journal socket is, then become
  // the Node process, without the NODE_OPTIONS tap's spawn() adds: its preloaded modules touch
  // process.stdout, which makes fd 1 non-blocking by itself (the test then passed without the fix).
  const blocking = 'import fcntl, os, sys; fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) & ~os.O_NONBLOCK); os.environ.pop("NODE_OPTIONS", None); os.execv(sys.argv[1], sys.argv[1:])'
  const child = spawn('python3', ['-c', blocking, process.execPath, '--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..'), env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.pause() // never read
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (text: string) => { stderr += text })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { resolve(code) }))
  t.teardown(() => { child.kill('SIGKILL') })
  const ended = await Promise.race([exited, new Promise<'still running'>((resolve) => setTimeout(() => { resolve('still running') }, 20_000))])
  t.equal(ended, 0, `exited 0 with its lines unread (${stderr.trim()})`)
  t.match(stderr, /non-blocking: true/, 'its stdout socket was made non-blocking')
  t.match(stderr, /bytes of log lines not written at exit: stdout took nothing for 5000 ms/, 'and what it could not write is said')
})
