// What a keep-alive connection keeps alive: a call that waited in the queue must
// not stay reachable (its response, and through it its request and input) once it
// is answered, for as long as the connection is open. Checked with a WeakRef and
// forced collections, on a real server: one such response per connection was 17 MB
// at the benchmark's 1,000 connections.

import t from 'tap'
import type { ServerResponse } from 'node:http'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { holdConnection } from '../helpers/raw-http.js'
import { callTask, startServer, waitFor } from '../helpers/server.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const call = (body: string): string => `POST /api/tasks/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`

t.test('a queued call\'s response is not kept alive by its connection once answered', async (t) => {
  const server = await startServer(t, { POOL_SIZE: '1' })
  const responses: Array<WeakRef<ServerResponse>> = []
  server.app.server.on('request', (_request, response: ServerResponse) => { responses.push(new WeakRef(response)) })

  // The one worker is busy, so the call on the kept connection waits in the queue.
  const busy = callTask(server.url, 'diag.work', { sleep_ms: 300 })
  await waitFor(() => server.app.pool.snapshot().pool.borrowed === 1, 5000, 'the worker to be busy')
  const connection = holdConnection(server.url)
  t.teardown(connection.destroy)
  const queued = connection.request(call('{"queued":true}'))
  await waitFor(() => server.app.pool.waiting === 1, 5000, 'the call to queue')
  t.equal((await busy).status, 200)
  t.match(await queued, /^HTTP\/1\.1 200 [^]*\{"queued":true\}$/, 'the queued call is answered')
  // The busy call's response, then the queued one's. Without it, an undefined WeakRef below
  // would read as "collected", and the test would pass whatever the code keeps alive.
  t.equal(responses.length, 2, 'both requests were seen')
  const first = responses[1]
  // A second request on the same connection: the first one's response is now nobody's.
  t.match(await connection.request(call('{"next":true}')), /^HTTP\/1\.1 200 /)

  let collected = false
  for (let i = 0; i < 20 && !collected; i++) {
    await new Promise((resolve) => setImmediate(resolve)) // a WeakRef's target survives the job that read it
    gc()
    collected = first.deref() === undefined
  }
  t.ok(collected, 'the queued call\'s response was collected while its connection stays open')
})
