// The HTTP client of the property-based tests (test/e2e/fuzz*.test.ts): node:http rather than
// fetch, which refuses or rewrites odd paths and header values; keep-alive, with a cap on
// requests at once (2 shared cores); every body framed with content-length (Node's client
// sends a DELETE's or OPTIONS' body without one, and the server rightly reads those bytes as
// the next request). And the check of an error answer's shape.

import { Agent, request as httpRequest, STATUS_CODES } from 'node:http'

export interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

export interface ErrorBody { statusCode: number, code: string, error: string, message: string }

export class FuzzClient {
  readonly #agent: Agent
  readonly #url: () => string

  /** `url` is read at each request: the server starts after the client is made. */
  constructor (url: () => string, maxSockets: number) {
    this.#url = url
    this.#agent = new Agent({ keepAlive: true, maxSockets })
  }

  async send (method: string, path: string, headers: Record<string, string>, body?: Uint8Array | string): Promise<Answer> {
    const url = new URL(this.#url())
    if (body !== undefined) headers = { ...headers, 'content-length': String(Buffer.byteLength(body)) }
    return await new Promise((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers, agent: this.#agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  close (): void { this.#agent.destroy() }
}

/**
 * fast-check's parameters: a fixed seed, so that CI is deterministic, unless FUZZ_SEED replays
 * a failure (fast-check prints its seed); FUZZ_RUNS cases per property (more for a local soak).
 */
export function fuzzParameters (seed: number, numRuns: number): { seed: number, numRuns: number } {
  return { seed: Number(process.env.FUZZ_SEED ?? seed), numRuns: Number(process.env.FUZZ_RUNS ?? numRuns) }
}

/** A FuzzClient's send, for the file's one server (read when each request goes), closed at the end of the file. */
export function fuzzSender (t: { teardown: (fn: () => void) => void }, url: () => string, maxSockets: number): FuzzClient['send'] {
  const client = new FuzzClient(url, maxSockets)
  t.teardown(() => { client.close() })
  return client.send.bind(client)
}

/** An error answer in SPEC's shape, statusCode matching the status, error its reason phrase; throws saying why not (`where` first). */
export function errorShape (answer: Answer, where = ''): ErrorBody {
  const text = answer.body.toString('utf8')
  const prefix = where === '' ? '' : `${where}\n  `
  let json: any
  try { json = JSON.parse(text) } catch { throw new Error(`${prefix}error answer ${answer.status} is not JSON: ${text.slice(0, 300)}`) }
  if (json === null || typeof json !== 'object' || json.statusCode !== answer.status || typeof json.code !== 'string' ||
      typeof json.message !== 'string' || json.error !== STATUS_CODES[answer.status]) {
    throw new Error(`${prefix}${answer.status} not in the error shape: ${text.slice(0, 300)}`)
  }
  return json
}
