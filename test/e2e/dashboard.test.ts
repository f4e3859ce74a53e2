// The Grafana dashboard (deploy/grafana-dashboard.json) against a real Prometheus
// scraping a real server: every query parses, names only metrics pyfleet exposes,
// and finds series, so that a renamed metric or a broken query cannot ship.

import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hasPrometheus } from '../helpers/promtool.js'
import { ROOT, callTask, freePort, startServer, waitFor } from '../helpers/server.js'

interface Target { expr: string, legendFormat: string }
interface Panel { type: string, title: string, id: number, datasource?: { uid: string }, targets?: Target[] }

const dashboard = JSON.parse(await readFile(join(ROOT, 'deploy', 'grafana-dashboard.json'), 'utf8')) as { uid: string, panels: Panel[], templating: { list: Array<{ name: string }> } }
const graphs = dashboard.panels.filter((panel) => panel.type !== 'row')

/** The query Grafana sends for a target: its variables given the values they take on one job, all instances. */
function asSent (expr: string): string {
  return expr.replaceAll('$__rate_interval', '15s').replaceAll('$job', 'pyfleet').replaceAll('$instance', '.*')
}

t.test('the dashboard is well formed: unique ids, one data source variable, job and instance variables used by every query', async (t) => {
  t.equal(dashboard.uid, 'pyfleet')
  t.same(dashboard.templating.list.map((variable) => variable.name), ['datasource', 'job', 'instance'])
  const ids = dashboard.panels.map((panel) => panel.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  t.ok(graphs.length >= 12, `${graphs.length} panels`)
  for (const panel of graphs) {
    t.equal(panel.datasource?.uid, '${datasource}', `${panel.title}: the chosen data source`)
    t.ok((panel.targets ?? []).length > 0, `${panel.title}: has queries`)
    for (const { expr } of panel.targets ?? []) {
      const selectors = [...expr.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]).filter((inside) => !inside.includes('{{'))
      for (const selector of selectors) t.match(selector, /job=~"\$job", instance=~"\$instance"/, `${panel.title}: every selector is scoped to the chosen job and instances`)
      // GET /api/tasks/{name} (a task's description) shares the route template: task requests are the POSTs.
      for (const selector of selectors.filter((inside) => inside.includes('route="/api/tasks/:name"'))) t.match(selector, /method="POST"/, `${panel.title}: task requests are POST /api/tasks/:name`)
    }
  }
})

t.test('every query runs on a real Prometheus scraping a real server, and finds series', async (t) => {
  if (!(await hasPrometheus(t))) return
  const server = await startServer(t, { POOL_SIZE: '2' })
  const dir = await mkdtemp(join(tmpdir(), 'pyfleet-dashboard-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    'scrape_configs:',
    '  - job_name: pyfleet',
    `    static_configs: [{ targets: ['${new URL(server.url).host}'] }]`,
    ''
  ].join('\n'))
  const port = await freePort()
  const prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  prometheus.stderr.setEncoding('utf8').on('data', (text: string) => { log = (log + text).slice(-4000) })
  const exited = new Promise((resolve) => prometheus.once('exit', resolve))
  t.teardown(async () => { prometheus.kill('SIGKILL'); await exited })
  const query = async (promql: string): Promise<{ status: string, data?: { result: unknown[] }, error?: string }> =>
    await (await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`)).json() as { status: string, data?: { result: unknown[] }, error?: string }

  const scrapes = async (): Promise<number> => {
    const result = await query('count_over_time(up{job="pyfleet"}[1m])').catch(() => undefined)
    return Number((result?.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0)
  }
  // Before any call: a share of nothing is 0, not NaN (a gap, or "NaN" in a legend).
  await waitFor(async () => await scrapes() >= 3, 60_000, `Prometheus to scrape the server (its log: ${log})`)
  const shares = graphs.filter((panel) => (panel as { fieldConfig?: { defaults?: { unit?: string } } }).fieldConfig?.defaults?.unit === 'percentunit')
  t.ok(shares.length >= 2, 'the ratio panels')
  for (const panel of shares) {
    for (const target of panel.targets ?? []) {
      const answer = await query(asSent(target.expr))
      t.same(answer.data?.result.map((series) => (series as { value: [number, string] }).value[1]), ['0'], `${panel.title}: 0 without traffic`)
    }
  }
  // Traffic while it scrapes, so that every rate has something to count.
  const before = await scrapes()
  await waitFor(async () => {
    await Promise.all([callTask(server.url, 'echo', { a: 1 }), callTask(server.url, 'stats.describe', { values: 'no' }), fetch(`${server.url}/nope`)])
    return await scrapes() >= before + 4
  }, 60_000, `Prometheus to scrape the server while calls run (its log: ${log})`)

  for (const panel of graphs) {
    for (const target of panel.targets ?? []) {
      const answer = await query(asSent(target.expr))
      t.equal(answer.status, 'success', `${panel.title} (${target.legendFormat}): ${answer.error ?? 'runs'}`)
      // A panel that shows only what happened (restarts, `> 0`) may rightly be empty here: its series, unfiltered, are not.
      const series = await query(asSent(target.expr.replace(/ > 0$/, '')))
      t.ok((series.data?.result.length ?? 0) > 0, `${panel.title} (${target.legendFormat}): finds series`)
    }
  }
})
