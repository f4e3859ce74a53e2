// WorkerStderr: a worker's stderr as log lines, at the level each line names.

import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { WorkerStderr } from '../../src/pool/worker-stderr.js'
import { CallOutputMarks } from '../../src/pool/call-output-marks.js'

function recordingLog (): { log: FastifyBaseLogger, lines: Array<{ level: string, msg: string, fields: Record<string, unknown> }> } {
  const lines: Array<{ level: string, msg: string, fields: Record<string, unknown> }> = []
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => { lines.push({ level, msg, fields }) }
  const log = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as FastifyBaseLogger
  return { log, lines }
}

/** A running worker's stderr (no longer starting), logging into `lines`. */
function recordingStderr (): { stderr: WorkerStderr, lines: ReturnType<typeof recordingLog>['lines'] } {
  const { log, lines } = recordingLog()
  return { stderr: new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: 'r', task: 't' }), () => false), lines }
}

t.test('each line at the level its prefix names; the runtime\'s fatal line is an error', async (t) => {
  const { log, lines } = recordingLog()
  let starting = true
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: undefined, task: undefined }), () => starting)
  stderr.write('WARNING a: careful\nERROR b: broken\nplain print\npyfleet-fatal: task module \'x\' could not')
  stderr.write(' be imported\n')
  starting = false
  stderr.write('partial')
  stderr.flush()
  t.same(lines.map(({ level, msg }) => ({ level, msg })), [
    { level: 'warn', msg: 'WARNING a: careful' },
    { level: 'error', msg: 'ERROR b: broken' },
    { level: 'info', msg: 'plain print' },
    { level: 'error', msg: 'pyfleet-fatal: task module \'x\' could not be imported' },
    { level: 'info', msg: 'partial' }
  ])
  t.equal(stderr.fatalLine, 'task module \'x\' could not be imported')
  t.same(stderr.lastWords, ['WARNING a: careful', 'ERROR b: broken', 'plain print', 'pyfleet-fatal: task module \'x\' could not be imported'], 'kept while starting only')
})

t.test('past its log budget a worker\'s lines are dropped and counted, and the count is logged before the next line let through', async (t) => {
  const { log, lines } = recordingLog()
  let now = 0
  const dropped: number[] = []
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: 'r', task: 't' }), () => false, () => now, (lines) => { dropped.push(lines) })
  stderr.write('line\n'.repeat(25_000))
  t.equal(lines.length, 20_000, 'the burst goes through whole')
  stderr.write(`${'x'.repeat(10 * 1024)}\n`)
  t.equal(lines.length, 20_000, 'nothing left for a 10 KiB line')
  now += 1000 // refills 5,000 units
  stderr.write('pyfleet-fatal: the reason\n')
  stderr.write('next\n')
  t.same(lines.slice(20_000).map((l) => l.level), ['warn', 'error', 'info'])
  t.match(lines[20_000].msg, /^5001 stderr lines of this worker were not logged: it wrote faster than its log budget of 5,000 lines \(or KiB\) a second$/)
  t.equal(lines[20_001].msg, 'pyfleet-fatal: the reason')
  // Long lines cost a unit per started KiB: 5,000 units left hold 454 lines of 10 KiB.
  stderr.write(`${'y'.repeat(10 * 1024)}\n`.repeat(500))
  t.equal(lines.length - 20_003, 454)
  stderr.flush()
  t.match(lines.at(-1)?.msg, /^46 stderr lines of this worker were not logged/, 'the worker exited: the count is logged at once')
  t.same(dropped, [5001, 46], 'and counted for pyfleet_worker_stderr_dropped_lines_total as it is logged')
})

