// The load generator, one child process per measured run (forked by run.mjs,
// so its CPU and heap are its own and the parent can sample /proc on time).
// One continuous autocannon run: the first warmupMs are warm-up, the next
// measureMs are measured; connections stay open across the boundary. Latency
// goes into our own HdrHistogram in microseconds, because autocannon's
// percentiles are whole milliseconds.

import autocannon from 'autocannon'
import { performance } from 'node:perf_hooks'
import { newHistogram, summarize } from './histogram.mjs'
import { pathOf, requestsOf } from './scenarios.mjs'

/**
 * autocannon writes the next request on a connection the server has said it
 * will close (Connection: close: gunicorn's sync workers answer every request
 * so) and never takes that lost request out of its queue of pending ones; each
 * reconnect adds one more, so every later latency is measured from an older
 * request and grows without bound. This reconnects before the next request
 * instead, so each latency belongs to its own request.
 */
function honourConnectionClose (client) {
  let closing = false
  client.on('headers', (info) => { closing = info.shouldKeepAlive === false })
  const doRequest = client._doRequest
  client._doRequest = function () {
    if (!closing || this.destroyed) return doRequest.call(this)
    closing = false
    this._destroyConnection()
    this._connect() // sends the next request on the new connection
  }
}

function run ({ url, scenario, connections, warmupMs, measureMs, timeoutSeconds }) {
  const requests = requestsOf(scenario).map((r) => ({
    method: 'POST',
    path: pathOf(r),
    headers: { 'content-type': r.contentType },
    body: r.body
  }))
  const histogram = newHistogram()
  const statusCodes = {}
  const perSecond = []
  let measured = 0
  let non2xx = 0
  let measuredNon2xx = 0
  let errors = 0
  let measuredErrors = 0
  let responses = 0
  let measureStart = Infinity
  let measureEnd = Infinity

  const instance = autocannon({
    url,
    connections,
    // Stopped by our own timer below; this is only a backstop.
    duration: Math.ceil((warmupMs + measureMs) / 1000) + 30,
    timeout: timeoutSeconds,
    requests,
    setupClient: honourConnectionClose
  })

  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    const now = performance.now()
    responses++
    statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1
    const ok = statusCode >= 200 && statusCode <= 299
    if (!ok) non2xx++
    const inWindow = now >= measureStart && now < measureEnd
    // req/s and latency count 2xx answers only: a design answering 503 in 0.1 ms is not
    // faster for it (they counted every answer; non-2xx are reported beside them).
    if (inWindow && !ok) measuredNon2xx++
    if (inWindow && ok) {
      measured++
      histogram.recordValue(Math.max(1, Math.round(responseTimeMs * 1000)))
      const second = Math.floor((now - measureStart) / 1000)
      perSecond[second] = (perSecond[second] ?? 0) + 1
    }
  })
  instance.on('reqError', () => {
    errors++
    const now = performance.now()
    if (now >= measureStart && now < measureEnd) measuredErrors++
  })

  const started = performance.now()
  setTimeout(() => {
    measureStart = performance.now()
    process.send({ type: 'measure-start' })
  }, warmupMs)
  setTimeout(() => {
    measureEnd = performance.now()
    process.send({ type: 'measure-end' })
    instance.stop()
  }, warmupMs + measureMs)

  return new Promise((resolve, reject) => {
    instance.on('done', (result) => {
      const windowSeconds = (measureEnd - measureStart) / 1000
      resolve({
        requestsPerSecond: measured / windowSeconds,
        latency: summarize(histogram),
        measuredResponses: measured,
        windowSeconds,
        perSecond,
        // Over the whole run, warm-up included: an error anywhere is an error.
        responses,
        errors: Math.max(errors, result.errors),
        timeouts: result.timeouts,
        measuredErrors,
        non2xx,
        measuredNon2xx,
        statusCodes,
        totalSeconds: (performance.now() - started) / 1000
      })
    })
    instance.on('error', reject)
  })
}

process.once('message', (spec) => {
  run(spec).then(
    (result) => { process.send({ type: 'result', result }, () => process.exit(0)) },
    (error) => { process.send({ type: 'error', message: error.stack ?? String(error) }, () => process.exit(1)) }
  )
})
