// Integers stay integers between clients and tasks: JavaScript has one number
// type, msgpack and Python have two, and msgpackr writes numbers beyond 32 bits
// as floats unless told otherwise (src/pool/wide-integers.ts).

import t from 'tap'
import { pack, unpack } from 'msgpackr'
import { FIXTURES, getJson, startServer, type TestServer } from '../helpers/server.js'

let server: TestServer
t.before(async () => {
  server = await startServer(t, { POOL_SIZE: '1', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES })
})

async function post (task: string, body: string | Uint8Array, type: string, accept = 'application/json', query = ''): Promise<Response> {
  return await fetch(`${server.url}/api/tasks/${task}${query}`, { method: 'POST', headers: { 'content-type': type, accept }, body: typeof body === 'string' ? body : new Uint8Array(body) })
}

t.test('integers in JSON reach the task as int at every size a double holds exactly', async (t) => {
  const body = '{"small": 7, "ts": 1764400000000, "negative": -5000000000, "edge": 4294967296, "max": 9007199254740991, "nested": [[2199023255552]], "half": 3000000000.5, "float": 1.5}'
  const response = await post('extra.types', body, 'application/json')
  t.equal(response.status, 200)
  t.same(await response.json(), {
    small: 'int', ts: 'int', negative: 'int', edge: 'int', max: 'int', nested: [['int']], half: 'float', float: 'float'
  })
})

t.test('integers beyond 2^53 in JSON (64-bit ids) reach the task exactly, as int', async (t) => {
  const body = '{"id": 1790000000000000001, "text": "1790000000000000001 \\" 9007199254740993", "low": -9223372036854775808, "high": 18446744073709551615, "big": 1e300, "frac": 12345678901234567.5}'
  const types = await post('extra.types', body, 'application/json')
  t.equal(types.status, 200)
  t.same(await types.json(), { id: 'int', text: 'str', low: 'int', high: 'int', big: 'float', frac: 'float' })
  const echoed = await post('echo', body, 'application/json', 'application/msgpack')
  const value = unpack(Buffer.from(await echoed.arrayBuffer()), { int64AsType: 'bigint' } as any) as Record<string, unknown>
  t.equal(value.id, 1790000000000000001n, 'not 1790000000000000000, which JSON.parse makes of it')
  t.equal(value.text, '1790000000000000001 " 9007199254740993', 'digits inside a string are left alone')
  t.equal(value.low, -9223372036854775808n)
  t.equal(value.high, 18446744073709551615n)
  t.equal(value.big, 1e300)
  const asJson = await post('echo', '[1790000000000000001]', 'application/json')
  t.equal(await asJson.text(), '["1790000000000000001"]', 'a JSON answer gives it as a string, as for any integer past 2^53')
  const top = await post('echo', '1790000000000000001', 'application/json', 'application/msgpack')
  t.equal(unpack(Buffer.from(await top.arrayBuffer()), { int64AsType: 'bigint' } as any), 1790000000000000001n, 'the body itself')
})

t.test('an integer past 64 bits, which no task can receive as an int, is the float it parses to', async (t) => {
  const response = await post('extra.types', '{"n": 1, "huge": 18446744073709551616, "negative": -9223372036854775809}', 'application/json')
  t.equal(response.status, 200)
  t.same(await response.json(), { n: 'int', huge: 'float', negative: 'float' })
})

t.test('a number too large for a double (1e400), NaN or Infinity in a field typed number is a 400 that says why', async (t) => {
  const huge = await post('stats.describe', '{"values": [1e400, 1]}', 'application/json')
  t.equal(huge.status, 400)
  t.match(await huge.json(), { code: 'FST_ERR_VALIDATION', message: "body/values/0 must be number: Infinity is not a number to JSON Schema (a JSON number past a double's range, such as 1e400, arrives as Infinity); send a finite one" })
  const nan = await post('stats.describe', pack({ values: [1, NaN] }), 'application/msgpack')
  t.match(await nan.json(), { code: 'FST_ERR_VALIDATION', message: 'body/values/1 must be number: NaN is not a number to JSON Schema; send a finite one' })
  const text = await post('stats.describe', '{"values": ["x"]}', 'application/json')
  t.match(await text.json(), { message: 'body/values/0 must be number' }, 'a string is only told it must be a number')
})

t.test('a TaskError whose details hold an integer past 2^53 is a proper 422', async (t) => {
  const response = await post('extra.types', '{"reject": true, "id": 1790000000000000001, "data": 1}', 'application/json')
  t.equal(response.status, 422)
  t.same(await response.json(), {
    statusCode: 422,
    code: 'TASK_REJECTED_INPUT',
    error: 'Unprocessable Entity',
    message: 'rejected as asked',
    details: { reject: true, id: '1790000000000000001', data: 1 }
  })
})