t.test('the count of a later flood is logged on its own second too, after the rest of a long dropped line (its timer was left spent)', async (t) => {
  const { log, lines } = recordingLog()
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: 'r', task: 't' }), () => false, () => 0) // no refill
  const summaries = async (count: number): Promise<string[]> => {
    const deadline = Date.now() + 5000
    const found = (): string[] => lines.filter((l) => l.level === 'warn').map((l) => l.msg.split(':')[0])
    while (found().length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    return found()
  }
  stderr.write('x\n'.repeat(20_000)) // the burst, spent
  stderr.write('y'.repeat(20_000)) // a long line arriving: its first piece dropped, a line counted
  t.same(await summaries(1), ['1 stderr line of this worker was not logged'])
  stderr.write('y'.repeat(20_000)) // more of that line: characters only, no line
  await new Promise((resolve) => setTimeout(resolve, 1200)) // a second: nothing new to say
  stderr.write(`\n${'z\n'.repeat(100)}`)
  t.same(await summaries(2), ['1 stderr line of this worker was not logged', '100 stderr lines of this worker were not logged'], 'within a second, not at the next line let through')
  stderr.flush()
})

t.test('while lines are dropped, their count is logged every second, and a fatal line is logged all the same', async (t) => {
  const { log, lines } = recordingLog()
  let now = 0
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: undefined, task: undefined }), () => false, () => now)
  stderr.write('flood\n'.repeat(20_010))
  t.equal(lines.length, 20_000)
  // A second after the first dropped line, the count is logged even if the worker says nothing more.
  const deadline = Date.now() + 5000
  while (lines.length === 20_000 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(lines[20_000], { level: 'warn', msg: /^10 stderr lines of this worker were not logged/ })
  now += 500 // 2,500 units: not enough to resume logging
  stderr.write('more\n'.repeat(3))
  stderr.write('pyfleet-fatal: out of patience\n')
  t.same(lines.slice(20_001).map((l) => l.msg), [
    '3 stderr lines of this worker were not logged: it wrote faster than its log budget of 5,000 lines (or KiB) a second',
    'pyfleet-fatal: out of patience'
  ])
  t.equal(stderr.fatalLine, 'out of patience')
  // Only the first gets past the budget: the runtime writes one and exits; more are a task
  // printing the prefix. The last is kept as the reason (the runtime's comes right before its exit).
  stderr.write('pyfleet-fatal: printed\n'.repeat(3))
  t.equal(lines.length, 20_003, 'dropped past the budget like any line')
  t.equal(stderr.fatalLine, 'printed')
  now += 500 // 5,000 units: logging resumes
  stderr.write('back\n')
  t.equal(lines.at(-1)?.msg, 'back')
})

t.test('the count of dropped lines names the call whose lines were dropped, not the one running when it is logged', async (t) => {
  const { log, lines } = recordingLog()
  let now = 0
  let call = { requestId: 'flood-1', task: 'spam' }
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, ...call }), () => false, () => now)
  stderr.write('flood\n'.repeat(20_100))
  call = { requestId: 'quiet-2', task: 'echo' } // the next call, once the budget has refilled
  now += 2000
  stderr.write('a line of its own\n')
  t.match(lines.at(-2), { level: 'warn', msg: /^100 stderr lines of this worker were not logged/, fields: { requestId: 'flood-1', task: 'spam', droppedLines: 100 } })
  t.match(lines.at(-1), { msg: 'a line of its own', fields: { requestId: 'quiet-2', task: 'echo' } })
  // A flood by the next call starts a count of its own, under that call.
  stderr.write('flood\n'.repeat(20_050))
  stderr.flush()
  t.match(lines.at(-1), { msg: /stderr lines of this worker were not logged/, fields: { requestId: 'quiet-2', task: 'echo' } })
})


const PIECE = 15 * 1024 // bytes of a piece in the log's JSON (worker-stderr.ts MAX_PIECE_BYTES)

