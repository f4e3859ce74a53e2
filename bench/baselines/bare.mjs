// Baseline "bare": Fastify echoing the JSON body from a pure-JS handler. No
// workers, no pipes: the ceiling of the HTTP layer on this machine. Same
// Fastify, same body limit, logger off as in the pyfleet runs (LOG_LEVEL=warn).
//
//   PORT=3000 node bench/baselines/bare.mjs

import Fastify from 'fastify'

const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 })
app.post('/api/tasks/echo', async (request) => request.body)
app.get('/health', async () => ({ status: 'ok' }))

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
