// Which Accept-Encoding headers get /metrics gzipped (RFC 9110 §12.5.3), and that a
// rendering is compressed once however many scrapes share it.

import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { acceptsGzip, GzipOnce } from '../src/routes/scrape-encoding.js'

t.test('gzip when it is named or covered by *, with a quality above 0 and not below identity\'s', async (t) => {
  for (const header of ['gzip', 'GZIP', 'x-gzip', 'gzip, deflate', 'deflate, gzip;q=0.5', '*', 'br;q=1, *;q=0.1', 'gzip;q=1.0, identity;q=1', ' gzip ; q=0.8 ']) {
    t.ok(acceptsGzip(header), header)
  }
  // Prometheus's own header.
  t.ok(acceptsGzip('gzip'))
})

t.test('the text as it is otherwise', async (t) => {
  for (const header of [undefined, '', 'identity', 'br', 'deflate, br', 'gzip;q=0', 'gzip;q=0.000', '*;q=0', 'gzip;q=0, *',
    'gzip;q=0.5, identity', 'br, *;q=0', 'gzip;q=2', 'gzip;q=abc', 'gzipped', 'x-gzip;q=0']) {
    t.notOk(acceptsGzip(header), String(header))
  }
})

t.test('a named gzip outranks *: "gzip;q=0, *" refuses gzip, "*;q=0, gzip" takes it', async (t) => {
  t.notOk(acceptsGzip('gzip;q=0, *'))
  t.ok(acceptsGzip('*;q=0, gzip'))
})

t.test('one gzip per rendering, and a new one for the next', async (t) => {
  const once = new GzipOnce()
  const first = Buffer.from('# TYPE x counter\nx 1\n'.repeat(100))
  const [a, b] = await Promise.all([once.of(first), once.of(first)])
  t.equal(a, b, 'scrapes sharing a rendering share its gzip')
  t.equal(gunzipSync(a).toString(), first.toString())
  const second = Buffer.from('# TYPE x counter\nx 2\n')
  t.equal(gunzipSync(await once.of(second)).toString(), second.toString())
})
