import t from 'tap'
import { Counter, Histogram, Registry } from 'prom-client'
import { LabelledCounter, LabelledHistogram } from '../../src/plugins/labelled-metrics.js'

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
  t.equal(await ours.metrics(), await theirs.metrics(), 'the same text, line for line')
  t.match(await ours.metrics(), /calls_seconds_bucket\{le="0\.001",task="echo",outcome="ok"\} 3\n/)
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
  t.equal(await ours.metrics(), await theirs.metrics(), 'the same text, line for line')
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

t.test('reset zeroes every series in place: children already handed out keep counting', async (t) => {
  const registry = new Registry()
  const histogram = new LabelledHistogram({ name: 'r_seconds', help: 'R', labelNames: ['k'], buckets: [1], registers: [registry] })
  const counter = new LabelledCounter({ name: 'r_total', help: 'R', labelNames: ['k'], registers: [registry] })
  const held = histogram.labels('a')
  const heldCount = counter.labels('a')
  held.observe(0.5)
  heldCount.inc(3)
  registry.resetMetrics()
  t.match(await registry.metrics(), /r_seconds_count\{k="a"\} 0\n/)
  t.match(await registry.metrics(), /r_total\{k="a"\} 0\n/)
  held.observe(2)
  heldCount.inc()
  const text = await registry.metrics()
  t.match(text, /r_seconds_bucket\{le="1",k="a"\} 0\n/)
  t.match(text, /r_seconds_bucket\{le="\+Inf",k="a"\} 1\n/)
  t.match(text, /r_total\{k="a"\} 1/)
})
