// HOST=localhost is listened on once, at the first address it resolves to, as Node's
// own listen() does: Fastify would listen on every address of "localhost", each on a
// server of its own that pyfleet's connection cap and connection handling never see.
// This machine's localhost may have one address only: dns.lookup is made to answer
// two, as on most machines (127.0.0.1 and ::1), for Fastify and Node alike.

import t from 'tap'
import dns from 'node:dns'
import Fastify from 'fastify'
import { listenAddress } from '../src/listen-address.js'

const realLookup = dns.lookup
type Callback = (error: Error | null, address: string | dns.LookupAddress[], family?: number) => void
const twoAddresses = [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }]
;(dns as { lookup: unknown }).lookup = (host: string, options: unknown, callback?: Callback): void => {
  const cb = (typeof options === 'function' ? options : callback) as Callback
  const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all === true
  if (host !== 'localhost') { (realLookup as (...args: unknown[]) => void)(host, options, callback); return }
  if (all) cb(null, twoAddresses)
  else cb(null, '127.0.0.1', 4)
}
t.teardown(() => { (dns as { lookup: unknown }).lookup = realLookup })

async function listeningAddresses (t: { teardown: (fn: () => unknown) => void }, host: string): Promise<string[]> {
  const app = Fastify({ logger: false })
  app.get('/', async () => 'ok')
  t.teardown(async () => { await app.close() })
  await app.listen({ host, port: 0 })
  return app.addresses().map((a) => typeof a === 'string' ? a : a.address)
}

t.test('Fastify on its own listens on both addresses of localhost (what listenAddress avoids)', async (t) => {
  t.same((await listeningAddresses(t, 'localhost')).sort(), ['127.0.0.1', '::1'])
})

t.test('localhost becomes its first address, listened on once', async (t) => {
  const host = await listenAddress('localhost', async (name) => await dns.promises.lookup(name))
  t.equal(host, '127.0.0.1')
  t.same(await listeningAddresses(t, host), ['127.0.0.1'])
})

t.test('other hosts are left as they are; a name that does not resolve is left for listen() to report', async (t) => {
  const never = async (): Promise<never> => { throw new Error('not looked up') }
  t.equal(await listenAddress('0.0.0.0', never), '0.0.0.0')
  t.equal(await listenAddress('::', never), '::')
  t.equal(await listenAddress('example.internal', never), 'example.internal')
  t.equal(await listenAddress('localhost', async () => { throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }) }), 'localhost')
})
