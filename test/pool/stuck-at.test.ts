// Where a worker stuck at start-up is, from the stack dump it writes on SIGUSR1.

import t from 'tap'
import { StuckAt } from '../../src/pool/stuck-at.js'

function read (dump: string): string | undefined {
  const reader = new StuckAt()
  for (const line of dump.split('\n')) {
    const where = reader.read(line)
    if (where !== undefined) return where
  }
  return undefined
}

const MAIN_BOTTOM = [
  '  File "<frozen importlib._bootstrap>", line 1206 in _gcd_import',
  '  File "/usr/lib/python3.11/importlib/__init__.py", line 126 in import_module',
  '  File "/app/workers/pyfleet/__main__.py", line 264 in main',
  '  File "/app/workers/pyfleet/__main__.py", line 344 in <module>',
  '  File "<frozen runpy>", line 88 in _run_code',
  '  File "<frozen runpy>", line 198 in _run_module_as_main'
]

t.test('the main thread\'s innermost module frame: the import the start is stuck in', async (t) => {
  t.equal(read(['Current thread 0x00007f (most recent call first):', '  File "/srv/tasks/model.py", line 9 in <module>', ...MAIN_BOTTOM].join('\n')), 'still importing /srv/tasks/model.py, line 9')
})

t.test('stuck in a library the task module imports: the task module\'s line first, the innermost after it', async (t) => {
  const dump = [
    'Current thread 0x00007f (most recent call first):',
    '  File "/usr/lib/python3/dist-packages/numpy/core/overrides.py", line 6 in <module>',
    '  File "<frozen importlib._bootstrap>", line 241 in _call_with_frames_removed',
    '  File "/usr/lib/python3/dist-packages/numpy/core/multiarray.py", line 10 in <module>',
    '  File "/usr/lib/python3/dist-packages/numpy/__init__.py", line 141 in <module>',
    '  File "<frozen importlib._bootstrap>", line 1178 in _find_and_load',
    '  File "/srv/tasks/frames.py", line 8 in <module>',
    ...MAIN_BOTTOM
  ].join('\n')
  t.equal(read(dump), 'still importing /srv/tasks/frames.py, line 8 (deepest: /usr/lib/python3/dist-packages/numpy/core/overrides.py, line 6)')
})

t.test('a stack deeper than the dump (faulthandler writes 100 frames, then "..."): the innermost import, said as such', async (t) => {
  const deep = Array.from({ length: 50 }, (_, i) => [`  File "/srv/tasks/chain${i}.py", line 1 in <module>`, '  File "<frozen importlib._bootstrap>", line 241 in _call_with_frames_removed'])
  const dump = ['Current thread 0x00007f (most recent call first):', '  File "/srv/tasks/chain50.py", line 3 in <module>', ...deep.flat().slice(0, 99), '  ...'].join('\n')
  t.equal(read(dump), 'still importing /srv/tasks/chain50.py, line 3 (the stack is deeper than the dump: the task module\'s own line is not in it)')
  // Another thread's stack cut short says nothing: the main thread's is still to come.
  const otherFirst = ['Thread 0x00007e (most recent call first):', '  File "/srv/tasks/bg.py", line 2 in <module>', '  ...', '', 'Current thread 0x00007f (most recent call first):', '  File "/srv/tasks/model.py", line 9 in <module>', ...MAIN_BOTTOM].join('\n')
  t.equal(read(otherFirst), 'still importing /srv/tasks/model.py, line 9')
})

t.test('a thread a task module started, importing too, is not taken for the main one (it comes first in the dump)', async (t) => {
  const dump = [
    'Thread 0x00007e (most recent call first):',
    '  File "/srv/tasks/bgslow.py", line 2 in <module>',
    '  File "<frozen importlib._bootstrap>", line 1178 in _find_and_load',
    '  File "/srv/tasks/threadmod.py", line 5 in load',
    '  File "/usr/lib/python3.11/threading.py", line 975 in run',
    '  File "/usr/lib/python3.11/threading.py", line 995 in _bootstrap',
    '',
    'Current thread 0x00007f (most recent call first):',
    '  File "/srv/tasks/threadmod.py", line 10 in <module>',
    ...MAIN_BOTTOM
  ].join('\n')
  t.equal(read(dump), 'still importing /srv/tasks/threadmod.py, line 10')
})

t.test('stuck past the imports, in the runtime itself: where, not "importing" its own __main__', async (t) => {
  const dump = ['Current thread 0x00007f (most recent call first):', '  File "/app/workers/pyfleet/stdlib_shadows.py", line 40 in found_in_pythonpath', '  File "/app/workers/pyfleet/__main__.py", line 190 in main', '  File "/app/workers/pyfleet/__main__.py", line 344 in <module>', '  File "<frozen runpy>", line 88 in _run_code', '  File "<frozen runpy>", line 198 in _run_module_as_main'].join('\n')
  t.equal(read(dump), 'at /app/workers/pyfleet/stdlib_shadows.py, line 40 in found_in_pythonpath')
})

t.test('nothing until the main thread\'s stack has come whole', async (t) => {
  t.equal(read('Current thread 0x00007f (most recent call first):\n  File "/srv/tasks/model.py", line 9 in <module>'), undefined)
})
