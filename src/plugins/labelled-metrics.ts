// Counters and histograms for the per-request path, in prom-client's Registry and
// exposition format. prom-client's labelled children hash a label object on every
// update (four per call, ~5 % of Node's CPU at echo rates); these resolve it once.

import type { Metric, Registry } from 'prom-client'

/** One exposed sample, as prom-client's Registry reads it from get(). */
interface Sample {
  metricName?: string
  labels: Record<string, string | number | undefined>
  value: number
}

interface Exposition {
  name: string
  help: string
  type: 'counter' | 'histogram'
  values: Sample[]
  aggregator: 'sum'
}

interface Options<L extends string> {
  name: string
  help: string
  labelNames: readonly L[]
  registers: readonly Registry[]
}

/** Shared by both kinds: children by label values, and registration. */
abstract class Labelled<L extends string, C extends { labels: Partial<Record<L, string>>, zero: () => void }> {
  readonly name: string
  readonly help: string
  readonly aggregator = 'sum' as const
  abstract readonly type: 'counter' | 'histogram'
  readonly #labelNames: readonly L[]
  readonly #children = new Map<string, C>()

  constructor (options: Options<L>) {
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames
    // The Registry reads name, help, type, aggregator and get(); its types list only prom-client's classes.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric)
  }

  /** The child for these label values (in labelNames order), created at zero the first time. */
  labels (...values: string[]): C {
    const key = values.join('\u0000')
    let child = this.#children.get(key)
    if (child === undefined) {
      if (values.length !== this.#labelNames.length) throw new Error(`${this.name}: expected ${this.#labelNames.length} label values, got ${values.length}`)
      const labels: Partial<Record<L, string>> = {}
      this.#labelNames.forEach((name, i) => { labels[name] = values[i] })
      child = this.createChild(labels)
      this.#children.set(key, child)
    }
    return child
  }

  protected abstract createChild (labels: Partial<Record<L, string>>): C
  protected abstract export (child: C): Sample[]

  get children (): IterableIterator<C> { return this.#children.values() }

  async get (): Promise<Exposition> {
    const values: Sample[] = []
    for (const child of this.#children.values()) values.push(...this.export(child))
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  /** Zeroes every series in place: holders of a child (metrics.ts keeps them) go on counting into the registry. */
  reset (): void { for (const child of this.#children.values()) child.zero() }
}

export class CounterChild<L extends string> {
  value = 0
  constructor (readonly labels: Partial<Record<L, string>>) {}
  inc (amount = 1): void { this.value += amount }
  zero (): void { this.value = 0 }
}

export class LabelledCounter<L extends string> extends Labelled<L, CounterChild<L>> {
  readonly type = 'counter' as const
  protected createChild (labels: Partial<Record<L, string>>): CounterChild<L> { return new CounterChild(labels) }
  protected export (child: CounterChild<L>): Sample[] { return [{ labels: child.labels, value: child.value }] }
}

export class HistogramChild<L extends string> {
  sum = 0
  count = 0
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; cumulated only at export. */
  readonly counts: Float64Array
  constructor (readonly labels: Partial<Record<L, string>>, readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length)
  }

  zero (): void {
    this.sum = 0
    this.count = 0
    this.counts.fill(0)
  }

  /** Non-finite values are dropped (prom-client throws): a metric must never fail a request. */
  observe (value: number): void {
    if (!Number.isFinite(value)) return
    this.sum += value
    this.count++
    const bounds = this.bounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) { this.counts[i]++; return }
    }
  }
}

export class LabelledHistogram<L extends string> extends Labelled<L, HistogramChild<L>> {
  readonly type = 'histogram' as const
  readonly #bounds: readonly number[]

  constructor (options: Options<L> & { buckets: readonly number[] }) {
    super(options)
    this.#bounds = [...options.buckets].sort((a, b) => a - b)
  }

  protected createChild (labels: Partial<Record<L, string>>): HistogramChild<L> { return new HistogramChild(labels, this.#bounds) }

  protected export (child: HistogramChild<L>): Sample[] {
    const bucket = `${this.name}_bucket`
    const values: Sample[] = []
    let cumulative = 0
    child.bounds.forEach((bound, i) => {
      cumulative += child.counts[i]
      // le first, as prom-client writes it.
      values.push({ metricName: bucket, labels: { le: bound, ...child.labels }, value: cumulative })
    })
    values.push(
      { metricName: bucket, labels: { le: '+Inf', ...child.labels }, value: child.count },
      { metricName: `${this.name}_sum`, labels: child.labels, value: child.sum },
      { metricName: `${this.name}_count`, labels: child.labels, value: child.count }
    )
    return values
  }
}
