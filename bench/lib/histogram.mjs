// Latency histograms in microseconds (HdrHistogram, 3 significant digits), and
// the summary every design reports: percentiles in milliseconds with
// microsecond resolution.

import hdr from 'hdr-histogram-js'

/** Up to 10 minutes, in microseconds; autoResize covers anything longer. */
export function newHistogram () {
  return hdr.build({ bitBucketSize: 32, lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3, autoResize: true })
}

const ms = (us) => Math.round(us) / 1000

export function summarize (histogram) {
  if (histogram.totalCount === 0) return { count: 0, p50: null, p90: null, p99: null, p999: null, max: null, mean: null }
  return {
    count: histogram.totalCount,
    p50: ms(histogram.getValueAtPercentile(50)),
    p90: ms(histogram.getValueAtPercentile(90)),
    p99: ms(histogram.getValueAtPercentile(99)),
    p999: ms(histogram.getValueAtPercentile(99.9)),
    max: ms(histogram.maxValue),
    mean: ms(histogram.mean)
  }
}
