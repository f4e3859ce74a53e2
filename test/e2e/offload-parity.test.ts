// The offload thread's promise (src/offload/): every answer and every error is the
// same, byte for byte, whichever thread does the work; only where it runs differs.
// Two real servers with real workers and the same task modules: one with
// OFFLOAD_MIN_BYTES=0, which parses every body and decodes every reply on the event
// loop, and one with OFFLOAD_MIN_BYTES=1, which sends every non-empty JSON or msgpack
// body, every text body of TEXT_OFFLOAD_FACTOR bytes or more, and every reply frame
// through the thread. Each row of the table goes to both;
// the answers must have the same status, the same headers (but for x-request-id,
// server-timing and date, which differ by nature) and the same bytes. Each row also
// says which jobs the thread must have done for it (pyfleet_offload_jobs_total), so a
// row that silently stayed on the event loop cannot pass for a parity check.

import t from 'tap'
import { pack, unpack } from 'msgpackr'
import { FIXTURES, startServer, type TestServer } from '../helpers/server.js'
import { TEXT_OFFLOAD_FACTOR } from '../../src/offload/offloader.js'

const JSON_TYPE = 'application/json'
const MSGPACK = 'application/msgpack'

interface Row {
  name: string
  task: string
  body: string | Uint8Array
  /** The content-type sent (application/json when left out); null: none at all. */
  type?: string | null
  accept?: string
  /** Appended to the path, with its '?'. */
  query?: string
  /** More request headers. */
  headers?: Record<string, string>
  /** Sent chunked (transfer-encoding: chunked, no content-length), in pieces of this many bytes. */
  chunked?: number
  /** The status both servers must answer with. */
  status: number
  /** What the event loop's answer (JSON, or msgpack decoded with BigInts) must hold: the row tests what its name says. */
  match?: unknown
  /** Jobs the offloading server's thread does for this row; by default an input job for a non-empty JSON or msgpack body the route reads, an answer job for a worker's reply. */
  jobs?: { input: number, answer: number }
}

interface Answer {
  status: number
  headers: Record<string, string>
  bytes: Buffer
}

/** Headers that differ between two servers by nature, whichever thread did the work. */
const OWN_HEADERS = new Set(['x-request-id', 'server-timing', 'date'])

async function send (url: string, row: Row): Promise<Answer> {
  const headers: Record<string, string> = { ...row.headers }
  if (row.type !== null) headers['content-type'] = row.type ?? JSON_TYPE
  if (row.accept !== undefined) headers.accept = row.accept
  // Bytes, not a string: fetch would add text/plain to a string body sent without a content-type.
  const sent = new Uint8Array(typeof row.body === 'string' ? Buffer.from(row.body) : row.body)
  const piece = row.chunked
  const body = piece === undefined
    ? sent
    : new ReadableStream<Uint8Array>({
      start (controller) {
        for (let at = 0; at < sent.length; at += piece) controller.enqueue(sent.slice(at, at + piece))
        controller.close()
      }
    })
  const init = { method: 'POST', headers, body, duplex: 'half' } as RequestInit
  const response = await fetch(`${url}/api/tasks/${row.task}${row.query ?? ''}`, init)
  const bytes = Buffer.from(await response.arrayBuffer())
  const kept: Record<string, string> = {}
  for (const [name, value] of response.headers) if (!OWN_HEADERS.has(name)) kept[name] = value
  return { status: response.status, headers: kept, bytes }
}

function decoded (answer: Answer): unknown {
  const type = answer.headers['content-type'] ?? ''
  if (type.startsWith(MSGPACK)) return unpack(answer.bytes, { int64AsType: 'bigint' } as any)
  return JSON.parse(answer.bytes.toString('utf8'))
}

/** Where two answers' bytes first differ, with a little of each around it; undefined if they are equal. */
function firstDifference (a: Buffer, b: Buffer): string | undefined {
  if (a.equals(b)) return undefined
  let at = 0
  while (at < a.length && at < b.length && a[at] === b[at]) at++
  const around = (bytes: Buffer): string => JSON.stringify(bytes.subarray(Math.max(0, at - 40), at + 40).toString('latin1'))
  return `${a.length} and ${b.length} bytes, first different at offset ${at}: event loop ${around(a)}, offload thread ${around(b)}`
}

function sample (text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => labels === '' ? l.startsWith(`${name} `) : l.startsWith(`${name}{${labels}}`))
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1))
}

async function offloadJobs (url: string): Promise<{ input: number, answer: number }> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return {
    input: sample(text, 'pyfleet_offload_jobs_total', 'conversion="input"'),
    answer: sample(text, 'pyfleet_offload_jobs_total', 'conversion="answer"')
  }
}


const STRUCTURED = /^(application\/(json|msgpack|x-msgpack|vnd\.msgpack))?(;|$)/i

function expectedJobs (row: Row): { input: number, answer: number } {
  if (row.jobs !== undefined) return row.jobs
  // Every non-empty JSON or msgpack body the route reads goes to the thread; raw text from
  // TEXT_OFFLOAD_FACTOR bytes (OFFLOAD_MIN_BYTES=1 here); raw bytes never (nothing to convert).
  const type = row.type ?? JSON_TYPE
  const structured = row.type === null || STRUCTURED.test(type)
  const converted = structured ? row.body.length > 0 : !/^application\/octet-stream(;|$)/i.test(type) && row.body.length >= TEXT_OFFLOAD_FACTOR
  return {
    input: converted && row.status !== 404 && row.status !== 415 ? 1 : 0,
    // 200, 422 and 500 come from a worker's reply here: a 400 never borrows one.
    answer: [200, 422, 500].includes(row.status) ? 1 : 0
  }
}

// ---- bodies ----------------------------------------------------------------

