// Calling pyfleet from Node 18+ with fetch (and msgpackr, for msgpack answers).
//
//   PYFLEET_URL=http://localhost:5000 node examples/clients/call.mjs
//
// Serve examples/mytasks first (see examples/README.md). What it shows: a JSON call, a
// msgpack call whose 64-bit integers come back as numbers (int64AsType: 'auto'), a
// task's own refusal (422) read from the error body, and a retry that honours
// Retry-After when the server is busy.

import { pathToFileURL } from 'node:url'
import { Packr } from 'msgpackr'

const BASE_URL = process.env.PYFLEET_URL ?? 'http://localhost:5000'
// useRecords: false writes plain msgpack (msgpackr's record extension is refused with a 400);
// int64AsType: 'auto' decodes the worker's 64-bit integers as numbers up to 2^53, BigInt past it.
const msgpack = new Packr({ useRecords: false, int64AsType: 'auto' })

/** The task's answer; throws an Error with the server's code and message on an error. */
export async function call (task, value, { asMsgpack = false, attempts = 3 } = {}) {
  const type = asMsgpack ? 'application/msgpack' : 'application/json'
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(`${BASE_URL}/api/tasks/${task}`, {
      method: 'POST',
      headers: { 'content-type': type, accept: type },
      body: asMsgpack ? msgpack.pack(value) : JSON.stringify(value)
    })
    if (response.ok) return asMsgpack ? msgpack.unpack(Buffer.from(await response.arrayBuffer())) : await response.json()
    const problem = await problemOf(response)
    // 503 QUEUE_FULL, QUEUE_TIMEOUT, WORKERS_UNAVAILABLE say when to come back; nothing else is worth repeating.
    const retryAfter = response.headers.get('retry-after')
    if (response.status === 503 && retryAfter !== null && attempt < attempts) {
      await new Promise((resolve) => setTimeout(resolve, Number(retryAfter) * 1000))
      continue
    }
    const details = problem.details === undefined ? '' : ` ${JSON.stringify(problem.details)}`
    throw new Error(`${response.status} ${problem.code}: ${problem.message}${details}`)
  }
}

/** pyfleet's errors are JSON, {statusCode, code, error, message, details?}; a proxy in front may answer in HTML (nginx's 502 page). */
async function problemOf (response) {
  const text = await response.text()
  try {
    return JSON.parse(text)
  } catch {
    return { code: response.statusText, message: text.slice(0, 200) }
  }
}

async function main () {
  console.log('json:', JSON.stringify(await call('greet', { name: 'Ada' })))
  const echoed = await call('echo', { at_ms: 1764400000123, big: 2n ** 62n }, { asMsgpack: true })
  console.log('msgpack:', echoed.at_ms, typeof echoed.at_ms, echoed.big, typeof echoed.big)
  try {
    await call('greet', { name: 'nobody' })
  } catch (refused) {
    console.log('refused:', refused.message)
  }
}

// Run as a script, not when imported (process.argv[1] is undefined under node -e).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