t.test('a line longer than 15 KiB of JSON is logged in pieces of at most that, each after the first marked continued, all at the first one\'s level', async (t) => {
  const { stderr, lines } = recordingStderr()
  const long = `ERROR h6: ${'E'.repeat(40 * 1024)}`
  // Written as a pipe delivers it: in chunks that split the line anywhere.
  for (let at = 0; at < long.length; at += 5000) stderr.write(long.slice(at, at + 5000))
  stderr.write('\nnext line\n')
  t.same(lines.map((l) => l.level), ['error', 'error', 'error', 'info'])
  t.same(lines.map((l) => l.fields.continued), [undefined, true, true, undefined])
  t.same(lines.map((l) => l.msg.length), [PIECE, PIECE, long.length - 2 * PIECE, 'next line'.length])
  t.equal(lines.slice(0, 3).map((l) => l.msg).join(''), long, 'nothing lost')
  t.ok(lines.every((l) => l.fields.requestId === 'r'))
  // A line cut where it just fit, then ended: no empty continuation; a pair of surrogates is not cut in two.
  lines.length = 0
  stderr.write(`${'a'.repeat(PIECE - 1)}😀tail`)
  stderr.flush()
  t.same(lines.map((l) => [l.level, l.fields.continued, l.msg.length]), [['info', undefined, PIECE - 1], ['info', true, 6]])
  t.equal(lines[1].msg, '😀tail')
  // A long line that arrives whole, newline and all, is cut the same way.
  lines.length = 0
  stderr.write(`WARNING ${'w'.repeat(20 * 1024)}\n`)
  t.same(lines.map((l) => [l.level, l.fields.continued, l.msg.length]), [['warn', undefined, PIECE], ['warn', true, 20 * 1024 + 8 - PIECE]])
})

t.test('pieces are bounded in bytes of JSON: quotes, control characters, accents and CJK take what they take, so no log line passes 16 KiB', async (t) => {
  for (const char of ['"', '\\', '\u0001', 'é', '界', '😀', '\t']) {
    const { stderr, lines } = recordingStderr()
    const text = `ERROR payload: ${char.repeat(20_000)}`
    stderr.write(`${text}\n`)
    t.equal(lines.map((l) => l.msg).join(''), text, `${JSON.stringify(char)}: nothing lost`)
    for (const line of lines) {
      const bytes = Buffer.byteLength(JSON.stringify(line.msg)) - 2
      t.ok(bytes <= PIECE, `${JSON.stringify(char)}: a piece of ${bytes} bytes`)
      t.ok(bytes > PIECE - 6 || line === lines.at(-1), 'each piece but the last as long as fits')
    }
  }
})

t.test('a logging record\'s line breaks (U+2028 on the pipe: one record, one line) are line breaks in the log; a print\'s `\\n` and backslashes stay as written', async (t) => {
  const { log, lines } = recordingLog()
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: undefined, task: undefined }), () => true)
  stderr.write('ERROR pyfleet: task module \'syn\' failed to import\u2028  File "C:\\srv\\new\\syn.py", line 4\u2028SyntaxError: \'{\' was never closed\n')
  stderr.write('GET /api/items: {"path": "C:\\\\new", "text": "a\\nb"}\n')
  t.same(lines.map((l) => [l.level, l.msg]), [
    ['error', 'ERROR pyfleet: task module \'syn\' failed to import\n  File "C:\\srv\\new\\syn.py", line 4\nSyntaxError: \'{\' was never closed'],
    ['info', 'GET /api/items: {"path": "C:\\\\new", "text": "a\\nb"}']
  ])
  // A failed start quotes its last words on one line: there the breaks are `\n`, as in the fatal line.
  t.equal(stderr.lastWords[0], 'ERROR pyfleet: task module \'syn\' failed to import\\n  File "C:\\srv\\new\\syn.py", line 4\\nSyntaxError: \'{\' was never closed')
  // A record past 15 KiB of JSON, in pieces: every piece's breaks too.
  lines.length = 0
  const message = 'x\ny\\'.repeat(6_000)
  const written = `ERROR big: ${message.replaceAll('\n', '\u2028')}`
  for (let at = 0; at < written.length; at += 4099) stderr.write(written.slice(at, at + 4099))
  stderr.write('\n')
  t.ok(lines.length > 1, `${lines.length} pieces`)
  t.same(lines.map((l) => l.level), lines.map(() => 'error'))
  t.equal(lines.map((l) => l.msg).join(''), `ERROR big: ${message}`)
})

