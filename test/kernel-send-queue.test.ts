// The kernel's send queue of a real connection, as /proc/net/tcp reports it: what a server's
// socket has handed over and its client has not read.

import t from 'tap'
import { createServer, connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { unsentInKernel } from '../src/kernel-send-queue.js'
import { waitFor } from './helpers/server.js'

for (const host of ['127.0.0.1', '::1']) {
  t.test(`over ${host}: bytes the client has not read are counted, and none once it has`, async (t) => {
    const server = createServer()
    const accepted = once(server, 'connection') as Promise<[Socket]>
    server.listen(0, host)
    await once(server, 'listening')
    t.teardown(() => { server.close() })
    const client = connect((server.address() as { port: number }).port, host)
    t.teardown(() => client.destroy())
    client.pause() // reads nothing yet
    const [socket] = await accepted
    t.teardown(() => socket.destroy())
    t.equal(await unsentInKernel(socket), 0, 'nothing sent yet')
    const answer = Buffer.alloc(1_000_000, 'x')
    socket.write(answer)
    await waitFor(() => socket.writableLength === 0, 5000, 'the kernel to take the whole answer')
    const unsent = await unsentInKernel(socket)
    t.ok(unsent > 0 && unsent <= answer.length, `the kernel holds what the client has not read (${unsent} bytes)`)
    let received = 0
    client.on('data', (chunk: Buffer) => { received += chunk.length })
    client.resume()
    await waitFor(() => received === answer.length, 5000, 'the client to read it all')
    await waitFor(async () => await unsentInKernel(socket) === 0, 5000, 'the queue to empty once read and acknowledged')
    t.pass('none left once read')
  })
}
