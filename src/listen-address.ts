// The one address the server listens on for HOST.

import { lookup as dnsLookup } from 'node:dns/promises'
import { access } from 'node:fs/promises'
import { createServer } from 'node:net'

type Lookup = (host: string) => Promise<{ address: string }>

/**
 * HOST as one address. Given "localhost", Fastify listens on every address the name
 * resolves to (127.0.0.1 and ::1 on most machines), each on a server of its own, and
 * pyfleet's per-server parts (the MAX_CONNECTIONS cap and its open-file budget, the
 * open-connection gauge, the stall timeout, the shutdown's handling of connections,
 * Expect and CONNECT answers) would only know the first. Node's own listen() takes the
 * first address a name resolves to; so does pyfleet, for "localhost" (any other name
 * or address is listened on as it is, once). A name that does not resolve is left to
 * listen() to report.
 */
export async function listenAddress (host: string, lookup: Lookup = dnsLookup): Promise<string> {
  if (host.toLowerCase() !== 'localhost') return host
  try {
    return (await lookup(host)).address
  } catch {
    return host
  }
}

/**
 * Resolves once `port` on `host` has been listened on and let go, or rejects with listen()'s
 * error (EADDRINUSE, EACCES, ENOTFOUND...). main.ts asks before the workers start: their task
 * imports may take a minute, and a port in use or a HOST that is not this machine's was only
 * found after them. Port 0 is tried too: it says whether HOST resolves to an address here.
 */
export async function canListen (host: string, port: number): Promise<void> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.close(() => { resolve() }) })
  })
}

/** Files a container runtime leaves in the container's root: Docker's, Podman's. */
const CONTAINER_MARKERS = ['/.dockerenv', '/run/.containerenv']

/** Whether `host` is a loopback address or name: reachable from this machine (or container) alone. */
export function isLoopback (host: string): boolean {
  const address = host.toLowerCase().replace(/^::ffff:/, '')
  return address === 'localhost' || address === '::1' || /^127(\.\d{1,3}){3}$/.test(address)
}

/**
 * The warning for a HOST on the loopback inside a container, or undefined. Nothing outside
 * the container reaches such a server, while the image's HEALTHCHECK, which runs inside,
 * passes: the container looked healthy and answered nobody (a review, with HOST=localhost).
 */
export async function loopbackInContainer (host: string, markers: readonly string[] = CONTAINER_MARKERS): Promise<string | undefined> {
  if (!isLoopback(host)) return undefined
  for (const marker of markers) {
    if (await access(marker).then(() => true, () => false)) {
      return `HOST=${host} is the loopback of this container (${marker} exists): nothing outside it reaches the server, though a health check run inside passes. Leave HOST unset (0.0.0.0) to be reached through the container's published ports`
    }
  }
  return undefined
}