t.test('a CRLF line end is a line end: no \\r ends a message, and a line that just fits before one is logged whole', async (t) => {
  const { stderr, lines } = recordingStderr()
  stderr.write(`ERROR ${'e'.repeat(PIECE - 6)}\r\nshort\r\n`)
  // Split where the pipe may split it: the \r at the end of one chunk, the \n at the start of the next.
  stderr.write(`${'x'.repeat(PIECE)}\r`)
  stderr.write('\nlast\r')
  stderr.flush()
  t.same(lines.map((l) => [l.level, l.fields.continued, l.msg.length]), [['error', undefined, PIECE], ['info', undefined, 5], ['info', undefined, PIECE], ['info', undefined, 4]])
  t.notOk(lines.some((l) => l.msg.includes('\r')))
})

t.test('a crash in C code: faulthandler\'s first line and its stacks are errors; what follows them is not', async (t) => {
  const { stderr, lines } = recordingStderr()
  stderr.write('Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n  File "/x/crashing_tasks.py", line 8 in read_address_zero\n')
  stderr.write('\nThread 0x00007e (most recent call first):\n  <no Python frame>\n\nExtension modules: msgpack._cmsgpack (total: 1)\n')
  t.same(lines.map((l) => l.level), ['error', 'error', 'error', 'error', 'error', 'info'])
})

t.test('the stacks a worker past its timeout prints are warnings, threads\' and asyncio tasks\' alike, kept at LOG_LEVEL=warn', async (t) => {
  const { stderr, lines } = recordingStderr()
  stderr.write('doing step 3\nCurrent thread 0x00007f (most recent call first):\n  File "/x/selectors.py", line 468 in select\n  File "/x/loop.py", line 9 in run\n\n')
  stderr.write("Asyncio task 'Task-2' (most recent call first):\n  awaiting <Future pending>\n  File \"/x/tasks.py\", line 10 in wait_for_reply\n  ... and 3 more asyncio tasks\n")
  stderr.write('a line the task printed after\n  File "an indented line of its own"\n')
  t.same(lines.map((l) => [l.level, l.msg.slice(0, 14)]), [
    ['info', 'doing step 3'], ['warn', 'Current thread'], ['warn', '  File "/x/sel'], ['warn', '  File "/x/loo'],
    ['warn', "Asyncio task '"], ['warn', '  awaiting <Fu'], ['warn', '  File "/x/tas'], ['warn', '  ... and 3 mo'],
    ['info', 'a line the tas'], ['info', '  File "an ind']
  ])
})

t.test('a stack dump or a fatal line after output that had not ended its line (a progress bar) starts a line of its own, at its level', async (t) => {
  const { stderr, lines } = recordingStderr()
  stderr.write('\rprogress 0/3\rprogress 1/3\rprogress 2/3')
  stderr.write('Current thread 0x00007f (most recent call first):\n  File "/x/tasks.py", line 9 in partial\n\n')
  stderr.write('written without a newlineFatal Python error: Segmentation fault\n')
  t.same(lines.map((l) => [l.level, l.msg]), [
    ['info', '\rprogress 0/3\rprogress 1/3\rprogress 2/3'], ['warn', 'Current thread 0x00007f (most recent call first):'], ['warn', '  File "/x/tasks.py", line 9 in partial'],
    ['info', 'written without a newline'], ['error', 'Fatal Python error: Segmentation fault']
  ])
  lines.length = 0
  stderr.write('note: the docs explain Fatal Python error: messages\nsee Thread 0x1 (most recent call first): in the manual\n')
  t.same(lines.map((l) => [l.level, l.msg]), [['info', 'note: the docs explain Fatal Python error: messages'], ['info', 'see Thread 0x1 (most recent call first): in the manual']], 'a line that only mentions them is left whole')
})

t.test('a long line dropped past the budget counts as one line, with all its characters', async (t) => {
  const { log, lines } = recordingLog()
  const dropped: number[] = []
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: 'r', task: 't' }), () => false, () => 0, (n) => { dropped.push(n) })
  stderr.write('line\n'.repeat(20_000)) // the whole burst
  stderr.write(`print ${'E'.repeat(100 * 1024)}\n`)
  stderr.flush()
  t.same(dropped, [1])
  t.match(lines.at(-1)?.fields, { droppedLines: 1, droppedChars: 100 * 1024 + 6 })
})

