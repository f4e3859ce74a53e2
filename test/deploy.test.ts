// The example files in deploy/ that can be checked here: Prometheus's config and
// the alerting rules (syntax, their unit tests, and that every metric they name
// exists in a real scrape, so that a renamed metric cannot silence an alert), the
// systemd unit, and the Kubernetes manifest (its API schemas, and its ports, probes
// and grace against the settings it gives the server).

import t from 'tap'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseAllDocuments } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1'
import { Service } from 'kubernetes-models/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { loadConfig, shutdownBackstopMs } from '../src/config.js'
import { hasPromtool, promtool } from './helpers/promtool.js'
import { ROOT, startServer } from './helpers/server.js'
import { sizingProblems } from '../src/cgroup-limits.js'

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
  // dist/ is not committed: a checkout after `npm ci` alone has no dist/server.js to run.
  t.match(unit, /^# .*`npm ci && npm run build`/m, 'the install notes build dist/')
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

/** deploy/kubernetes.yaml's documents, by kind. */
async function kubernetesManifest (): Promise<Map<string, any>> {
  const text = await readFile(join(ROOT, 'deploy/kubernetes.yaml'), 'utf8')
  return new Map(parseAllDocuments(text).map((doc) => doc.toJS()).map((doc) => [doc.kind, doc]))
}

t.test('the Kubernetes manifest: every object valid against the API schemas', async (t) => {
  const models: Record<string, new (data: any) => { validate: () => void }> = { Deployment, Service, PodDisruptionBudget, NetworkPolicy }
  const manifest = await kubernetesManifest()
  t.same([...manifest.keys()].sort(), Object.keys(models).sort())
  for (const [kind, doc] of manifest) t.doesNotThrow(() => { new models[kind](doc).validate() }, `${kind} is valid`)
})

t.test('the Kubernetes manifest agrees with itself and with the server\'s settings', async (t) => {
  const manifest = await kubernetesManifest()
  const deployment = manifest.get('Deployment')
  const pod = deployment.spec.template
  const container = pod.spec.containers[0]
  const env: Record<string, string> = Object.fromEntries(container.env.filter((e: any) => e.value !== undefined).map((e: any) => [e.name, e.value]))
  const config = loadConfig(env)
  const ports = new Map<string, number>(container.ports.map((p: any) => [p.name, p.containerPort]))
  t.equal(ports.get('http'), config.port, 'the http port is PORT')
  t.equal(ports.get('probes'), config.probePort, 'the probes port is PROBE_PORT')
  t.equal(Number(pod.metadata.annotations['prometheus.io/port']), config.probePort, 'Prometheus scrapes PROBE_PORT')
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) t.equal(container[probe].httpGet.port, 'probes', `${probe} uses PROBE_PORT`)
  // Each selector picks the pods, and every named port exists on the container.
  for (const kind of ['Service', 'PodDisruptionBudget', 'NetworkPolicy']) {
    const spec = manifest.get(kind).spec
    t.same(spec.selector?.matchLabels ?? spec.selector ?? spec.podSelector.matchLabels, pod.metadata.labels, `${kind} selects the pods`)
  }
  t.same(deployment.spec.selector.matchLabels, pod.metadata.labels)
  t.same(pod.spec.topologySpreadConstraints.map((c: any) => c.labelSelector.matchLabels), [pod.metadata.labels], 'replicas spread over nodes by the pods\' own labels')
  t.ok(ports.has(manifest.get('Service').spec.ports[0].targetPort), 'the Service targets a named port')
  const policy = manifest.get('NetworkPolicy').spec.ingress
  t.same(policy.map((rule: any) => rule.ports.map((p: any) => p.port)), [['http'], ['probes']], 'clients reach http; probes only from where the rule says')
  t.ok(policy[0].from === undefined && policy[1].from.length > 0)
  // A rollout never cuts a call running at the SIGTERM: the drain lasts as long as a call may run.
  t.ok(config.shutdownGraceMs >= config.taskTimeoutMs, `SHUTDOWN_GRACE_MS ${config.shutdownGraceMs} >= TASK_TIMEOUT_MS ${config.taskTimeoutMs}`)
  // The lame duck is the server's own, not a preStop sleep that holds the SIGTERM back: only the
  // server can tell the clients on its keep-alive connections to reconnect elsewhere.
  t.equal(container.lifecycle?.preStop, undefined, 'no preStop sleep')
  t.ok(config.shutdownDelayMs >= 5000, `SHUTDOWN_DELAY_MS ${config.shutdownDelayMs} ms: kube-proxy and ingresses notice a pod's removal within it`)
  // The drain fits the grace: the delay, then the server's own backstop, before the SIGKILL.
  t.ok(config.shutdownDelayMs + shutdownBackstopMs(config) < pod.spec.terminationGracePeriodSeconds * 1000,
    `SHUTDOWN_DELAY_MS ${config.shutdownDelayMs} ms + backstop ${shutdownBackstopMs(config)} ms < terminationGracePeriodSeconds ${pod.spec.terminationGracePeriodSeconds}`)
  // The pool fits the container's limits: the server would warn of its own manifest otherwise.
  const limits = container.resources.limits
  const memory = /^(\d+)Mi$/.exec(limits.memory)
  t.ok(memory !== null, `limits.memory in Mi: ${limits.memory}`)
  const cpus = /^\d+m$/.test(limits.cpu) ? parseInt(limits.cpu) / 1000 : Number(limits.cpu)
  t.ok(Number.isFinite(cpus) && cpus > 0, `limits.cpu read: ${limits.cpu}`)
  t.same(sizingProblems(config, { cpus, memoryBytes: Number(memory?.[1]) * 1024 * 1024 }), [], 'POOL_SIZE and MAX_WORKER_RSS_MB fit limits.cpu and limits.memory')
  // Node hands out every call: with the limit at POOL_SIZE it was throttled whenever all workers were busy.
  t.ok(cpus >= config.poolSize + 1, `limits.cpu ${limits.cpu} leaves Node a core beside POOL_SIZE=${config.poolSize} busy workers`)
})

