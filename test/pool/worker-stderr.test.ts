// WorkerStderr: a worker's stderr as log lines, at the level each line names.

import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { WorkerStderr } from '../../src/pool/worker-stderr.js'

function recordingLog (): { log: FastifyBaseLogger, lines: Array<{ level: string, msg: string }> } {
  const lines: Array<{ level: string, msg: string }> = []
  const at = (level: string) => (_fields: unknown, msg: string) => { lines.push({ level, msg }) }
  const log = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as FastifyBaseLogger
  return { log, lines }
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
  t.same(lines, [
    { level: 'warn', msg: 'WARNING a: careful' },
    { level: 'error', msg: 'ERROR b: broken' },
    { level: 'info', msg: 'plain print' },
    { level: 'error', msg: 'pyfleet-fatal: task module \'x\' could not be imported' },
    { level: 'info', msg: 'partial' }
  ])
  t.equal(stderr.fatalLine, 'task module \'x\' could not be imported')
  t.same(stderr.lastWords, ['WARNING a: careful', 'ERROR b: broken', 'plain print', 'pyfleet-fatal: task module \'x\' could not be imported'], 'kept while starting only')
})
