// The log's destination on its own, writing to a real pipe (a FIFO) whose reader
// the test controls: lines are batched but still shown when the server is quiet,
// and a reader that stops costs dropped lines (counted, then reported), never
// unbounded memory.

import t from 'tap'
import { execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { LogDestination } from '../src/log-destination.js'
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

function opened (destination: LogDestination): Promise<void> {
  return new Promise((resolve) => { destination.stream.once('ready', () => { resolve() }) })
}

t.test('a single line is written without waiting for a batch to fill', async (t) => {
  const { path, reader } = fifo(t)
  const destination = new LogDestination({ dest: path })
  await opened(destination)
  t.teardown(() => { destination.stream.end() })
  const log = pino(destination.stream)
  log.info('one quiet line')
  let read = ''
  await waitFor(() => (read += drain(reader)).includes('one quiet line'), 5000, 'the line to reach the reader')
  t.pass('it did, well short of a 4 KiB batch')
})

t.test('an idle log writes nothing: the batch timer writes only when a line came', async (t) => {
  const { path, reader } = fifo(t)
  const destination = new LogDestination({ dest: path })
  await opened(destination)
  t.teardown(() => { destination.stream.end() })
  let writes = 0
  destination.stream.on('write', () => { writes++ })
  pino(destination.stream).info('one line')
  await waitFor(() => drain(reader).includes('one line'), 5000, 'the line')
  const after = writes
  await new Promise((resolve) => setTimeout(resolve, 500)) // five of the timer's turns
  t.equal(writes, after, 'no write while nothing is logged')
})

t.test('a reader that stops: lines past the backlog are dropped and counted, then reported once it reads again', async (t) => {
  const { path, reader } = fifo(t)
  const backlogMaxBytes = 64 * 1024
  const destination = new LogDestination({ dest: path, backlogMaxBytes })
  await opened(destination)
  t.teardown(() => { destination.stream.end() })
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

t.test('at exit, a pipe that takes nothing more holds pino\'s synchronous write up for a bounded time, not for ever', async (t) => {
  const { path } = fifo(t) // its reader never reads
  // Non-blocking, as the server's own description of a stdout pipe is (log-destination.ts).
  const fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK)
  const destination = new LogDestination({ dest: fd })
  t.teardown(() => {
    destination.stream.on('error', () => {}) // a retry of the full pipe still due writes to the closed fd
    destination.stream.destroy()
  })
  const log = pino(destination.stream)
  const line = 'x'.repeat(1000)
  for (let i = 0; i < 200; i++) log.info(line) // 200 KB: more than the pipe's 64 KiB
  // What pino's exit hook calls. sonic-boom retried EAGAIN for ever here: the test would hang.
  destination.stream.flushSync()
  t.pass('flushSync returned with the pipe still full')
})

