// gzip for GET /metrics. Prometheus asks for it on every scrape (`Accept-Encoding: gzip`),
// and the text is large: 55 KB with the built-in tasks, most of it the histograms' repeated
// label sets, which gzip to 6.4 KB. Compressed off the event loop (zlib's
// thread pool), once per rendering: scrapes that share a rendering share its gzip too.

import { gzip } from 'node:zlib'
import { promisify } from 'node:util'
import { qualityOf } from './replies.js'

const gzipAsync = promisify(gzip)

/**
 * True if an Accept-Encoding header takes gzip (RFC 9110 §12.5.3): `gzip` or `x-gzip`
 * named with a quality above 0, or else `*` with one. A client that names `identity`
 * above gzip (`gzip;q=0.5, identity`) gets the text as it is; one that sends no header,
 * or `gzip;q=0`, too.
 */
export function acceptsGzip (header: string | undefined): boolean {
  if (header === undefined || !/gzip|\*/i.test(header)) return false
  let named: number | undefined
  let anyCoding: number | undefined
  let identity: number | undefined
  for (const item of header.split(',')) {
    const [coding, ...params] = item.split(';')
    const name = coding.trim().toLowerCase()
    const quality = qualityOf(params)
    if (quality === undefined) continue
    if (name === 'gzip' || name === 'x-gzip') named = Math.max(named ?? 0, quality)
    else if (name === '*') anyCoding = Math.max(anyCoding ?? 0, quality)
    else if (name === 'identity') identity = Math.max(identity ?? 0, quality)
  }
  const gzipQuality = named ?? anyCoding ?? 0
  return gzipQuality > 0 && gzipQuality >= (identity ?? 0)
}

/** The gzip of a rendered exposition, made once per rendering (the same Buffer) however many scrapes share it. */
export class GzipOnce {
  readonly #made = new WeakMap<Buffer, Promise<Buffer>>()

  async of (text: Buffer): Promise<Buffer> {
    let made = this.#made.get(text)
    if (made === undefined) {
      made = gzipAsync(text)
      this.#made.set(text, made)
    }
    return await made
  }
}
