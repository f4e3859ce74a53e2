// WorkerProcess's RSS readings on a real Python process: through the status file it
// keeps open, a reading sees the process grow, and the file is closed when it exits.

import t from 'tap'
import { readdir } from 'node:fs/promises'
import { WorkerProcess } from '../../src/pool/worker-process.js'
import { waitFor } from '../helpers/server.js'

// Grows by ~80 MB when a line arrives on stdin, says so, and exits at EOF.
const SCRIPT = 'import sys\nsys.stdout.write("ready\\n"); sys.stdout.flush()\nsys.stdin.readline()\nheld = bytearray(80 * 1024 * 1024)\nsys.stdout.write("grown\\n"); sys.stdout.flush()\nsys.stdin.read()\n'

const openFiles = async (): Promise<number> => (await readdir('/proc/self/fd')).length

t.test('readRss follows the process as it grows, and lets go of its status file when the process exits', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  const filesBefore = await openFiles()
  let out = ''
  let exited = false
  const worker = new WorkerProcess({ python: '/usr/bin/python3', args: ['-c', SCRIPT], env: { PATH: process.env.PATH }, cwd: process.cwd() }, {
    stdout: (chunk) => { out += String(chunk) },
    stdoutEnd: () => {},
    stderr: () => {},
    exit: () => { exited = true },
    spawnError: (error) => { t.fail(error.message) }
  })
  await waitFor(() => out.includes('ready'), 10_000, 'the process to start')
  const before = await worker.readRss()
  t.ok(before !== undefined && before > 1_000_000, `a first reading (${before ?? 'none'} bytes)`)
  worker.write(Buffer.from('grow\n'))
  await waitFor(() => out.includes('grown'), 10_000, 'the process to grow')
  const after = await worker.readRss()
  t.ok(after !== undefined && before !== undefined && after - before > 60 * 1024 * 1024, `a later reading through the same file sees it grow (${before ?? '?'} -> ${after ?? '?'} bytes)`)

  worker.endInput()
  await waitFor(() => exited, 10_000, 'the process to exit')
  t.equal(await worker.readRss(), undefined, 'no reading once it has exited')
  await waitFor(async () => await openFiles() <= filesBefore, 5000, 'its pipes and status file to be closed')
  t.pass('no file left open')
})

t.test('a process the stack-dump signal ends, before the runtime handles it, is said to be so, not "killed by SIGUSR1"', async (t) => {
  let exit: [number | null, NodeJS.Signals | null] | undefined
  const worker = new WorkerProcess({ python: '/usr/bin/python3', args: ['-c', 'import sys, time\nsys.stdout.write("up\\n"); sys.stdout.flush()\ntime.sleep(30)\n'], env: { PATH: process.env.PATH }, cwd: process.cwd() }, {
    stdout: () => {},
    stdoutEnd: () => {},
    stderr: () => {},
    exit: (code, signal) => { exit = [code, signal] },
    spawnError: (error) => { t.fail(error.message) }
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  worker.signalWorker('SIGUSR1')
  await waitFor(() => exit !== undefined, 10_000, 'the process to end')
  t.same(exit, [null, 'SIGUSR1'])
  t.match(worker.describeExit(null, 'SIGUSR1'), /^was ended by the SIGUSR1 pyfleet sent for its stacks, before it had installed the handler/)
  t.equal(worker.describeExit(null, 'SIGTERM'), 'was killed by SIGTERM')
})