t.test('schemas check integers beyond 2^53, from msgpack and JSON, as integers', async (t) => {
  // extra.types declares {"n": {"type": "integer"}}: a BigInt failed Ajv's check before.
  const fromMsgpack = await post('extra.types', pack({ n: 2n ** 60n }), 'application/msgpack')
  t.equal(fromMsgpack.status, 200)
  t.same(await fromMsgpack.json(), { n: 'int' })
  const fromJson = await post('extra.types', '{"n": 1152921504606846977}', 'application/json')
  t.same(await fromJson.json(), { n: 'int' })
  const wrongType = await post('extra.types', '{"n": "1152921504606846977", "m": 1152921504606846977}', 'application/json')
  t.equal(wrongType.status, 400, 'a wrong type elsewhere in such a body is still caught')
  t.match(await wrongType.json(), { code: 'FST_ERR_VALIDATION', message: 'body/n must be integer' })
})

t.test('msgpack int64 input reaches the task as int, and a task\'s int comes back to a msgpack client as an integer', async (t) => {
  const input = { ts: 1764400000000, negative: -5000000000, list: [4294967296, 1.5] }
  const types = await post('extra.types', pack(input), 'application/msgpack')
  t.same(await types.json(), { ts: 'int', negative: 'int', list: ['int', 'float'] })
  // An int64 of exactly ±2^53, which msgpackr decodes as a number.
  const edges = await post('extra.types', pack({ up: 2n ** 53n, down: -(2n ** 53n) }), 'application/msgpack')
  t.same(await edges.json(), { up: 'int', down: 'int' })
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

t.test('a msgpack answer carries the task\'s own bytes: a float with an integer value stays a float', async (t) => {
  // stats.describe of [1, 2, 3]: mean and median are the Python float 2.0.
  const response = await post('stats.describe', '{"values": [1, 2, 3]}', 'application/json', 'application/msgpack')
  const hex = Buffer.from(await response.arrayBuffer()).toString('hex')
  t.ok(hex.includes(Buffer.from('\xa4mean', 'latin1').toString('hex') + 'cb4000000000000000'), 'mean: float64 2.0, not the int 2 a JavaScript number would give')
  t.ok(hex.includes(Buffer.from('\xa5count', 'latin1').toString('hex') + '03'), 'count: the int 3')
  const asJson = await post('stats.describe', '{"values": [1, 2, 3]}', 'application/json')
  t.match(await asJson.json(), { count: 3, mean: 2 }, 'the JSON answer is unchanged')
})

t.test('a result with a __proto__ key reaches a msgpack client as __proto_, as in JSON, not as the worker wrote it', async (t) => {
  // xml.import makes keys of element names: a document's author picks them.
  const xml = '<orders><record><id>1</id><__proto__><isAdmin>yes</isAdmin></__proto__></record></orders>'
  const response = await post('xml.import', xml, 'application/xml', 'application/msgpack', '?record=record')
  t.equal(response.status, 200)
  const bytes = Buffer.from(await response.arrayBuffer())
  t.notOk(bytes.includes('__proto__'), 'no __proto__ key for a JavaScript client\'s decoder')
  t.ok(bytes.includes('__proto_'))
  const asJson = await post('xml.import', xml, 'application/xml', 'application/json', '?record=record')
  t.match(await asJson.json(), { records: [{ id: '1', __proto_: { isAdmin: 'yes' } }] })
})

t.test('__proto__ as a value, not a key, leaves a msgpack answer as the worker wrote it: the mean stays a float', async (t) => {
  const csv = 'name,n\n__proto__,1\nb,3\n'
  const response = await post('csv.profile', csv, 'text/csv', 'application/msgpack')
  t.equal(response.status, 200)
  const hex = Buffer.from(await response.arrayBuffer()).toString('hex')
  t.ok(hex.includes(Buffer.from('__proto__').toString('hex')), 'the value __proto__ is there as it was')
  t.ok(hex.includes(Buffer.from('\xa4mean', 'latin1').toString('hex') + 'cb4000000000000000'), 'mean: float64 2.0, not re-encoded as the int 2')
})

t.test('a msgpack body with keys other than strings: an int key arrives as a string, an array key is a 400, and no worker dies', async (t) => {
  const restartsBefore = (await getJson(`${server.url}/api/queue-stats`)).restarts.protocol
  const intKey = await post('echo', Buffer.from('8201a161a16b02', 'hex'), 'application/msgpack') // {1: "a", "k": 2}
  t.equal(intKey.status, 200)
  t.same(await intKey.json(), { 1: 'a', k: 2 })
  const arrayKey = await post('echo', Buffer.from('81920102a162', 'hex'), 'application/msgpack') // {[1, 2]: "b"}
  t.equal(arrayKey.status, 400)
  t.match(await arrayKey.json(), { code: 'INVALID_INPUT', message: /body is not valid msgpack/ })
  t.equal((await getJson(`${server.url}/api/queue-stats`)).restarts.protocol, restartsBefore, 'no worker was replaced')
})

t.test('a query-string integer past 2^53 reaches the task exactly', async (t) => {
  const response = await post('extra.types', 'hello', 'text/plain', 'application/msgpack', '?n=1790000000000000001')
  t.equal(response.status, 200)
  t.same(unpack(Buffer.from(await response.arrayBuffer())), { n: 'int', text: 'str' })
  for (const [query, n] of [['1790000000000000001', 1790000000000000001n], ['%2B1790000000000000001', 1790000000000000001n], ['-9007199254740993', -9007199254740993n]] as const) {
    const echoed = await post('extra.raw_echo', 'hi', 'text/plain', 'application/msgpack', `?n=${query}`)
    const value = unpack(Buffer.from(await echoed.arrayBuffer()), { int64AsType: 'bigint' } as any) as Record<string, unknown>
    t.equal(value.n, n, `?n=${query}: the exact value, not a rounded one`)
  }
  const repeated = await post('extra.raw_echo', 'hi', 'text/plain', 'application/msgpack', '?ids=1790000000000000001&ids=5')
  const ids = (unpack(Buffer.from(await repeated.arrayBuffer()), { int64AsType: 'bigint' } as any) as Record<string, unknown>).ids
  t.same(ids, [1790000000000000001n, 5], 'a repeated parameter: each value exact')
  const once = await post('extra.raw_echo', 'hi', 'text/plain', 'application/msgpack', '?ids=1790000000000000001')
  t.equal(once.status, 200, 'an array option sent once (OpenAPI\'s default style sends [x] as ?ids=x)')
  t.same((unpack(Buffer.from(await once.arrayBuffer()), { int64AsType: 'bigint' } as any) as Record<string, unknown>).ids, [1790000000000000001n], 'an array of one, exact')
  // Through a $ref too: the OpenAPI parameter is that array's schema, and its default style sends [5] as ?refIds=5 (a 400 "must be array").
  const viaRef = await post('extra.raw_echo', 'hi', 'text/plain', 'application/json', '?refIds=5')
  t.equal(viaRef.status, 200, 'an array option behind a $ref, sent once')
  t.same((await viaRef.json()).refIds, [5])
})

t.test('JSON answers keep wide integers as numbers', async (t) => {
  const response = await post('echo', '{"ts": 1764400000000}', 'application/json')
  t.equal(await response.text(), '{"ts":1764400000000}')
})

// Not numbers, but raw bodies of a user task: where a schema error is, and the body's own field.
t.test('a raw body that fails its field\'s schema is reported as the body, a query option as the query string', async (t) => {
  const body = await post('extra.types', 'x', 'text/plain')
  t.equal(body.status, 400)
  t.match(await body.json(), { code: 'FST_ERR_VALIDATION', message: 'body must NOT have fewer than 2 characters' })
  const option = await post('extra.types', 'hello', 'text/plain', 'application/json', '?n=x')
  t.match(await option.json(), { code: 'FST_ERR_VALIDATION', message: 'querystring/n must be integer' })
})

t.test('a number option is written in decimal digits: blanks, hex and Infinity, which Ajv makes numbers of, are a 400', async (t) => {
  // A blank was 0 (xml.import's ?limit=%20 returned no records, where ?limit= is refused); 0x3 was 3.
  for (const [query, shown] of [['%20', '" "'], ['+', '" "'], ['%201', '" 1"'], ['0x3', '"0x3"'], ['Infinity', '"Infinity"'], ['1%0A', '"1\\n"']]) {
    const response = await post('extra.raw_echo', 'hi', 'text/plain', 'application/json', `?n=${query}`)
    t.equal(response.status, 400, `?n=${query}`)
    t.match(await response.json(), { code: 'FST_ERR_VALIDATION', message: `querystring/n must be a number written in decimal digits (got ${shown})`, details: [{ instancePath: '/n', keyword: 'numberText' }] })
  }
  const inArray = await post('extra.raw_echo', 'hi', 'text/plain', 'application/json', '?ids=5&ids=%20')
  t.match(await inArray.json(), { code: 'FST_ERR_VALIDATION', message: 'querystring/ids/1 must be a number written in decimal digits (got " ")', details: [{ instancePath: '/ids/1' }] })
  for (const [query, n] of [['007', 7], ['%2B3', 3], ['-2', -2], ['1e2', 100], ['4.0', 4]] as const) {
    const response = await post('extra.raw_echo', 'hi', 'text/plain', 'application/json', `?n=${query}`)
    t.equal(response.status, 200, `?n=${query}`)
    t.equal((await response.json()).n, n, `?n=${query}`)
  }
})

t.test('a query parameter named like the field the raw body fills is a 400, not silently overwritten', async (t) => {
  const response = await post('extra.types', 'hello', 'text/plain', 'application/json', '?text=other')
  t.equal(response.status, 400)
  t.match(await response.json(), { code: 'FST_ERR_VALIDATION', message: 'querystring/text is the field the raw body fills; leave it out of the query string', details: [{ instancePath: '/text' }] })
})
