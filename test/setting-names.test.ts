// Misspelt settings: which variables set look like one, and the list of settings itself
// against what config.ts reads and what README documents.

import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfig } from '../src/config.js'
import { SETTING_NAMES, lookalikeMessage, lookalikeSettings } from '../src/setting-names.js'
import { ROOT } from './helpers/server.js'

const set = (...names: string[]): Record<string, string> => Object.fromEntries(names.map((name) => [name, '1']))

t.test('a mistyped setting is found, with what it may have meant', async (t) => {
  t.same(lookalikeSettings(set('POOLSIZE', 'pool_size', 'LOGLEVEL', 'BODY_LIMIT', 'TASK_TIMEOUT', 'QUEUE_TIMOUT_MS', 'MAX_CONECTIONS')), [
    { name: 'POOLSIZE', meant: ['POOL_SIZE'] },
    { name: 'pool_size', meant: ['POOL_SIZE'] },
    { name: 'LOGLEVEL', meant: ['LOG_LEVEL'] },
    { name: 'BODY_LIMIT', meant: ['BODY_LIMIT_BYTES'] },
    { name: 'TASK_TIMEOUT', meant: ['TASK_TIMEOUT_MS', 'TASK_TIMEOUTS'] },
    { name: 'QUEUE_TIMOUT_MS', meant: ['QUEUE_TIMEOUT_MS'] },
    { name: 'MAX_CONECTIONS', meant: ['MAX_CONNECTIONS'] }
  ])
  t.equal(lookalikeMessage({ name: 'TASK_TIMEOUT', meant: ['TASK_TIMEOUT_MS', 'TASK_TIMEOUTS'] }),
    'TASK_TIMEOUT is not a pyfleet setting, and is ignored: did you mean TASK_TIMEOUT_MS or TASK_TIMEOUTS?')
})

t.test('the variables a shell, npm, a container or Kubernetes set are not taken for typos', async (t) => {
  const ordinary = set('PATH', 'HOME', 'HOSTNAME', 'PWD', 'OLDPWD', 'SHLVL', 'TERM', 'LANG', 'USER', 'TZ', 'NODE', 'NODE_ENV', 'NODE_OPTIONS',
    'PYTHONHOME', 'PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING', 'INIT_CWD', 'npm_config_loglevel', 'npm_package_name',
    'npm_lifecycle_event', 'PORT0', 'PORT1', 'PORTS', 'HOSTS', 'WORKER', 'PYFLEET_PORT', 'PYFLEET_SERVICE_HOST', 'PYFLEET_SERVICE_PORT', 'KUBERNETES_PORT', 'KUBERNETES_SERVICE_HOST', 'CI',
    ...SETTING_NAMES)
  t.same(lookalikeSettings(ordinary), [])
})

t.test('loadConfig carries the lookalikes for the start-up warning', async (t) => {
  t.same(loadConfig(set('POOLSIZE')).lookalikes, [{ name: 'POOLSIZE', meant: ['POOL_SIZE'] }])
  t.same(loadConfig({}).lookalikes, [])
})

t.test('the settings are exactly those config.ts reads and README documents', async (t) => {
  // What loadConfig reads, however it reads it: every variable it asks the environment for.
  const read = new Set<string>()
  loadConfig(new Proxy({}, { get: (_target, name) => { if (typeof name === 'string') read.add(name) } }))
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 5))
  const documented = new Set([...section.matchAll(/^\| `([A-Z_]+)`(?: \/ `([A-Z_]+)`)? \|/gm)].flatMap((m) => [m[1], m[2]]).filter((name) => name !== undefined))
  t.same([...read].filter((name) => !SETTING_NAMES.includes(name)), [], 'every variable config.ts reads is a setting: add a new one to SETTING_NAMES in src/setting-names.ts')
  t.same(SETTING_NAMES.filter((name) => !read.has(name) && name !== 'PYTHONPATH'), [], 'and every setting is read (PYTHONPATH, by the pool)')
  t.same([...SETTING_NAMES].sort(), [...documented].sort(), 'and README\'s Configuration table lists them all, and no other: a setting needs a row there (and in docs/configuration.md)')
})
