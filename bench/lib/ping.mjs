// A forked child that asks GET <url> again and again, one request at a time with
// 10 ms between them, until its parent says stop; then it reports how long the
// slowest answer and the 99th percentile took. In a process of its own, so that
// what it measures is the server's stall, not its parent's work on a large body.

import { newHistogram, summarize } from './histogram.mjs'

let stop = false
process.on('message', (message) => { if (message === 'stop') stop = true })
process.once('message', async ({ url }) => {
  const histogram = newHistogram()
  let max = 0
  process.send({ type: 'started' })
  while (!stop) {
    const start = performance.now()
    const response = await fetch(url)
    await response.arrayBuffer()
    const ms = performance.now() - start
    max = Math.max(max, ms)
    histogram.recordValue(Math.round(ms * 1000)) // µs, as the histogram's other users record
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  process.send({ type: 'result', maxMs: max, p99Ms: summarize(histogram).p99, count: histogram.totalCount })
  process.disconnect()
})