t.test('past the budget, a line that names an error or a warning still gets through, on a budget of its own', async (t) => {
  const { log, lines } = recordingLog()
  let now = 0
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: 'r', task: 't' }), () => false, () => now)
  stderr.write('print\n'.repeat(30_000)) // the burst, then 10,000 dropped
  stderr.write('CRITICAL app: the reason it failed\nWARNING app: and a warning\nplain\n')
  t.same(lines.slice(20_000).map(({ level, msg }) => ({ level, msg })), [
    { level: 'error', msg: 'CRITICAL app: the reason it failed' },
    { level: 'warn', msg: 'WARNING app: and a warning' }
  ], 'the error and the warning; the plain line after them is dropped, and the count waits (a count before each such line would double a flood)')
  // A flood of error lines is bounded too: 500 at once, then 50 a second.
  const before = lines.length
  stderr.write('ERROR app: again\n'.repeat(1000))
  t.equal(lines.filter((l, i) => i >= before && l.msg === 'ERROR app: again').length, 498, 'the rest of the 500 at once')
  now += 200 // the main budget is still short of resuming; this one has 10 lines again
  stderr.write('ERROR app: later\n'.repeat(100))
  t.equal(lines.filter((l) => l.msg === 'ERROR app: later').length, 10, 'then 50 a second')
})

t.test('past the budget, a printed traceback gets through down to its exception, and the line after it is no error', async (t) => {
  const { log, lines } = recordingLog()
  let now = 0
  const stderr = new WorkerStderr(log, () => ({ worker: 1, workerPid: 2, requestId: 'r', task: 't' }), () => false, () => now)
  stderr.write('row\n'.repeat(30_000))
  stderr.write(['ERROR app: processing failed', 'Traceback (most recent call last):', '  File "/srv/app.py", line 3, in run', '    1 / 0', 'ZeroDivisionError: division by zero', ''].join('\n'))
  now += 1500 // the main budget logs again
  stderr.write('processing row 7 ok\n')
  t.same(lines.slice(20_000).map(({ level, msg }) => `${level} ${msg.slice(0, 40)}`), [
    'error ERROR app: processing failed',
    'error Traceback (most recent call last):',
    'error   File "/srv/app.py", line 3, in run',
    'error     1 / 0',
    'error ZeroDivisionError: division by zero',
    'warn 10000 stderr lines of this worker were n',
    'info processing row 7 ok'
  ])
})

t.test('a printed traceback is an error from its header to the exception\'s line, whatever LOG_LEVEL keeps', async (t) => {
  const { stderr, lines } = recordingStderr()
  stderr.write([
    'before',
    'Traceback (most recent call last):',
    '  File "/srv/tasks/app.py", line 3, in run',
    '    1 / 0',
    'ZeroDivisionError: division by zero',
    'after',
    ''
  ].join('\n'))
  t.same(lines.map((l) => l.level), ['info', 'error', 'error', 'error', 'error', 'info'])
})

