// The command line and environment the workers start with, from the settings.
// (That the runtime understands each option is the e2e tests' business: every flag here
// changes what a real worker does in test/e2e.)

import t from 'tap'
import { loadConfig } from '../src/config.js'
import { workerCommand } from '../src/worker-command.js'
import { WORKERS_DIR } from '../src/project-paths.js'

const option = (args: readonly string[], name: string): string | undefined => {
  const at = args.indexOf(name)
  return at < 0 ? undefined : args[at + 1]
}

t.test('defaults: the runtime as a module, the frame limit, the server\'s pid and the default RSS limit; no optional flag', async (t) => {
  const config = loadConfig({})
  const { args, env } = workerCommand(config, { serverPid: 4242 })
  t.same(args.slice(0, 2), ['-m', 'pyfleet'])
  t.equal(option(args, '--max-frame-bytes'), String(config.maxFrameBytes))
  t.equal(option(args, '--parent-pid'), '4242', 'PR_SET_PDEATHSIG is checked against this pid')
  t.equal(option(args, '--max-rss-bytes'), String(config.maxWorkerRssMb * 1024 * 1024), 'MAX_WORKER_RSS_MB\'s default, in bytes')
  for (const flag of ['--strict', '--sched-batch', '--diag', '--module']) t.notOk(args.includes(flag), `no ${flag}`)
  t.equal(env.PYTHONPATH, WORKERS_DIR, 'the runtime alone on PYTHONPATH')
  t.equal(env.PYTHONUNBUFFERED, '1', 'a task\'s prints reach the log as they happen')
})

t.test('MAX_WORKER_RSS_MB=0: no limit, so the workers are not told one', async (t) => {
  t.notOk(workerCommand(loadConfig({ MAX_WORKER_RSS_MB: '0' })).args.includes('--max-rss-bytes'))
})

t.test('each setting becomes its option, and TASK_MODULES one --module each, in order', async (t) => {
  const config = loadConfig({ MAX_WORKER_RSS_MB: '300', WORKER_SCHED_BATCH: '1', DIAG_TASKS: '1', TASK_MODULES: 'acme.tasks, billing.jobs' })
  const { args } = workerCommand(config, { strict: true })
  t.equal(option(args, '--max-rss-bytes'), String(300 * 1024 * 1024), 'megabytes become bytes')
  t.ok(args.includes('--strict'), '--check\'s workers are strict')
  t.ok(args.includes('--sched-batch'))
  t.ok(args.includes('--diag'))
  t.same(args.flatMap((arg, at) => args[at - 1] === '--module' ? [arg] : []), ['acme.tasks', 'billing.jobs'])
})

t.test('the user\'s PYTHONPATH comes after the runtime\'s, and the server\'s secrets stay out', async (t) => {
  const { env } = workerCommand(loadConfig({ PYTHONPATH: '/srv/tasks:/opt/lib', ADMIN_TOKEN: 'a-long-enough-admin-token-1234', HOME: '/home/app' }))
  t.equal(env.PYTHONPATH, `${WORKERS_DIR}:/srv/tasks:/opt/lib`, 'pyfleet\'s own package cannot be shadowed by a user\'s module of that name')
  t.equal(env.ADMIN_TOKEN, undefined, 'a task cannot read the admin token')
  t.equal(env.HOME, '/home/app', 'the rest of the environment is passed on')
})
