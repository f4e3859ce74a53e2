// The example files in deploy/ that can be checked here: Prometheus's config and
// the alerting rules (syntax, their unit tests, and that every metric they name
// exists in a real scrape, so that a renamed metric cannot silence an alert).

import t from 'tap'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { hasPromtool, promtool } from './helpers/promtool.js'
import { ROOT, startServer } from './helpers/server.js'

t.test('the Prometheus config loads the alerting rules, and their unit tests pass', async (t) => {
  if (!(await hasPromtool(t))) return
  t.match(await promtool(t, ['check', 'config', 'deploy/prometheus.yml']), /SUCCESS: 1 rule files found/)
  t.match(await promtool(t, ['check', 'rules', 'deploy/alerts.yml']), /SUCCESS: \d+ rules found/)
  t.match(await promtool(t, ['test', 'rules', 'deploy/alerts.test.yml']), /SUCCESS/)
})

t.test('every alert is unit-tested, and every metric an alert reads is one pyfleet exposes', async (t) => {
  const rules = await readFile(join(ROOT, 'deploy/alerts.yml'), 'utf8')
  const tests = await readFile(join(ROOT, 'deploy/alerts.test.yml'), 'utf8')
  const alerts = [...rules.matchAll(/^\s+- alert: (\w+)$/gm)].map((m) => m[1])
  t.ok(alerts.length >= 8, `${alerts.length} alerts`)
  for (const alert of alerts) t.match(tests, new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${alert} is tested firing`)
  const exprs = [...rules.matchAll(/^\s+expr: (?:\|\n)?((?:.+\n)+?)\s+(?:for|labels):/gm)].map((m) => m[1]).join('\n')
  const names = new Set([...exprs.matchAll(/\b(pyworker_\w+|pyfleet_\w+|http_\w+|nodejs_\w+|process_\w+)\b/g)].map((m) => m[1]))
  t.ok(names.size >= 5, `metrics read: ${[...names].join(', ')}`)
  // GET /api/tasks/{name} (a task's description) shares the route template: task requests are the POSTs.
  for (const [selector] of exprs.matchAll(/\{[^}]*route="\/api\/tasks\/:name"[^}]*\}/g)) t.match(selector, /method="POST"/, `${selector}: task requests only`)
  const server = await startServer(t, { POOL_SIZE: '1' })
  const exposed = await (await fetch(`${server.url}/metrics`)).text()
  // A histogram's series (_count, _sum, _bucket) are typed under the histogram's own name.
  for (const name of names) t.match(exposed, new RegExp(`^# TYPE ${name.replace(/_(count|sum|bucket)$/, '')} `, 'm'), `${name} is exposed`)
})

t.test('the systemd unit is one systemd reads without complaint, and stops Node alone', async (t) => {
  const unit = await readFile(join(ROOT, 'deploy/pyfleet.service'), 'utf8')
  // control-group (the default) would SIGTERM the workers too, and their calls would end in 502.
  t.match(unit, /^KillMode=mixed$/m)
  t.match(unit, /^ExecStart=\S*node dist\/server\.js$/m, 'Node itself: npm does not pass SIGHUP on')
  t.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m)
  // A bad setting exits 1 like a crash: without a start limit that systemd reaches, Restart=on-failure
  // would start it every RestartSec for ever (systemd's default window, 10 s, is too short for that).
  const limit = { interval: Number(/^StartLimitIntervalSec=(\d+)$/m.exec(unit)?.[1]), burst: Number(/^StartLimitBurst=(\d+)$/m.exec(unit)?.[1]), restartSec: Number(/^RestartSec=(\d+)$/m.exec(unit)?.[1]) }
  t.ok(limit.burst * limit.restartSec < limit.interval, `${limit.burst} restarts ${limit.restartSec} s apart fall within StartLimitIntervalSec=${limit.interval}: a start loop stops`)
  const verified = await promisify(execFile)('systemd-analyze', ['verify', join(ROOT, 'deploy/pyfleet.service')]).catch((error: NodeJS.ErrnoException & { stderr?: string }) => error)
  if ((verified as NodeJS.ErrnoException).code === 'ENOENT') {
    t.pass('systemd-analyze verify', { skip: 'systemd-analyze is not installed (Debian package "systemd")' })
    return
  }
  t.equal((verified as { stderr?: string }).stderr, '', 'systemd-analyze verify: no unknown key, no bad value')
})