t.test('deploy/compose.yaml: the drain lasts as long as a call may run, and fits stop_grace_period', async (t) => {
  const compose = parseAllDocuments(await readFile(join(ROOT, 'deploy/compose.yaml'), 'utf8'))[0].toJS()
  const service = compose.services.pyfleet
  // Only the settings of the stop: others hold ${...} substitutions Compose fills in.
  const env = Object.fromEntries(Object.entries(service.environment as Record<string, string>).filter(([name]) => /^(SHUTDOWN_|WORKER_STOP_|TASK_TIMEOUT_MS$)/.test(name)))
  const config = loadConfig(env)
  t.ok(config.shutdownGraceMs >= config.taskTimeoutMs, `SHUTDOWN_GRACE_MS ${config.shutdownGraceMs} >= TASK_TIMEOUT_MS ${config.taskTimeoutMs}`)
  const stopGraceMs = Number(/^(\d+)s$/.exec(service.stop_grace_period)?.[1]) * 1000
  t.ok(config.shutdownDelayMs + shutdownBackstopMs(config) < stopGraceMs, `SHUTDOWN_DELAY_MS ${config.shutdownDelayMs} ms + backstop ${shutdownBackstopMs(config)} ms < stop_grace_period ${service.stop_grace_period}`)
})

t.test('the version is one: package.json\'s, the image\'s label, the manifest\'s image tag', async (t) => {
  const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  t.equal(/org\.opencontainers\.image\.version="([^"]+)"/.exec(dockerfile)?.[1], version, 'the Dockerfile\'s org.opencontainers.image.version label')
  const manifest = await kubernetesManifest()
  const image: string = manifest.get('Deployment').spec.template.spec.containers[0].image
  t.equal(image.slice(image.lastIndexOf(':') + 1), version, 'deploy/kubernetes.yaml\'s image tag')
})

t.test('the image\'s HEALTHCHECK reads the settings as the server does: blank ones are unset', async (t) => {
  // Run as the image runs it (bash -c, its JSON-array CMD), against a real server on PORT.
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const command = JSON.parse(/^HEALTHCHECK [^\n]*\\\n\s*CMD (\[.*\])$/m.exec(dockerfile)?.[1] ?? '[]') as string[]
  t.equal(command.slice(0, 2).join(' '), 'bash -c')
  const server = await startServer(t, { POOL_SIZE: '1' })
  const port = new URL(server.url).port
  const check = async (env: Record<string, string>): Promise<number> => {
    try {
      await promisify(execFile)(command[0], command.slice(1), { env: { PATH: process.env.PATH, ...env }, timeout: 10_000 })
      return 0
    } catch (error) {
      return (error as { code?: number }).code ?? -1
    }
  }
  t.equal(await check({ PORT: port }), 0, 'healthy on PORT')
  // The server takes a blank value for unset (docs/configuration.md): so does the check (it connected to no port).
  t.equal(await check({ PORT: ` ${port} `, PROBE_PORT: ' ', HOST: ' 0.0.0.0 ' }), 0, 'blank PROBE_PORT, PORT and HOST with spaces')
  t.equal(await check({ PORT: port, PROBE_PORT: '1' }), 1, 'a PROBE_PORT nothing answers on fails it')
})

t.test('GitHub\'s CI runs .ci/run in the image the Dockerfile builds on, with the container step skipped out loud', async (t) => {
  const workflow = parseAllDocuments(await readFile(join(ROOT, '.github', 'workflows', 'ci.yml'), 'utf8'))[0].toJS() as { jobs: { test: { container: string, env: Record<string, string>, steps: Array<{ run?: string }> } } }
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  t.equal(workflow.jobs.test.container, /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1], 'a bare Debian with the Node of the image')
  t.same(workflow.jobs.test.env, { CI: 'true', PYFLEET_SKIP_CONTAINER: '1' })
  t.same(workflow.jobs.test.steps.map((step) => step.run).filter((run) => run !== undefined), ['bash .ci/run'], 'the same script as every other CI run')
})

t.test('GitHub runs the soak weekly in the same image, with the script package.json names', async (t) => {
  const workflow = parseAllDocuments(await readFile(join(ROOT, '.github', 'workflows', 'soak.yml'), 'utf8'))[0].toJS() as { on: { schedule: Array<{ cron: string }> }, jobs: { soak: { container: string, steps: Array<{ run?: string }> } } }
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const scripts = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).scripts as Record<string, string>
  t.equal(workflow.jobs.soak.container, /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1], 'a bare Debian with the Node of the image')
  t.equal(workflow.on.schedule.length, 1, 'on a schedule')
  const runs = workflow.jobs.soak.steps.map((step) => step.run).filter((run) => run !== undefined)
  t.match(runs, [/^npm ci\b/, /^npm run bench:soak\b/], 'installs, then soaks')
  t.match(scripts['bench:soak'], /node bench\/soak\.mjs$/, 'a script package.json has')
})