t.test('a printed chain of exceptions, and an ExceptionGroup\'s traceback, are errors to their last line; what follows is not', async (t) => {
  const { stderr, lines } = recordingStderr()
  const chain = [
    'Traceback (most recent call last):', '  File "/srv/app.py", line 4, in f', '    1/0', '    ~^~', 'ZeroDivisionError: division by zero',
    '', 'The above exception was the direct cause of the following exception:', '',
    'Traceback (most recent call last):', '  File "/srv/app.py", line 6, in f', '    raise ValueError("wrapped") from e', 'ValueError: wrapped'
  ]
  const group = [
    '  + Exception Group Traceback (most recent call last):', '  |   File "/srv/app.py", line 16, in main', '  |     raise ExceptionGroup("group", excs)',
    '  | ExceptionGroup: group (2 sub-exceptions)', '  +-+---------------- 1 ----------------', '    | Traceback (most recent call last):',
    '    |   File "/srv/app.py", line 8, in f', '    |     raise KeyError(i)', '    | KeyError: 0', '    | note 0',
    '    +---------------- 2 ----------------', '    | TypeError: t', '    +------------------------------------'
  ]
  // What except* raises: a group without frames of its own, whose sub-exception is a chain.
  const exceptStar = [
    '  | ExceptionGroup:  (1 sub-exception)', '  +-+---------------- 1 ----------------', '    | Exception Group Traceback (most recent call last):',
    '    | ExceptionGroup: group (1 sub-exception)', '    +-+---------------- 1 ----------------', '      | KeyError: \'k\'', '      +------------------------------------',
    '    | ', '    | During handling of the above exception, another exception occurred:', '    | ', '    | RuntimeError: while handling',
    '    +------------------------------------'
  ]
  const groupThenChain = [...group, '', 'The above exception was the direct cause of the following exception:', '', 'Traceback (most recent call last):', '  File "/srv/app.py", line 20, in g', 'RuntimeError: again']
  // A nested group that is not the last: its own end line, then the outer group goes on.
  const nested = [
    '  + Exception Group Traceback (most recent call last):', '  |   File "<string>", line 4, in <module>', '  | ExceptionGroup: outer (2 sub-exceptions)',
    '  +-+---------------- 1 ----------------', '    | ExceptionGroup: inner (1 sub-exception)', '    +-+---------------- 1 ----------------',
    '      | ValueError: a', '      +------------------------------------', '    +---------------- 2 ----------------', '    | KeyError: \'b\'',
    '    +------------------------------------'
  ]
  for (const [name, text] of Object.entries({ chain, group, exceptStar, groupThenChain, nested })) {
    for (const after of ['after', '  indented after, a task\'s own']) {
      lines.length = 0
      stderr.write(['before', ...text, after, 'The above exception was the direct cause of the following exception:', '| summary: results (3 sub-exceptions)', ''].join('\n'))
      const levels = lines.map((l) => l.level)
      t.same(levels, ['info', ...text.filter((line) => line !== '').map(() => 'error'), 'info', 'info', 'info'], `${name}, then ${JSON.stringify(after)}: every line of it an error, and only those; a chain's sentence printed alone is not`)
    }
  }
})

t.test('a worker\'s marks say which call a line is from, also when it is read after the next call was sent; they are never logged', async (t) => {
  const { log, lines } = recordingLog()
  const marks = new CallOutputMarks()
  const mark = (what: string): string => `\x1e${marks.token} ${what}\n`
  let sent = 'call-2' // the server has sent call 2 before reading call 1's last line
  const stderr = new WorkerStderr(log, (marked) => ({ worker: 1, workerPid: 2, requestId: marked === undefined ? sent : `call-${marked}`, task: 't' }), () => false, undefined, undefined, marks)
  stderr.write(`${mark('call 1')}printed by call 1\nWARNING x: `)
  stderr.write(`logged by call 1\n${mark('end')}written between calls\n`)
  sent = 'call-3'
  stderr.write(`${mark('call 3')}printed by call 3\n`)
  // Output that did not end its line (a C library's) before a mark: a line of its own, not the marked call's.
  stderr.write(`a C library's partial line${mark('end')}after\n`)
  t.same(lines.map(({ level, msg, fields }) => [level, msg, fields.requestId]), [
    ['info', 'printed by call 1', 'call-1'],
    ['warn', 'WARNING x: logged by call 1', 'call-1'],
    ['info', 'written between calls', 'call-2'],
    ['info', 'printed by call 3', 'call-3'],
    ['info', 'a C library\'s partial line', 'call-3'],
    ['info', 'after', 'call-3']
  ])
})

