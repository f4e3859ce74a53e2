// /health, through @fastify/under-pressure: 200 while the process can serve,
// 503 with Retry-After when the event loop, heap or RSS passes its threshold.
// Only /health answers 503 under pressure: shedding task calls is the queue's
// job (QUEUE_LIMIT), and /metrics must keep working when things go wrong. So
// this plugin is encapsulated (not fastify-plugin wrapped): under-pressure's
// onRequest hook runs for /health only, not on every task call.

import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import { Gauge } from 'prom-client'
import type { Config } from '../config.js'
import { noteErrorCode } from '../request-log.js'
import { noStore } from '../routes/no-store.js'

const HEALTH_URL = '/health'
const RETRY_AFTER_SECONDS = 10

/** under-pressure's names for what it measures, and the setting each threshold comes from. */
const PRESSURE_SETTINGS: Record<string, { what: string, setting: string, unit: string }> = {
  eventLoopDelay: { what: 'the event loop delay', setting: 'MAX_EVENT_LOOP_DELAY_MS', unit: 'ms' },
  heapUsedBytes: { what: 'the V8 heap used', setting: 'MAX_HEAP_USED_BYTES', unit: 'bytes' },
  rssBytes: { what: 'the Node process RSS', setting: 'MAX_RSS_BYTES', unit: 'bytes' }
}

function pressureMessage (type: string, value: unknown): string {
  const known = PRESSURE_SETTINGS[type]
  if (known === undefined) return `under pressure: ${type} is ${String(value)}`
  const shown = typeof value === 'number' ? String(Math.round(value)) : String(value)
  return `under pressure: ${known.what} is ${shown} ${known.unit}, over ${known.setting}`
}

async function pressurePlugin (fastify: FastifyInstance, { config }: { config: Config }): Promise<void> {
  await fastify.register(underPressure, {
    maxEventLoopDelay: config.maxEventLoopDelayMs,
    maxHeapUsedBytes: config.maxHeapUsedBytes,
    maxRssBytes: config.maxRssBytes,
    retryAfter: RETRY_AFTER_SECONDS,
    // Over the last sample (1 s), not since start (under-pressure's default): a replica idle
    // after a busy hour read ~0.5, and a new spike barely moved a long-lived one's figure.
    eventLoopUtilizationMode: 'interval',
    exposeStatusRoute: { url: HEALTH_URL, routeOpts: { logLevel: 'warn', onRequest: noStore } },
    pressureHandler: (_request, reply, type, value) => {
      reply.status(503).header('retry-after', String(RETRY_AFTER_SECONDS))
      noteErrorCode(reply, 'FST_UNDER_PRESSURE')
      const body = { statusCode: 503, code: 'FST_UNDER_PRESSURE', error: 'Service Unavailable', message: pressureMessage(type, value) }
      // under-pressure sends a non-null return value as the reply; its types only say void.
      return body as unknown as undefined
    }
  })
  // under-pressure's own readings, so a 503 on /health can be explained from a dashboard.
  const registers = [fastify.metrics.registry]
  const reading = (): ReturnType<FastifyInstance['memoryUsage']> => fastify.memoryUsage()
  new Gauge({ name: 'pyfleet_pressure_event_loop_delay_seconds', help: 'Event loop delay as under-pressure measures it', registers, collect () { this.set(reading().eventLoopDelay / 1000) } })
  new Gauge({ name: 'pyfleet_pressure_event_loop_utilization_ratio', help: 'Event loop utilization over the last second (0..1)', registers, collect () { this.set(reading().eventLoopUtilized) } })
  new Gauge({ name: 'pyfleet_pressure_heap_used_bytes', help: 'V8 heap used, as under-pressure measures it', registers, collect () { this.set(reading().heapUsed) } })
  new Gauge({ name: 'pyfleet_pressure_rss_bytes', help: 'Node process RSS, as under-pressure measures it', registers, collect () { this.set(reading().rssBytes) } })
  new Gauge({ name: 'pyfleet_under_pressure', help: '1 while /health answers 503 because a threshold is passed', registers, collect () { this.set(fastify.isUnderPressure() ? 1 : 0) } })
}

export default pressurePlugin