const bytesOf = (hex: string): Buffer => Buffer.from(hex, 'hex')
const latin1E = Buffer.concat([Buffer.from('{"name": "caf'), Buffer.from([0xe9]), Buffer.from('"}')])
// A real U+FFFD (EF BF BD) before the bad byte: the offset must skip it as three bytes.
const afterReplacement = Buffer.concat([Buffer.from('{"a": "\uFFFD",\n "b": "'), Buffer.from([0xff]), Buffer.from('"}')])
/** A msgpack array of `count` float32s of 0.1: five bytes each, nine once a JavaScript number is encoded again. */
function float32s (count: number): Buffer {
  const bytes = Buffer.alloc(5 + 5 * count)
  bytes[0] = 0xdd
  bytes.writeUInt32BE(count, 1)
  for (let i = 0; i < count; i++) {
    bytes[5 + 5 * i] = 0xca
    bytes.writeFloatBE(0.1, 6 + 5 * i)
  }
  return bytes
}
const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)
const nestedObjects = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
// 1,000,002 arrays (the outer one, a million empty ones and the last): one past MAX_CONTAINERS, 3 MB.
const tooManyContainers = '[' + '[],'.repeat(1_000_000) + '[]]'
const manyContainers = '[' + '[],'.repeat(99_999) + '[]]'
// ~1 MB of objects with unicode, floats and integers.
const megabyteOfRecords = JSON.stringify(Array.from({ length: 14_000 }, (_, i) => ({ id: i, name: `item ${i} ✓ é`, tags: ['a', 'b'], score: i / 7, big: 4294967296 + i })))
const megabyteOfText = 'Café ✓ 🐍 '.repeat(100_000)
const megabyteOfBytes = Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 31) & 0xff))
const prose = Array.from({ length: 4000 }, (_, i) => `Sentence number ${i} says hello to the wörld, again and again. Dr. Smith paid ${i}.50 for it!${i % 10 === 9 ? '\n\n' : ' '}`).join('')
const feed = '<?xml version="1.0"?><feed>' + Array.from({ length: 5000 }, (_, i) => `<item id="${i}" lang="en"><title>Item ${i} ✓</title><tag>a</tag><tag>b</tag><price cur="EUR">${i}.5</price></item>`).join('') + '</feed>'
const table = 'id,name,price,when,ok\n' + Array.from({ length: 20_000 }, (_, i) => `${i},name ${i % 97},${(i * 1.25).toFixed(2)},2026-11-${String(1 + (i % 28)).padStart(2, '0')},${i % 2 === 0 ? 'true' : 'false'}`).join('\n') + '\n'
const wideInts = '{"ts": 1764400000000, "negative": -5000000000, "edge": 4294967296, "max": 9007199254740991, "nested": [[2199023255552]], "half": 3000000000.5, "float": 1.5}'
const pastDoubles = '{"id": 1790000000000000001, "text": "1790000000000000001 \\" 9007199254740993", "low": -9223372036854775808, "high": 18446744073709551615, "big": 1e300, "frac": 12345678901234567.5}'

