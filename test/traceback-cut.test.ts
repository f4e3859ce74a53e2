// cutTraceback: a Python traceback cut to fit a log line, its exceptions kept before its frames.

import t from 'tap'
import { cutTraceback } from '../src/traceback-cut.js'

const jsonBytes = (text: string): number => Buffer.byteLength(JSON.stringify(text))

/** `depth` frames, in a group's margin when `margin` is given, as Python prints them. */
function frames (depth: number, margin = ''): string[] {
  return Array.from({ length: depth }, (_, i) => [`${margin}  File "/srv/tasks/shop.py", line ${100 + i}, in step_${i}`, `${margin}    return step_${i + 1}(order, attempt)`]).flat()
}

/** What traceback.format_exception makes of a TaskGroup whose six calls failed 12 frames deep. */
function taskGroupFailure (): string {
  const lines = ['  + Exception Group Traceback (most recent call last):', ...frames(3, '  | '), '  | ExceptionGroup: unhandled errors in a TaskGroup (6 sub-exceptions)']
  const kinds = ['ConnectionError', 'TimeoutError', 'PermissionError']
  for (let i = 0; i < 6; i++) {
    lines.push(`${i === 0 ? '  +-+' : '    +'}---------------- ${i + 1} ----------------`, '    | Traceback (most recent call last):', ...frames(12, '    | '), `    | ${kinds[i % 3]}: shard-${i} refused`, `    | note: shard-${i} was on host-${i}`)
  }
  lines.push('    +------------------------------------')
  return lines.join('\n') + '\n'
}

t.test('a short traceback is kept whole', async (t) => {
  const text = ['Traceback (most recent call last):', ...frames(3), 'ValueError: bad'].join('\n')
  t.equal(cutTraceback(text, 8192, 1024), text)
})

t.test('a TaskGroup\'s failure: every sub-exception, its note, and each one\'s innermost frame are kept', async (t) => {
  const text = taskGroupFailure()
  t.ok(jsonBytes(text) > 8192, `the whole is over the bound (${jsonBytes(text)} bytes)`)
  const kept = cutTraceback(text, 8192, 1024)
  t.ok(jsonBytes(kept) <= 8192, `within the bound: ${jsonBytes(kept)} bytes`)
  t.ok(jsonBytes(kept) > 8192 * 0.75, 'and using most of it')
  for (let i = 0; i < 6; i++) {
    t.match(kept, new RegExp(`\\n {4}\\| \\w+Error: shard-${i} refused\\n {4}\\| note: shard-${i} was on host-${i}\\n`), `sub-exception ${i + 1} and its note`)
    t.match(kept, new RegExp(`---------------- ${i + 1} ----------------\\n {4}\\| Traceback \\(most recent call last\\):\\n`), `its separator and header`)
  }
  const innermost = kept.split('\n').filter((line) => line.includes('in step_11')).length
  t.equal(innermost, 6, 'each sub-exception\'s innermost frame')
  t.match(kept, /ExceptionGroup: unhandled errors in a TaskGroup \(6 sub-exceptions\)/)
  t.match(kept, /\.\.\. \[\d+ lines left out\] \.\.\./, 'says where lines were left out')
})

t.test('a chain: both exceptions and the sentence between them are kept', async (t) => {
  const text = [
    'Traceback (most recent call last):', ...frames(60), 'ConnectionError: the first cause',
    '', 'The above exception was the direct cause of the following exception:', '',
    'Traceback (most recent call last):', ...frames(60), 'RuntimeError: what the task said'
  ].join('\n')
  const kept = cutTraceback(text, 4096, 1024)
  t.ok(jsonBytes(kept) <= 4096)
  t.match(kept, /ConnectionError: the first cause\n\nThe above exception was the direct cause of the following exception:\n\nTraceback \(most recent call last\):\n/)
  t.match(kept, /\n  File "[^"]+", line 159, in step_59\n    return step_60\(order, attempt\)\nConnectionError/, 'the first\'s innermost frame with its source line')
  t.match(kept, /^Traceback \(most recent call last\):\n  File "[^"]+", line 100, in step_0\n/, 'the outermost frame too, where room is left')
  t.match(kept, /RuntimeError: what the task said$/)
})

t.test('hundreds of sub-exceptions: the first ones and the last ones, within the bound', async (t) => {
  const lines = ['  + Exception Group Traceback (most recent call last):', '  | ExceptionGroup: many (300 sub-exceptions)']
  for (let i = 0; i < 300; i++) lines.push(`    +---------------- ${i + 1} ----------------`, `    | ValueError: item ${i}`)
  const kept = cutTraceback(lines.join('\n'), 2048, 1024)
  t.ok(jsonBytes(kept) <= 2048)
  t.match(kept, /ValueError: item 0\n/)
  t.match(kept, /ValueError: item 299\n?/)
  t.notMatch(kept, /ValueError: item 150\n/)
})

t.test('the bound is in bytes of JSON: control characters and CJK count as what they take; long lines are cut', async (t) => {
  for (const char of ['\u0001', '界', '"', 'x']) {
    const text = ['Traceback (most recent call last):', ...frames(50), `ValueError: ${char.repeat(5000)}`].join('\n')
    const kept = cutTraceback(text, 8192, 1024)
    t.ok(jsonBytes(kept) <= 8192, `${JSON.stringify(char)}: ${jsonBytes(kept)} bytes`)
    t.ok(kept.split('\n').every((line) => line.length <= 1024), 'every line at most 1,024 characters')
    t.match(kept, /\nValueError: /, 'the exception\'s line, cut')
  }
  t.ok(jsonBytes(cutTraceback('\n'.repeat(100_000), 1000, 20)) <= 1000, 'many empty lines: bounded')
})

t.test('the exception\'s line is kept first, also when a multi-line message or notes follow it', async (t) => {
  for (const after of [['\u0001'.repeat(1100)], ['second line of the message', 'third'], ['note: added with add_note()']]) {
    const text = ['Traceback (most recent call last):', ...frames(3), `ValueError: ${'\u0001'.repeat(1100)}`, ...after, ''].join('\n')
    const kept = cutTraceback(text, 8192, 1024)
    t.ok(jsonBytes(kept) <= 8192)
    t.match(kept, /\nValueError: \u0001+\.\.\.\n/, `${JSON.stringify(after[0].slice(0, 20))}: the exception's line`)
  }
})
