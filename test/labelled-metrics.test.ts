import t from 'tap'
import { Counter, Histogram, Registry } from 'prom-client'
import { LabelledCounter, LabelledHistogram } from '../src/plugins/labelled-metrics.js'

/** The exposition as a set of `name{sorted labels} value` lines, so label order does not matter. */
async function samples (registry: Registry): Promise<string[]> {
  const text = await registry.metrics()
  return text.split('\n').filter((line) => line !== '').map((line) => {
    const match = /^([^{ ]+)(?:\{(.*)\})? (.*)$/.exec(line)
    if (match === null || line.startsWith('#')) return line
    const labels = (match[2] ?? '').split(/,(?=[a-z_]+=")/).filter(Boolean).sort().join(',')
    return `${match[1]}{${labels}} ${match[3]}`
  }).sort()
}

const BUCKETS = [0.001, 0.01, 0.1, 1]
// Below, on and above bucket bounds, and past the last one.
const VALUES: Array<[string, string, number]> = [
  ['echo', 'ok', 0.0005], ['echo', 'ok', 0.001], ['echo', 'ok', 0.05], ['echo', 'timeout', 30],
  ['csv.profile', 'ok', 0.1], ['csv.profile', 'ok', 0.100001], ['echo', 'ok', 0]
]

t.test('a histogram exposes exactly what prom-client\'s Histogram would', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const options = { name: 'calls_seconds', help: 'Call time', labelNames: ['task', 'outcome'] as const, buckets: BUCKETS }
  const fast = new LabelledHistogram({ ...options, registers: [ours] })
  const reference = new Histogram({ ...options, labelNames: [...options.labelNames], registers: [theirs] })
  for (const [task, outcome, value] of VALUES) {
    fast.labels(task, outcome).observe(value)
    reference.labels(task, outcome).observe(value)
  }
  // A series declared but never observed is exposed at zero by both.
  fast.labels('idle', 'ok')
  reference.zero({ task: 'idle', outcome: 'ok' })
  t.same(await samples(ours), await samples(theirs))
  t.match(await ours.metrics(), /calls_seconds_bucket\{task="echo",outcome="ok",le="0\.001"\} 3\n/)
})

t.test('a counter exposes exactly what prom-client\'s Counter would, and children are reused', async (t) => {
  const ours = new Registry()
  const theirs = new Registry()
  const fast = new LabelledCounter({ name: 'calls_total', help: 'Calls', labelNames: ['task', 'outcome'], registers: [ours] })
  const reference = new Counter({ name: 'calls_total', help: 'Calls', labelNames: ['task', 'outcome'], registers: [theirs] })
  for (const [task, outcome] of VALUES) {
    fast.labels(task, outcome).inc()
    reference.labels(task, outcome).inc()
  }
  fast.labels('echo', 'ok').inc(5)
  reference.labels('echo', 'ok').inc(5)
  t.same(await samples(ours), await samples(theirs))
  t.equal(fast.labels('echo', 'ok'), fast.labels('echo', 'ok'), 'the same child for the same label values')
  t.same([...fast.children].map((c) => [c.labels, c.value]), [
    [{ task: 'echo', outcome: 'ok' }, 9], [{ task: 'echo', outcome: 'timeout' }, 1], [{ task: 'csv.profile', outcome: 'ok' }, 2]
  ])
})

t.test('label values that could collide when joined stay apart, and a wrong count is an error', async (t) => {
  const fast = new LabelledCounter({ name: 'pairs_total', help: 'Pairs', labelNames: ['a', 'b'], registers: [] })
  fast.labels('x,y', 'z').inc()
  fast.labels('x', 'y,z').inc()
  t.equal([...fast.children].length, 2)
  t.throws(() => fast.labels('only-one'), /expected 2 label values, got 1/)
})

t.test('non-finite observations are dropped instead of throwing in the request path', async (t) => {
  const fast = new LabelledHistogram({ name: 'h_seconds', help: 'H', labelNames: ['k'], buckets: [1], registers: [] })
  fast.labels('a').observe(Number.NaN)
  fast.labels('a').observe(Number.POSITIVE_INFINITY)
  fast.labels('a').observe(0.5)
  const child = fast.labels('a')
  t.equal(child.count, 1)
  t.equal(child.sum, 0.5)
})
