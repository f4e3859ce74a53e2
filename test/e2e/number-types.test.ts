// Integers stay integers between clients and tasks: JavaScript has one number
// type, msgpack and Python have two, and msgpackr writes numbers beyond 32 bits
// as floats unless told otherwise (src/pool/wide-integers.ts).

import t from 'tap'
import { pack, unpack } from 'msgpackr'
import { FIXTURES, startServer, type TestServer } from '../helpers/server.js'

let server: TestServer
t.before(async () => {
  server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
})

async function post (task: string, body: string | Uint8Array, type: string, accept = 'application/json', query = ''): Promise<Response> {
  return await fetch(`${server.url}/api/tasks/${task}${query}`, { method: 'POST', headers: { 'content-type': type, accept }, body })
}

t.test('integers in JSON reach the task as int at every size a double holds exactly', async (t) => {
  const body = '{"small": 7, "ts": 1764400000000, "negative": -5000000000, "edge": 4294967296, "max": 9007199254740991, "nested": [[2199023255552]], "half": 3000000000.5, "float": 1.5}'
  const response = await post('extra.types', body, 'application/json')
  t.equal(response.status, 200)
  t.same(await response.json(), {
    small: 'int', ts: 'int', negative: 'int', edge: 'int', max: 'int', nested: [['int']], half: 'float', float: 'float'
  })
})

t.test('an integer JSON cannot hold exactly (beyond 2^53) reaches the task as a float, not as a different int', async (t) => {
  const response = await post('extra.types', '{"beyond": 9007199254740993}', 'application/json')
  t.same(await response.json(), { beyond: 'float' })
})

t.test('msgpack int64 input reaches the task as int, and a task\'s int comes back to a msgpack client as an integer', async (t) => {
  const input = { ts: 1764400000000, negative: -5000000000, list: [4294967296, 1.5] }
  const types = await post('extra.types', pack(input), 'application/msgpack')
  t.same(await types.json(), { ts: 'int', negative: 'int', list: ['int', 'float'] })
  const echoed = await post('echo', pack(input), 'application/msgpack', 'application/msgpack')
  const bytes = Buffer.from(await echoed.arrayBuffer())
  // Decoded as BigInt for every 64-bit integer: a float64 in the answer would decode as a number.
  const value = unpack(bytes, { int64AsType: 'bigint' } as any) as Record<string, unknown>
  t.equal(value.ts, 1764400000000n, 'ts is a msgpack integer, not a float64')
  t.equal(value.negative, -5000000000n)
  t.same(value.list, [4294967296n, 1.5])
})

t.test('a wide integer from the query string of a raw body reaches the task as int', async (t) => {
  const response = await post('extra.types', 'hello', 'text/plain', 'application/json', '?n=1764400000000')
  t.same(await response.json(), { n: 'int', text: 'str' })
})

t.test('JSON answers keep wide integers as numbers', async (t) => {
  const response = await post('echo', '{"ts": 1764400000000}', 'application/json')
  t.equal(await response.text(), '{"ts":1764400000000}')
})