/** Waits until `done()` holds, up to 5 s (the line's wait is 1 s). */
async function eventually (done: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !done(); waited += 50) {
    if (waited > 5000) throw new Error(`not within 5 s: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('a line left without its end (os.write(1, ...) with no newline) is logged after a wait, not held until the next output or the exit', async (t) => {
  const { log, lines } = recordingLog()
  const marks = new CallOutputMarks()
  const mark = (what: string): string => `\x1e${marks.token} ${what}\n`
  let sent = 'call-1'
  const stderr = new WorkerStderr(log, (marked) => ({ worker: 1, workerPid: 2, requestId: marked === undefined ? sent : `call-${marked}`, task: 't' }), () => false, undefined, undefined, marks)
  stderr.write('ERROR raw: no newline')
  await eventually(() => lines.length === 1, 'the unended line')
  t.match(lines[0], { level: 'error', msg: 'ERROR raw: no newline', fields: { requestId: 'call-1' } }, 'at its level, under the call that wrote it')
  t.notOk('continued' in lines[0].fields)
  stderr.write(' and its rest\nthe next line\n')
  t.same(lines.slice(1).map(({ level, msg, fields }) => [level, msg, fields.continued]), [['error', ' and its rest', true], ['info', 'the next line', undefined]], 'its rest, when it comes, is its continuation')
  // Unended, then the next call's mark: the mark ends it, and the next call's lines are their own.
  stderr.write('half a line')
  await eventually(() => lines.length === 4, 'the second unended line')
  sent = 'call-2'
  stderr.write(`${mark('call 2')}printed by call 2\n${mark('end')}`)
  t.same(lines.slice(3).map(({ msg, fields }) => [msg, fields.requestId, fields.continued]), [['half a line', 'call-1', undefined], ['printed by call 2', 'call-2', undefined]])
  // A mark on its way (cut by the pipe) is not logged as text after the wait.
  stderr.write(`\x1e${marks.token} ca`)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  stderr.write('ll 3\nprinted by call 3\n')
  t.same(lines.slice(5).map(({ msg, fields }) => [msg, fields.requestId]), [['printed by call 3', 'call-3']])
})

t.test('a mark without the worker\'s token, or not a mark after it, is a line like any other', async (t) => {
  const { log, lines } = recordingLog()
  const marks = new CallOutputMarks()
  const stderr = new WorkerStderr(log, (marked) => ({ worker: 1, workerPid: 2, requestId: marked === undefined ? 'sent' : `call-${marked}`, task: 't' }), () => false, undefined, undefined, marks)
  // A client's text printed by a task cannot know the token.
  const forged = ['\x1e0123456789abcdef call 7', `\x1e${marks.token}x call 7`, `\x1e${marks.token} call seven`, `\x1e${marks.token} call 12345678901`, `\x1e${marks.token} ending`, `\x1e${marks.token} call 7 and more`]
  stderr.write(forged.map((line) => `${line}\n`).join('') + 'after\n')
  t.same(lines.map(({ msg, fields }) => [msg, fields.requestId]), [...forged, 'after'].map((line) => [line, 'sent']))
  t.not(new CallOutputMarks().token, marks.token, 'one token per worker')
  t.match(marks.token, /^[0-9a-f]{16}$/, 'letters and digits, as the worker requires')
})

t.test('a long line still arriving is not logged in pieces that cut a mark in two', async (t) => {
  const { log, lines } = recordingLog()
  const marks = new CallOutputMarks()
  const stderr = new WorkerStderr(log, (marked) => ({ worker: 1, workerPid: 2, requestId: marked === undefined ? 'sent' : `call-${marked}`, task: 't' }), () => false, undefined, undefined, marks)
  // Output the runtime cannot see (os.write) that did not end its line, then the mark a print
  // opens its call's output with; a read of the pipe ends inside the mark, past a piece's bound.
  const mark = `\x1e${marks.token} call 5\n`
  for (const size of [15 * 1024 - 3, 16_380, 40_000]) {
    lines.length = 0
    const first = 'A'.repeat(size) + mark.slice(0, 10)
    stderr.write(first)
    stderr.write(`${mark.slice(10)}hello\n\x1e${marks.token} end\n`)
    t.equal(lines.map((l) => l.msg).join(''), `${'A'.repeat(size)}hello`, `${size}: nothing of the mark is logged`)
    t.same(lines.at(-1), { level: 'info', msg: 'hello', fields: { worker: 1, workerPid: 2, requestId: 'call-5', task: 't', stream: 'stderr' } }, `${size}: the mark is followed`)
  }
})