const rows: Row[] = [
  // Valid JSON to echo.
  { name: 'echo: an object', task: 'echo', body: '{"a": 1, "b": [true, false, null], "s": "x", "o": {}}', status: 200, match: { a: 1, b: [true, false, null] } },
  { name: 'echo: an array of mixed values', task: 'echo', body: '[1, 2.5, -3, "two", [], {}, null]', status: 200 },
  { name: 'echo: scalars at the top level (a string)', task: 'echo', body: '"a string"', status: 200, match: 'a string' },
  { name: 'echo: scalars at the top level (null)', task: 'echo', body: 'null', status: 200 },
  { name: 'echo: scalars at the top level (a number)', task: 'echo', body: '42', status: 200 },
  { name: 'echo: unicode, escapes and a surrogate pair', task: 'echo', body: '{"text": "héllo wörld ✓ 🐍", "escaped": "\\u00e9\\ud83d\\udc0d\\n\\t\\"", "nul": "\\u0000", "sep": "\u2028", "k\u00e9y": 1}', status: 200, match: { escaped: 'é🐍\n\t"' } },
  { name: 'echo: nested 199 levels under the top (the deepest allowed)', task: 'echo', body: nested(200), status: 200 },
  { name: 'echo: nested objects', task: 'echo', body: nestedObjects(150), status: 200 },
  { name: 'echo: duplicate keys (the last wins)', task: 'echo', body: '{"a": 1, "a": 2}', status: 200, match: { a: 2 } },
  { name: 'echo: constructor.prototype is data', task: 'echo', body: '{"constructor": {"prototype": {"x": 1}}}', status: 200 },
  { name: 'echo: a body with whitespace and a charset of utf-8', task: 'echo', body: ' \n {"a": 1} \n', type: 'application/json; charset=utf-8', status: 200 },
  { name: 'echo: charset us-ascii (UTF-8\'s subset)', task: 'echo', body: '{"a": 1}', type: 'application/json; charset=US-ASCII', status: 200 },
  { name: 'echo: no content-type is JSON', task: 'echo', body: '{"a": [1, 2]}', type: null, status: 200, match: { a: [1, 2] } },
  { name: 'echo: floats as JSON (2.0 is 2 to JSON.parse)', task: 'echo', body: '[2.0, 2, 1.5, -0.0, 1e300, 5e-324, 0.1, 123456789.123]', status: 200 },
  { name: 'echo: floats as msgpack', task: 'echo', body: '[2.0, 2, 1.5, -0.0, 1e300, 5e-324, 0.1, 123456789.123]', accept: MSGPACK, status: 200 },
  { name: 'stats.describe as msgpack: the mean stays the float 2.0 the worker wrote', task: 'stats.describe', body: '{"values": [1, 2, 3]}', accept: MSGPACK, status: 200, match: { count: 3, mean: 2 } },
  { name: 'stats.describe as JSON', task: 'stats.describe', body: '{"values": [1, 2, 3, 4.5, -1e10], "bins": 3}', status: 200 },
  { name: 'msgpack chosen by Accept without naming it (JSON refused)', task: 'stats.describe', body: '{"values": [1, 2, 3]}', accept: 'application/json;q=0, */*', status: 200 },

  // Invalid JSON, with the line and column of the error.
  { name: 'truncated JSON', task: 'echo', body: '{"a": [1, 2', status: 400, match: { code: 'INVALID_INPUT', details: { line: 1, column: 12 } } },
  { name: 'JSON with trailing garbage', task: 'echo', body: '{"a": 1} x', status: 400, match: { code: 'INVALID_INPUT', details: { line: 1 } } },
  { name: 'a JSON error on the third line', task: 'stats.describe', body: '{\n  "values": [1, 2,\n  3 4]\n}', status: 400, match: { code: 'INVALID_INPUT', details: { line: 3, column: 5 } } },
  { name: 'JSON with single quotes', task: 'echo', body: "{'a': 1}", status: 400, match: { code: 'INVALID_INPUT' } },
  // A leading byte order mark is skipped (as Fastify's own JSON parser does), which JSON.parse would refuse.
  { name: 'JSON after a byte order mark', task: 'echo', body: '\uFEFF{"a": 1}', status: 200, match: { a: 1 } },
  { name: 'a JSON error past a multi-byte character', task: 'echo', body: '{"é✓🐍": 1 2}', status: 400, match: { code: 'INVALID_INPUT', details: { line: 1, column: 12 } } },

  // Empty-ish bodies.
  { name: 'an empty JSON body', task: 'echo', body: '', status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'a JSON body of whitespace only', task: 'echo', body: ' \n\t ', status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'an empty body without a content-type', task: 'echo', body: '', type: null, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'a body of one space without a content-type', task: 'echo', body: ' ', type: null, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'an empty msgpack body', task: 'echo', body: '', type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },

  // Bytes and charsets.
  { name: 'a Latin-1 é in a JSON body', task: 'echo', body: latin1E, status: 400, match: { code: 'INVALID_INPUT', details: { offset: 13 } } },
  { name: 'a bad byte after a real U+FFFD', task: 'echo', body: afterReplacement, status: 400, match: { code: 'INVALID_INPUT', details: { offset: 20 } } },
  { name: 'JSON with charset latin1', task: 'echo', body: '{"a": 1}', type: 'application/json; charset=iso-8859-1', status: 415, match: { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' } },
  { name: 'a content type echo does not accept', task: 'echo', body: '{"a": 1}', type: 'text/plain', status: 415, match: { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' } },
  { name: 'an unknown task', task: 'no.such.task', body: '{"a": 1}', status: 404, match: { code: 'TASK_NOT_FOUND' } },

  // What JSON.parse accepts but a task cannot receive.
  { name: 'a __proto__ key', task: 'echo', body: '{"__proto__": {"isAdmin": true}}', status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'a nested __proto__ key', task: 'echo', body: '[{"a": {"__proto__": 1}}]', status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'a lone surrogate escape', task: 'echo', body: '"\\ud800"', status: 400, match: { code: 'INVALID_INPUT', message: /lone UTF-16 surrogate/ } },
  { name: 'a lone surrogate in a key', task: 'echo', body: '{"\\udc00": 1}', status: 400, match: { code: 'INVALID_INPUT', message: /lone UTF-16 surrogate/ } },
  // A repeated key keeps its last value; what an earlier one held is checked all the same.
  { name: 'a __proto__ key in a value a repeated key overwrote', task: 'echo', body: '{"a": {"__proto__": {"isAdmin": true}}, "a": 2}', status: 400, match: { code: 'INVALID_INPUT', message: /__proto__ key/ } },
  { name: 'an escaped __proto__ key in a value a repeated key overwrote', task: 'echo', body: '{"a": [{"\\u005f_proto__": 1}], "a": 2}', status: 400, match: { code: 'INVALID_INPUT', message: /__proto__ key/ } },
  { name: 'a lone surrogate in a value a repeated key overwrote', task: 'echo', body: '{"a": "\\ud800", "a": "x"}', status: 400, match: { code: 'INVALID_INPUT', message: /lone UTF-16 surrogate/ } },
  // The nesting limit is checked on the value: a replaced value is not there (README "What a body may hold").
  { name: 'a value nested past the limit, then replaced by a repeated key', task: 'echo', body: `{"a": ${nested(201)}, "a": 1}`, status: 200, match: { a: 1 } },
  { name: 'a key that only ends in __proto__, after an escaped quote', task: 'echo', body: '{"x\\"__proto__": 1, "a": "\\\\ud800"}', status: 200, match: { 'x"__proto__': 1, a: '\\ud800' } },
  { name: 'arrays nested 201 deep', task: 'echo', body: nested(201), status: 400, match: { code: 'INVALID_INPUT', message: /nests deeper than 200/ } },
  { name: 'objects nested 300 deep', task: 'echo', body: nestedObjects(300), status: 400, match: { code: 'INVALID_INPUT', message: /nests deeper than 200/ } },
  { name: 'more than 1,000,000 containers (3 MB)', task: 'echo', body: tooManyContainers, status: 400, match: { code: 'INVALID_INPUT', message: /more than 1,000,000 maps and arrays/ } },

  // Integers.
  { name: 'an integer past 2^53 echoed exactly, as a JSON string', task: 'echo', body: '[1790000000000000001]', status: 200, match: ['1790000000000000001'] },
  { name: 'integers past 2^53 echoed exactly as msgpack', task: 'echo', body: pastDoubles, accept: MSGPACK, status: 200, match: { id: 1790000000000000001n, low: -9223372036854775808n, high: 18446744073709551615n, big: 1e300 } },
  { name: 'integers past 2^53 echoed as JSON', task: 'echo', body: pastDoubles, status: 200, match: { id: '1790000000000000001', high: '18446744073709551615' } },
  { name: 'an integer past 2^53 as the body itself', task: 'echo', body: '1790000000000000001', accept: MSGPACK, status: 200, match: 1790000000000000001n },
  { name: 'integers past 2^53 reach the task as int', task: 'extra.types', body: pastDoubles, status: 200, match: { id: 'int', text: 'str', low: 'int', high: 'int', big: 'float', frac: 'float' } },
  { name: 'an integer past 64 bits is a float', task: 'extra.types', body: '{"n": 1, "huge": 18446744073709551616, "negative": -9223372036854775809}', status: 200, match: { huge: 'float', negative: 'float' } },
  { name: 'integers between 2^32 and 2^53 reach the task as int', task: 'extra.types', body: wideInts, status: 200, match: { ts: 'int', negative: 'int', edge: 'int', max: 'int', nested: [['int']], half: 'float', float: 'float' } },
  { name: 'integers between 2^32 and 2^53 come back as msgpack integers', task: 'echo', body: wideInts, accept: MSGPACK, status: 200, match: { ts: 1764400000000n, negative: -5000000000n, edge: 4294967296n, half: 3000000000.5 } },
  { name: 'integers between 2^32 and 2^53 as JSON', task: 'echo', body: wideInts, status: 200 },
  { name: 'a schema checks an integer past 2^53 as an integer', task: 'extra.types', body: '{"n": 1152921504606846977}', status: 200, match: { n: 'int' } },
  { name: 'a wrong type beside an integer past 2^53', task: 'extra.types', body: '{"n": "1152921504606846977", "m": 1152921504606846977}', status: 400, match: { code: 'FST_ERR_VALIDATION', message: 'body/n must be integer' } },
  { name: 'an integer past the schema\'s maximum of 2^64 - 1', task: 'extra.types', body: '{"n": 18446744073709551616}', status: 200 },
  { name: 'a TaskError whose details hold an integer past 2^53', task: 'extra.types', body: '{"reject": true, "id": 1790000000000000001, "data": 1}', status: 422, match: { code: 'TASK_REJECTED_INPUT', details: { id: '1790000000000000001' } } },

  // Schema validation.
  { name: 'stats.describe with values "x"', task: 'stats.describe', body: '{"values": "x"}', status: 400, match: { code: 'FST_ERR_VALIDATION', message: 'body/values must be array', details: [{ instancePath: '/values', keyword: 'type' }] } },
  { name: 'stats.describe with a string for a number (no coercion)', task: 'stats.describe', body: '{"values": [1, "2"]}', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'stats.describe with an extra field', task: 'stats.describe', body: '{"values": [1], "extra": 1}', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'stats.describe without its required field', task: 'stats.describe', body: '{}', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'a validation error asked for as msgpack is JSON all the same', task: 'stats.describe', body: '{"values": "x"}', accept: MSGPACK, status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'hash.digest with an unknown algorithm in a list', task: 'hash.digest', body: '{"data": "aGk=", "algorithms": ["sha512"]}', status: 400, match: { code: 'FST_ERR_VALIDATION', details: [{}] } },
  { name: 'hash.digest with an unknown algorithm in a string', task: 'hash.digest', body: '{"data": "aGk=", "algorithms": "md5,sha512"}', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'hash.digest with data of the wrong type', task: 'hash.digest', body: '{"data": 5}', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'a task module\'s schema (extra.greet, minLength)', task: 'extra.greet', body: '{"name": ""}', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'diag.work with a negative sleep', task: 'diag.work', body: '{"sleep_ms": -1}', status: 400, match: { code: 'FST_ERR_VALIDATION' } },

  // A query parameter that names a field of the input, beside a JSON or msgpack body: the
  // body is parsed first, so a parse error wins; a body that parses gets the query's 400.
  { name: 'a misplaced query parameter with a valid body', task: 'hash.digest', query: '?algorithms=md5', body: '{"data": "aGk="}', status: 400, match: { code: 'FST_ERR_VALIDATION', message: /query parameter "algorithms" is a field/ } },
  { name: 'two misplaced query parameters', task: 'hash.digest', query: '?algorithms=md5&data=x', body: '{"data": "aGk="}', status: 400, match: { code: 'FST_ERR_VALIDATION', message: /query parameters "algorithms", "data" are fields/ } },
  { name: 'a misplaced query parameter with an unparseable body', task: 'hash.digest', query: '?algorithms=md5', body: '{"data":', status: 400, match: { code: 'INVALID_INPUT', details: { line: 1, column: 9 } } },
  { name: 'a misplaced query parameter with a body that is not UTF-8', task: 'hash.digest', query: '?algorithms=md5', body: latin1E, status: 400, match: { code: 'INVALID_INPUT', details: { offset: 13 } } },
  { name: 'a misplaced query parameter with a __proto__ key', task: 'hash.digest', query: '?algorithms=md5', body: '{"__proto__": 1}', status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'a misplaced query parameter with too many containers', task: 'stats.describe', query: '?values=1', body: tooManyContainers, status: 400, match: { code: 'INVALID_INPUT' } },
  // A JSON text's lone surrogates are looked for as it is parsed, as its __proto__ keys are (json-strings.ts).
  { name: 'a misplaced query parameter with a lone surrogate', task: 'hash.digest', query: '?algorithms=md5', body: '{"data": "\\ud800"}', status: 400, match: { code: 'INVALID_INPUT', message: /lone UTF-16 surrogate/ } },
  // The event loop checks nesting and the schema after the query (body.ts checkedInput).
  { name: 'a misplaced query parameter with a body failing the schema', task: 'hash.digest', query: '?algorithms=md5', body: '{"data": 5}', status: 400, match: { code: 'FST_ERR_VALIDATION', message: /query parameter/ } },
  { name: 'a misplaced query parameter with nesting too deep', task: 'stats.describe', query: '?values=1', body: nested(300), status: 400, match: { code: 'FST_ERR_VALIDATION', message: /query parameter/ } },
  { name: 'a misplaced query parameter with a truncated msgpack body', task: 'hash.digest', query: '?algorithms=md5', body: pack({ data: Buffer.from('hi') }).subarray(0, 5), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'a misplaced query parameter with a valid msgpack body', task: 'hash.digest', query: '?algorithms=md5', body: pack({ data: Buffer.from('hi') }), type: MSGPACK, status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'a query parameter that is no field is left alone', task: 'stats.describe', query: '?cache=1', body: '{"values": [1, 2]}', status: 200 },
  { name: 'any query parameter beside a body for echo (no fields)', task: 'echo', query: '?values=1', body: '{"values": [1, 2]}', status: 200 },

  // msgpack bodies.
  { name: 'msgpack: a map with unicode, floats and nil', task: 'echo', body: pack({ a: 1, s: 'ünïcode ✓', list: [1, 2.5, null, true], o: {} }), type: MSGPACK, status: 200, match: { s: 'ünïcode ✓' } },
  { name: 'msgpack in, msgpack out', task: 'echo', body: pack({ a: 1, s: 'ünïcode ✓', list: [1, 2.5, null, true] }), type: MSGPACK, accept: MSGPACK, status: 200 },
  { name: 'msgpack: a float64 2.0 in the body', task: 'echo', body: bytesOf('81a166cb4000000000000000'), type: MSGPACK, accept: MSGPACK, status: 200 },
  { name: 'msgpack: bin data to hash.digest', task: 'hash.digest', body: pack({ data: Buffer.from([0, 1, 2, 255]), algorithms: ['sha256', 'md5', 'blake2b'] }), type: MSGPACK, status: 200, match: { size: 4 } },
  { name: 'msgpack: bin data echoed as base64', task: 'echo', body: pack({ bytes: Buffer.from([0, 1, 2, 255]) }), type: MSGPACK, status: 200, match: { bytes: 'AAEC/w==' } },
  { name: 'msgpack: bin data echoed as bin', task: 'echo', body: pack({ bytes: Buffer.from([0, 1, 2, 255]) }), type: MSGPACK, accept: MSGPACK, status: 200 },
  { name: 'msgpack: int64 past 2^53', task: 'echo', body: pack({ n: 2n ** 60n, negative: -(2n ** 60n), max: 2n ** 64n - 1n }), type: MSGPACK, accept: MSGPACK, status: 200, match: { n: 2n ** 60n, negative: -(2n ** 60n), max: 2n ** 64n - 1n } },
  { name: 'msgpack: int64 past 2^53 as JSON', task: 'echo', body: pack({ n: 2n ** 60n }), type: MSGPACK, status: 200, match: { n: '1152921504606846976' } },
  { name: 'msgpack: int64 past 2^53 checked by a schema', task: 'extra.types', body: pack({ n: 2n ** 60n }), type: MSGPACK, status: 200, match: { n: 'int' } },
  { name: 'msgpack: int64 of exactly 2^53', task: 'extra.types', body: pack({ up: 2n ** 53n, down: -(2n ** 53n) }), type: MSGPACK, status: 200, match: { up: 'int', down: 'int' } },
  { name: 'msgpack: integers past 32 bits', task: 'echo', body: pack({ ts: 1764400000000, negative: -5000000000, list: [4294967296, 1.5] }), type: MSGPACK, accept: MSGPACK, status: 200, match: { ts: 1764400000000n } },
  { name: 'msgpack: an int key arrives as a string', task: 'echo', body: bytesOf('8201a161a16b02'), type: MSGPACK, status: 200, match: { 1: 'a', k: 2 } },
  { name: 'msgpack: as application/x-msgpack', task: 'echo', body: pack([1, 'two']), type: 'application/x-msgpack', status: 200 },
  { name: 'msgpack: truncated', task: 'echo', body: pack({ a: 'hello', b: [1, 2, 3] }).subarray(0, 10), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: bytes after the value', task: 'echo', body: bytesOf('01c0'), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: the byte 0xc1', task: 'echo', body: bytesOf('c1'), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: an extension type (fixext 1)', task: 'echo', body: bytesOf('81a165d40100'), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: a timestamp', task: 'echo', body: pack({ when: new Date(1764400000000) }), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: a __proto__ key', task: 'echo', body: Buffer.concat([bytesOf('81a9'), Buffer.from('__proto__'), bytesOf('01')]), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: a string that is not UTF-8', task: 'echo', body: bytesOf('a1e9'), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: a CESU-8 lone surrogate', task: 'echo', body: bytesOf('a3eda080'), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: an array as a map key', task: 'echo', body: bytesOf('81920102a162'), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT', message: /map key/ } },
  { name: 'msgpack: an array claiming 2^32 - 1 elements', task: 'echo', body: bytesOf('ddffffffff'), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT' } },
  { name: 'msgpack: nested 201 deep', task: 'echo', body: Buffer.concat([Buffer.alloc(201, 0x91), bytesOf('c0')]), type: MSGPACK, status: 400, match: { code: 'INVALID_INPUT', message: /nests deeper/ } },
  { name: 'msgpack: nested 200 deep', task: 'echo', body: Buffer.concat([Buffer.alloc(200, 0x91), bytesOf('c0')]), type: MSGPACK, status: 200 },
  { name: 'msgpack: failing the schema', task: 'stats.describe', body: pack({ values: 'x' }), type: MSGPACK, status: 400, match: { code: 'FST_ERR_VALIDATION', message: 'body/values must be array' } },
  { name: 'msgpack: bin data with an unknown algorithm', task: 'hash.digest', body: pack({ data: Buffer.from('hi'), algorithms: ['sha512'] }), type: MSGPACK, status: 400, match: { code: 'FST_ERR_VALIDATION' } },

  // Errors from the worker's reply.
  { name: 'xml.import: malformed XML (422 with line and column)', task: 'xml.import', body: '{"xml": "<a>\\n<b></a>"}', status: 422, match: { code: 'TASK_REJECTED_INPUT', details: { line: 2 } } },
  { name: 'xml.import: a DTD is refused', task: 'xml.import', body: JSON.stringify({ xml: '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>' }), status: 422, match: { code: 'TASK_REJECTED_INPUT' } },
  { name: 'csv.profile: a ragged row', task: 'csv.profile', body: '{"csv": "a,b\\n1,2\\n3\\n"}', status: 422, match: { code: 'TASK_REJECTED_INPUT', details: { line: 3 } } },
  { name: 'stats.regression: too few points', task: 'stats.regression', body: '{"x": [1], "y": [1], "degree": 2}', status: 422, match: { code: 'TASK_REJECTED_INPUT' } },
  { name: 'diag.work: a task that raises (500)', task: 'diag.work', body: '{"raise": "boom"}', status: 500, match: { code: 'TASK_FAILED' } },
  { name: 'diag.work: a task that rejects (422)', task: 'diag.work', body: '{"reject": "no"}', status: 422, match: { code: 'TASK_REJECTED_INPUT' } },
  { name: 'a TaskError answered to a msgpack client is JSON', task: 'diag.work', body: '{"reject": "no"}', accept: MSGPACK, status: 422, match: { code: 'TASK_REJECTED_INPUT' } },

  // Results JavaScript cannot hold (extra.odd_result): a 500, and the worker stays.
  ...['bytes_key', 'tuple_key', 'ext', 'ext0', 'ext66', 'ext116'].map((kind): Row => ({
    name: `a result no JavaScript value can hold: ${kind}`, task: 'extra.odd_result', body: JSON.stringify({ kind }), status: 500, match: { code: 'TASK_FAILED' }
  })),
  { name: 'a result no JavaScript value can hold, asked for as msgpack', task: 'extra.odd_result', body: '{"kind": "ext"}', accept: MSGPACK, status: 500, match: { code: 'TASK_FAILED' } },

  // Raw bodies: read on the event loop in both servers; their replies go through the thread.
  { name: 'raw text to text.stats', task: 'text.stats', body: 'The quick brown fox. It jumps!\n\nOver the lazy dog.', type: 'text/plain', status: 200 },
  { name: 'raw bytes to hash.digest with algorithms in the query', task: 'hash.digest', query: '?algorithms=md5,sha1', body: megabyteOfBytes, type: 'application/octet-stream', status: 200 },
  { name: 'raw XML with a __proto__ element, answered as msgpack (re-encoded)', task: 'xml.import', query: '?record=record', body: '<orders><record><id>1</id><__proto__><isAdmin>yes</isAdmin></__proto__></record></orders>', type: 'application/xml', accept: MSGPACK, status: 200 },
  { name: 'raw CSV with __proto__ as a value, answered as msgpack (as written)', task: 'csv.profile', body: 'name,n\n__proto__,1\nb,3\n', type: 'text/csv', accept: MSGPACK, status: 200 },
  { name: 'a raw query integer past 2^53', task: 'extra.raw_echo', query: '?n=1790000000000000001&ids=1790000000000000001&ids=5', body: 'hi there', type: 'text/plain', accept: MSGPACK, status: 200, match: { n: 1790000000000000001n } },

  // Raw text bodies: decoded, put in their field beside the query string's options, and
  // checked on the thread too (bytes for octet-stream stay on the event loop: nothing to convert).
  { name: 'raw text that is not UTF-8 names the byte', task: 'text.stats', body: Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from(' au lait')]), type: 'text/plain', status: 400, match: { code: 'INVALID_INPUT', details: { offset: 3 } } },
  { name: 'raw text in a charset nobody knows', task: 'text.stats', body: 'hello there', type: 'text/plain; charset=klingon', status: 415, match: { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', message: /charset "klingon"/ }, jobs: { input: 1, answer: 0 } },
  { name: 'a raw array option sent once is an array of one', task: 'extra.raw_echo', query: '?ids=5&n=7', body: 'hi there', type: 'text/plain', status: 200, match: { ids: [5], n: 7 } },
  { name: 'a raw option of one integer or an array of them, sent once: the integer', task: 'extra.raw_echo', query: '?either=5', body: 'hi there', type: 'text/plain', status: 200, match: { either: 5 } },
  { name: 'a raw option of one integer or an array of them, repeated: the array', task: 'extra.raw_echo', query: '?either=5&either=6', body: 'hi there', type: 'text/plain', status: 200, match: { either: [5, 6] } },
  { name: 'a raw array of arrays sent once: the query string cannot say its inner arrays', task: 'extra.raw_echo', query: '?grid=9007199254740993', body: 'hi there', type: 'text/plain', status: 400, match: { code: 'FST_ERR_VALIDATION', message: /querystring\/grid\/0 must be array/ } },
  { name: 'a raw scalar option sent twice', task: 'extra.raw_echo', query: '?n=5&n=6', body: 'hi there', type: 'text/plain', status: 400, match: { code: 'FST_ERR_VALIDATION', message: /^querystring\/n is given 2 times \("5", "6"\); give it once$/ } },
  { name: 'raw text in Latin-1', task: 'extra.raw_echo', body: Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x63, 0x61, 0x66, 0xe9]), type: 'text/plain; charset=iso-8859-1', status: 200, match: { text: 'café café' } },
  { name: 'raw text in windows-1252 (0x80 is the euro sign)', task: 'extra.raw_echo', body: Buffer.from([0x80, 0x31, 0x20, 0x80, 0x32, 0x20, 0x80, 0x33]), type: 'text/plain; charset=windows-1252', status: 200, match: { text: '€1 €2 €3' } },
  { name: 'raw text in UTF-16LE', task: 'extra.raw_echo', body: Buffer.from('héllo ✓', 'utf16le'), type: 'text/plain; charset=utf-16le', status: 200, match: { text: 'héllo ✓' } },
  { name: 'raw text that is not valid Latin-2 is still text (every byte is a character)', task: 'extra.raw_echo', body: Buffer.from([0xa1, 0xff, 0xa1, 0xff, 0xa1, 0xff, 0xa1, 0xff]), type: 'text/plain; charset=iso-8859-2', status: 200 },
  { name: 'raw UTF-16 text with a lone surrogate half', task: 'extra.raw_echo', body: Buffer.from([0x41, 0x00, 0x42, 0x00, 0x00, 0xd8, 0x41, 0x00]), type: 'text/plain; charset=utf-16le', status: 400, match: { code: 'INVALID_INPUT', message: /not valid utf-16le text/ } },
  { name: 'raw XML whose declaration says ISO-8859-1', task: 'xml.import', body: Buffer.concat([Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><r><record><name>caf'), Buffer.from([0xe9]), Buffer.from('</name></record></r>')]), type: 'application/xml', status: 200, match: { records: [{ name: 'café' }] } },
  { name: 'raw XML declaring an encoding nobody knows', task: 'xml.import', body: '<?xml version="1.0" encoding="x-unknown"?><r/>', type: 'text/xml', status: 415, match: { message: /the XML declaration's encoding "x-unknown"/ }, jobs: { input: 1, answer: 0 } },
  { name: 'raw CSV with its options in the query string', task: 'csv.profile', query: '?delimiter=%3B&header=false', body: 'a;1\nb;2\n', type: 'text/csv', status: 200 },
  { name: 'raw text with its own field in the query string', task: 'extra.raw_echo', query: '?text=other', body: 'hi there', type: 'text/plain', status: 400, match: { code: 'FST_ERR_VALIDATION', message: /querystring\/text is the field the raw body fills/ } },
  { name: 'raw text with a query option that is not an integer', task: 'extra.raw_echo', query: '?n=many', body: 'hi there', type: 'text/plain', status: 400, match: { code: 'FST_ERR_VALIDATION', message: /querystring\/n must be integer/ } },
  { name: 'raw text with an option given twice where one is expected', task: 'extra.raw_echo', query: '?n=1&n=2', body: 'hi there', type: 'text/plain', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'raw text with __proto__ and constructor as query parameters', task: 'extra.raw_echo', query: '?__proto__=x&constructor=y&n=1', body: 'hi there', type: 'text/plain', status: 200, match: { text: 'hi there', n: 1 } },
  { name: 'a long raw text with a long query', task: 'text.stats', query: `?top=3&${Array.from({ length: 20 }, (_, i) => `x${i}=${'v'.repeat(50)}`).join('&')}`, body: prose, type: 'text/plain', status: 400, match: { code: 'FST_ERR_VALIDATION' } },
  { name: 'a long raw text to text.stats', task: 'text.stats', query: '?top=3', body: prose, type: 'text/plain; charset=utf-8', status: 200 },

  // Large bodies and results.
  { name: 'echo of ~1 MB of records', task: 'echo', body: megabyteOfRecords, status: 200 },
  { name: 'echo of ~1 MB of records, as msgpack', task: 'echo', body: megabyteOfRecords, accept: MSGPACK, status: 200 },
  { name: 'echo of a ~1 MB string', task: 'echo', body: JSON.stringify({ text: megabyteOfText }), status: 200 },
  { name: 'echo of 100,000 empty arrays', task: 'echo', body: manyContainers, status: 200 },
  { name: 'echo of 1 MiB of bytes as base64', task: 'echo', body: pack({ data: megabyteOfBytes }), type: MSGPACK, status: 200 },
  { name: 'echo of 1 MiB of bytes as bin', task: 'echo', body: pack({ data: megabyteOfBytes }), type: MSGPACK, accept: MSGPACK, status: 200 },
  { name: 'hash.digest of 1 MiB of bin data, every algorithm', task: 'hash.digest', body: pack({ data: megabyteOfBytes, algorithms: ['sha256', 'sha1', 'md5', 'blake2b', 'sha3_256'] }), type: MSGPACK, status: 200, match: { size: 1 << 20 } },
  { name: 'hash.digest of base64 data in JSON', task: 'hash.digest', body: JSON.stringify({ data: megabyteOfBytes.toString('base64'), algorithms: 'sha256,md5' }), status: 200, match: { size: 1 << 20 } },
  { name: 'text.stats of a long JSON text', task: 'text.stats', body: JSON.stringify({ text: prose, top: 50 }), status: 200 },
  { name: 'xml.import of a JSON document with 5,000 records', task: 'xml.import', body: JSON.stringify({ xml: feed, record: 'item', limit: 5000 }), status: 200, match: { root: 'feed', count: 5000 } },
  { name: 'xml.import of a JSON document, as msgpack', task: 'xml.import', body: JSON.stringify({ xml: feed, record: 'item', limit: 5000 }), accept: MSGPACK, status: 200 },
  { name: 'csv.profile of a JSON text of 20,000 rows', task: 'csv.profile', body: JSON.stringify({ csv: table }), status: 200, match: { rows: 20_000 } },
  { name: 'csv.profile of a JSON text, as msgpack', task: 'csv.profile', body: JSON.stringify({ csv: table }), accept: MSGPACK, status: 200 },
  { name: 'a 1 MB result from a small body (extra.big)', task: 'extra.big', body: '{"n": 1000000}', status: 200 },
  { name: 'stats.describe of 50,000 values', task: 'stats.describe', body: JSON.stringify({ values: Array.from({ length: 50_000 }, (_, i) => Math.sin(i) * 1000), bins: 100 }), status: 200 },

  // Under BODY_LIMIT_BYTES (4 MiB here) but past MAX_FRAME_BYTES (6 MiB) once encoded for
  // the worker: the size is in the message, so the thread must encode the input to the
  // same bytes as the event loop's frame holds.
  { name: 'a 3.2 MB body of floats that encodes past MAX_FRAME_BYTES (413)', task: 'echo', body: JSON.stringify(Array.from({ length: 800_000 }, () => 0.1)), status: 413, match: { code: 'FST_ERR_CTP_BODY_TOO_LARGE', message: /^the input is \d+ bytes once encoded for the worker, over MAX_FRAME_BYTES \(6291456\)/ }, jobs: { input: 1, answer: 0 } },
  { name: 'long unicode strings and floats that encode past MAX_FRAME_BYTES (413)', task: 'echo', body: JSON.stringify({ texts: Array.from({ length: 64 }, (_, i) => 'é✓x'.repeat(4_000 + i)), floats: Array.from({ length: 550_000 }, () => 0.1) }), status: 413, match: { code: 'FST_ERR_CTP_BODY_TOO_LARGE' }, jobs: { input: 1, answer: 0 } },
  { name: 'msgpack float32s that encode as float64s past MAX_FRAME_BYTES (413)', task: 'echo', body: float32s(800_000), type: MSGPACK, status: 413, match: { code: 'FST_ERR_CTP_BODY_TOO_LARGE' }, jobs: { input: 1, answer: 0 } },
  { name: 'a result past MAX_FRAME_BYTES (500 RESULT_TOO_LARGE)', task: 'extra.big', body: '{"n": 7000000}', status: 500, match: { code: 'RESULT_TOO_LARGE' } },

  // Other ways of sending a body: chunked, headers the route reads after the body.
  { name: 'a chunked JSON body', task: 'echo', body: megabyteOfRecords, chunked: 65_536, status: 200 },
  { name: 'a chunked JSON body that does not parse', task: 'echo', body: '{"a": [1, 2, 3', chunked: 4, status: 400, match: { code: 'INVALID_INPUT', details: { line: 1, column: 15 } } },
  { name: 'a chunked msgpack body', task: 'echo', body: pack({ data: megabyteOfBytes, n: 2n ** 60n }), type: MSGPACK, accept: MSGPACK, chunked: 100_000, status: 200 },
  { name: 'a bad x-request-timeout-ms with a valid body', task: 'echo', body: '{"a": 1}', headers: { 'x-request-timeout-ms': 'soon' }, status: 400, match: { code: 'INVALID_INPUT', message: /x-request-timeout-ms/ } },
  { name: 'a bad x-request-timeout-ms with a body that does not parse (the body\'s error wins)', task: 'echo', body: '{"a": ', headers: { 'x-request-timeout-ms': 'soon' }, status: 400, match: { code: 'INVALID_INPUT', message: /not valid JSON/ } },
  { name: 'msgpack bytes sent without a content-type are read as JSON', task: 'echo', body: pack({ data: Buffer.from([0xff, 0xfe]) }), type: null, status: 400, match: { code: 'INVALID_INPUT', details: { offset: 0 } } },
  { name: 'a content-type in capitals', task: 'echo', body: '{"a": 1}', type: 'Application/JSON', status: 200 },
  { name: 'JSON with a quoted charset parameter', task: 'echo', body: '{"a": 1}', type: 'application/json; charset="utf-8"', status: 200 },
  { name: 'a msgpack BigInt past a schema\'s maximum', task: 'stats.describe', body: pack({ values: [1], bins: 2n ** 60n }), type: MSGPACK, status: 400, match: { code: 'FST_ERR_VALIDATION', message: /body\/bins must be <=/ } },
  { name: 'a msgpack BigInt where a number is expected', task: 'stats.describe', body: pack({ values: [1, 2n ** 60n] }), type: MSGPACK, status: 200 },
  { name: 'raw XML with a __proto__ element, answered as JSON', task: 'xml.import', query: '?record=record', body: '<orders><record><id>1</id><__proto__><isAdmin>yes</isAdmin></__proto__></record></orders>', type: 'application/xml', status: 200, match: { records: [{ id: '1', __proto_: { isAdmin: 'yes' } }] } },

  // Values msgpack and Python carry that JSON does not.
  { name: 'msgpack: NaN and infinities, answered as JSON', task: 'echo', body: pack([NaN, Infinity, -Infinity, 1.5]), type: MSGPACK, status: 200, match: [null, null, null, 1.5] },
  { name: 'msgpack: NaN and infinities, answered as msgpack', task: 'echo', body: pack([NaN, Infinity, -Infinity, 1.5]), type: MSGPACK, accept: MSGPACK, status: 200 },
  { name: 'a TaskError whose details hold bytes (base64 in JSON)', task: 'extra.types', body: pack({ reject: true, data: Buffer.from([0, 1, 255]), n: 2n ** 60n }), type: MSGPACK, status: 422, match: { code: 'TASK_REJECTED_INPUT', details: { data: 'AAH/', n: '1152921504606846976' } } }
]

// ---- the servers -------------------------------------------------------------

let eventLoop: TestServer
let offloading: TestServer
t.before(async () => {
  // The same task modules in both: extra.odd_result and extra.types come from the fixtures.
  // Limits that leave room for every row's body and result, and that a body under the
  // body limit can pass once encoded (the 413 rows).
  const env = { POOL_SIZE: '2', TASK_MODULES: 'extra_tasks', PYTHONPATH: FIXTURES, BODY_LIMIT_BYTES: String(4 * 1024 * 1024), MAX_FRAME_BYTES: String(6 * 1024 * 1024) }
  ;[eventLoop, offloading] = await Promise.all([
    startServer(t, { ...env, OFFLOAD_MIN_BYTES: '0' }),
    startServer(t, { ...env, OFFLOAD_MIN_BYTES: '1' })
  ])
})

let expectedInputJobs = 0
let expectedAnswerJobs = 0

for (const row of rows) {
  t.test(row.name, async (t) => {
    const before = await offloadJobs(offloading.url)
    const [loop, thread] = await Promise.all([send(eventLoop.url, row), send(offloading.url, row)])
    const after = await offloadJobs(offloading.url)

    t.equal(loop.status, row.status, 'the event loop answers with the status the row is about')
    if (row.match !== undefined) t.match(decoded(loop), row.match, 'the event loop\'s answer is the one the row is about')
    t.equal(thread.status, loop.status, 'the same status')
    t.equal(thread.headers['content-type'], loop.headers['content-type'], 'the same content-type')
    // All of them, connection and keep-alive too: a body's error is raised by the content-type
    // parser on the event loop but in the handler after the thread's job, and the client must
    // not be able to tell which (connection-reuse.ts decides per error what the connection does).
    t.same(thread.headers, loop.headers, 'the same headers, but for the request id, timings and date')
    if (loop.status >= 400) {
      // Errors compared as values too: a difference reads better as a diff of fields.
      t.same(decoded(thread), decoded(loop), 'the same error')
    }
    const difference = firstDifference(loop.bytes, thread.bytes)
    t.equal(difference, undefined, 'the same body bytes')

    const jobs = expectedJobs(row)
    expectedInputJobs += jobs.input
    expectedAnswerJobs += jobs.answer
    t.same({ input: after.input - before.input, answer: after.answer - before.answer }, jobs, 'the offloading server did this row\'s work on its thread')
  })
}

t.test('the thread did the work on one server only, and has nothing left waiting', async (t) => {
  const loopText = await (await fetch(`${eventLoop.url}/metrics`)).text()
  t.equal(sample(loopText, 'pyfleet_offload_jobs_total', 'conversion="input"'), 0, 'OFFLOAD_MIN_BYTES=0: no body went to the thread')
  t.equal(sample(loopText, 'pyfleet_offload_jobs_total', 'conversion="answer"'), 0, 'OFFLOAD_MIN_BYTES=0: no reply went to the thread')
  t.equal(eventLoop.app.offloader.threadStarts, 0, 'its thread was never started')
  const text = await (await fetch(`${offloading.url}/metrics`)).text()
  t.ok(expectedInputJobs > 50 && expectedAnswerJobs > 50, `the rows sent ${expectedInputJobs} bodies and ${expectedAnswerJobs} replies through the thread`)
  t.equal(sample(text, 'pyfleet_offload_jobs_total', 'conversion="input"'), expectedInputJobs, 'OFFLOAD_MIN_BYTES=1: every JSON, msgpack and text body went to the thread')
  t.equal(sample(text, 'pyfleet_offload_jobs_total', 'conversion="answer"'), expectedAnswerJobs, 'OFFLOAD_MIN_BYTES=1: every reply went to the thread')
  t.equal(sample(text, 'pyfleet_offload_pending_jobs', ''), 0, 'no job is left waiting')
  t.equal(offloading.app.offloader.threadStarts, 1, 'one thread did it all: none of the rows made it fail')
  // Same pool state after the same traffic: no row cost a worker on one server and not the other.
  const [loopStats, threadStats] = await Promise.all([eventLoop, offloading].map(async (s) => await (await fetch(`${s.url}/api/queue-stats`)).json()))
  t.same(threadStats.restarts, loopStats.restarts, 'the same worker restarts')
  t.same(threadStats.tasks, loopStats.tasks, 'the same counts of completed and failed calls')
})
