// The built-in tasks over HTTP: raw bodies with query options, hostile XML,
// binary input in all three forms, and 400s that borrow no worker.

import t from 'tap'
import { createHash } from 'node:crypto'
import { pack } from 'msgpackr'
import { readmeRows } from '../helpers/readme.js'
import { rawExchange } from '../helpers/raw-http.js'
import { callTask, getJson, startServer, type TestServer } from '../helpers/server.js'

let server: TestServer
let url: string
t.before(async () => {
  server = await startServer(t, { POOL_SIZE: '2' })
  url = server.url
})

const callsSoFar = (): number => server.app.pool.members().reduce((n, w) => n + w.calls, 0)

t.test('GET /api/tasks lists all eight tasks with their schemas', async (t) => {
  const { tasks } = await getJson(`${url}/api/tasks`)
  t.same(tasks.map((x: any) => x.name).sort(), ['csv.profile', 'diag.work', 'echo', 'hash.digest', 'stats.describe', 'stats.regression', 'text.stats', 'xml.import'])
  for (const task of tasks) t.type(task.schema, 'object', `${task.name} has a schema`)
  t.same(tasks.find((x: any) => x.name === 'xml.import').raw, ['application/xml', 'text/xml'])
})

t.test('README\'s table of built-in tasks has each task the workers serve, with its timeout and raw types', async (t) => {
  const rows = await readmeRows('## The built-in tasks')
  const { tasks } = await getJson(`${url}/api/tasks`)
  t.same(rows.map((row) => /^\| `([^`]+)`/.exec(row)?.[1]).sort(), tasks.map((task: { name: string }) => task.name).sort(), 'a row for each task, and none for a task that is gone')
  for (const task of tasks) {
    const row = rows.find((line) => line.startsWith(`| \`${task.name}\` |`))
    if (row === undefined) { t.fail(`${task.name} has no row in README's "The built-in tasks"`); continue }
    t.ok(row.endsWith(`| ${task.timeoutMs / 1000} s |`), `${task.name}: ${task.timeoutMs / 1000} s in README`)
    for (const type of task.raw) t.ok(row.includes(type), `${task.name}: README names its raw type ${type}`)
  }
})

t.test('xml.import: raw XML with query options', async (t) => {
  const xml = '<?xml version="1.0"?><feed><item id="1"><title>One</title><tag>a</tag><tag>b</tag></item><item id="2"><title>Two</title></item><item id="3"><title>Three</title></item></feed>'
  const reply = await callTask(url, 'xml.import?record=item&limit=2', xml, { 'content-type': 'application/xml' })
  t.equal(reply.status, 200)
  t.equal(reply.json.root, 'feed')
  t.equal(reply.json.count, 3)
  t.same(reply.json.records, [{ '@id': '1', title: 'One', tag: ['a', 'b'] }, { '@id': '2', title: 'Two' }])
  const json = await callTask(url, 'xml.import', { xml, record: 'item', limit: 1 })
  t.same(json.json.records, [{ '@id': '1', title: 'One', tag: ['a', 'b'] }])
})

t.test('xml.import: an option whose percent-escapes do not decode as UTF-8 is a 400, not a search for its raw characters', async (t) => {
  const xml = '<r><élément>1</élément></r>'
  // After a `#` too, which Node lets through in a request target and the router takes as the query's start.
  for (const query of ['?record=%zz', '?record=%E9l%E9ment', '?limit=1&record=%', '#record=%E9l%E9ment']) {
    const answer = await rawExchange(url, `POST /api/tasks/xml.import${query} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/xml\r\ncontent-length: ${Buffer.byteLength(xml)}\r\n\r\n${xml}`)
    t.match(answer, /^HTTP\/1\.1 400 /, query)
    t.match(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), { code: 'FST_ERR_BAD_URL', message: /^the query string does not percent-decode as UTF-8 at "record=%[^"]*": encode each name and value as UTF-8/ }, query)
  }
  const utf8 = await callTask(url, 'xml.import?record=%C3%A9l%C3%A9ment', xml, { 'content-type': 'application/xml' })
  t.same(utf8.json, { root: 'r', count: 1, records: [{ '#text': '1' }] }, 'the same name in UTF-8 is found')
})

t.test('xml.import: a raw document sent without a charset is read in the encoding it declares, or its byte order mark says', async (t) => {
  const text = (encoding: string): string => `<?xml version="1.0" encoding="${encoding}"?><feed><item>caf\u00e9 \u20ac</item></feed>`
  const documents: Array<[string, Buffer]> = [
    ['Latin-1 declared', Buffer.from(text('ISO-8859-1').replace('\u20ac', 'E'), 'latin1')],
    ['windows-1252 declared', Buffer.from(text('windows-1252').replace('\u20ac', '\x80'), 'latin1')],
    ['UTF-16 with a byte order mark', Buffer.concat([Buffer.from([0xFF, 0xFE]), Buffer.from(text('UTF-16'), 'utf16le')])],
    ['UTF-8 with a byte order mark', Buffer.concat([Buffer.from([0xEF, 0xBB, 0xBF]), Buffer.from(text('UTF-8'))])]
  ]
  for (const [name, body] of documents) {
    const reply = await callTask(url, 'xml.import', body, { 'content-type': 'application/xml' })
    t.equal(reply.status, 200, name)
    t.match(reply.json, { root: 'feed', records: [{ '#text': /^caf\u00e9 (\u20ac|E)$/ }] }, name)
  }
  const stated = await callTask(url, 'xml.import', Buffer.from(text('ISO-8859-1').replace('\u20ac', 'E')), { 'content-type': 'application/xml; charset=utf-8' })
  t.equal(stated.status, 200, 'a charset in the content-type wins over the declaration')
  t.match(stated.json.records, [{ '#text': 'caf\u00e9 E' }])
  const marked = await callTask(url, 'xml.import', documents[2][1], { 'content-type': 'application/xml; charset=utf-8' })
  t.equal(marked.status, 200, 'and a byte order mark wins over the charset (RFC 7303)')
  t.match(marked.json.records, [{ '#text': 'caf\u00e9 \u20ac' }])
  const unknown = await callTask(url, 'xml.import', Buffer.from(text('EBCDIC-XY')), { 'content-type': 'text/xml' })
  t.equal(unknown.status, 415)
  t.equal(unknown.json.message, 'the XML declaration\'s encoding "EBCDIC-XY" is not supported; send UTF-8')
})

t.test('xml.import: hostile documents are refused with 422 and the worker stays healthy', async (t) => {
  const hostile = {
    'billion laughs': '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>',
    'quadratic blow-up': `<?xml version="1.0"?><!DOCTYPE kaboom [<!ENTITY a "${'x'.repeat(10000)}">]><kaboom>${'&a;'.repeat(1000)}</kaboom>`,
    'XXE file read': '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
    'external DTD': '<?xml version="1.0"?><!DOCTYPE foo SYSTEM "http://example.com/evil.dtd"><foo/>'
  }
  for (const [name, xml] of Object.entries(hostile)) {
    const started = Date.now()
    const reply = await callTask(url, 'xml.import', xml, { 'content-type': 'application/xml' })
    t.equal(reply.status, 422, `${name}: 422`)
    t.equal(reply.json.code, 'TASK_REJECTED_INPUT')
    t.notMatch(reply.text, /root:x:0/, `${name}: nothing read from disk`)
    t.ok(Date.now() - started < 10_000, `${name}: answered without waiting on a network fetch`)
  }
  t.equal(server.app.pool.liveWorkers, 2, 'no worker died')
  t.equal((await callTask(url, 'xml.import', { xml: '<a><b>1</b></a>' })).status, 200)
})

t.test('xml.import: malformed XML is a 422 with line and column', async (t) => {
  const reply = await callTask(url, 'xml.import', '<a>\n  <b>\n</a>', { 'content-type': 'text/xml' })
  t.equal(reply.status, 422)
  t.match(reply.json.details, { line: 3, column: Number })
})

t.test('csv.profile: raw CSV with a header, types and a ragged row', async (t) => {
  const csv = 'name,age,score,joined\nada,36,9.5,2020-01-02\nbob,41,7.25,2021-03-04\ncyd,,8,2022-05-06\n'
  const reply = await callTask(url, 'csv.profile', csv, { 'content-type': 'text/csv' })
  t.equal(reply.status, 200)
  t.equal(reply.json.rows, 3)
  const [name, age, score, joined] = reply.json.columns
  t.match(name, { name: 'name', type: 'string', count: 3, distinct: 3 })
  t.match(age, { name: 'age', type: 'integer', count: 2, nulls: 1, min: 36, max: 41, mean: 38.5 })
  t.match(score, { type: 'number', min: 7.25, max: 9.5 })
  t.match(joined, { type: 'date', min: '2020-01-02', max: '2022-05-06' })
  const twoCharacters = await callTask(url, 'csv.profile?delimiter=ab', 'a,b\n1,2\n', { 'content-type': 'text/csv' })
  t.match([twoCharacters.status, twoCharacters.json], [400, { code: 'FST_ERR_VALIDATION', message: /^querystring\/delimiter is not valid: field delimiter, one character/ }], 'the option\'s description, not its pattern')
  const ragged = await callTask(url, 'csv.profile?delimiter=;', 'a;b\n1;2\n3;4;5\n', { 'content-type': 'text/csv' })
  t.equal(ragged.status, 422)
  t.same(ragged.json.details, { line: 3 })
  const empty = await callTask(url, 'csv.profile', { csv: '' })
  t.equal(empty.status, 422)
})

t.test('raw text in windows-1252 (and each Latin-1 label, which means it) reaches the task as the client wrote it', async (t) => {
  // 0x80 the euro sign, 0x85 an ellipsis, 0x93/0x94 curly quotes: not the C1 controls U+0080-U+009F.
  const csv = Buffer.from('price,note\n\x80 5,\x93ok\x94\n\xe9,\x85\n', 'latin1')
  for (const charset of ['windows-1252', 'iso-8859-1', 'latin1', 'us-ascii']) {
    const reply = await callTask(url, 'csv.profile', csv, { 'content-type': `text/csv; charset=${charset}` })
    t.equal(reply.status, 200, charset)
    const [price, note] = reply.json.columns
    t.same(price.top.map((v: { value: string }) => v.value), ['\u20ac 5', '\u00e9'], `${charset}: the euro sign, and Latin-1's own letters`)
    t.same(note.top.map((v: { value: string }) => v.value), ['\u201cok\u201d', '\u2026'], `${charset}: quotes and an ellipsis, not a blank (U+0085 is whitespace to Python)`)
    t.equal(note.nulls, 0, charset)
  }
})

t.test('text.stats: raw text', async (t) => {
  const reply = await callTask(url, 'text.stats', 'The cat sat. The cat ran!\n\nA new paragraph here.', { 'content-type': 'text/plain; charset=utf-8' })
  t.equal(reply.status, 200)
  t.match(reply.json, { words: 10, sentences: 3, paragraphs: 2 })
  t.same(reply.json.topTerms[0], { term: 'cat', count: 2 })
  // UTF-16 with a byte order mark and no charset (as Windows tools save text) is read as such.
  const text = 'Café crème. Très bon!'
  for (const [bom, bytes] of [['le', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')])], ['be', Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, 'utf16le').swap16()])]] as const) {
    const utf16 = await callTask(url, 'text.stats', bytes, { 'content-type': 'text/plain' })
    t.match([utf16.status, utf16.json], [200, { characters: text.length, words: 4, sentences: 2 }], `UTF-16${bom.toUpperCase()} with its byte order mark`)
  }
})

t.test('stats.describe and stats.regression give hand-checked results', async (t) => {
  const described = await callTask(url, 'stats.describe', { values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], bins: 3 })
  t.match(described.json, { count: 10, mean: 5.5, median: 5.5, min: 1, max: 10 })
  t.ok(Math.abs(described.json.stddev - 3.0276503540974917) < 1e-12)
  t.same(described.json.histogram, { edges: [1, 4, 7, 10], counts: [3, 3, 4] }, 'bins closed on the left, the last on both sides, as numpy')
  const x = [0, 1, 2, 3, 4, 5]
  const fit = await callTask(url, 'stats.regression', { x, y: x.map((v) => 3 - 2 * v + 0.5 * v * v), degree: 2 })
  t.equal(fit.status, 200)
  fit.json.coefficients.forEach((c: number, i: number) => { t.ok(Math.abs(c - [3, -2, 0.5][i]) < 1e-9, `coefficient ${i}`) })
  t.ok(Math.abs(fit.json.r2 - 1) < 1e-12)
  const tooFew = await callTask(url, 'stats.regression', { x: [1, 2], y: [1, 2], degree: 2 })
  t.equal(tooFew.status, 422)
})

t.test('hash.digest: msgpack bin, base64 and raw bytes give the same digests as Node crypto', async (t) => {
  const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256))
  const expected = {
    sha256: createHash('sha256').update(data).digest('hex'),
    sha1: createHash('sha1').update(data).digest('hex'),
    md5: createHash('md5').update(data).digest('hex'),
    blake2b: createHash('blake2b512').update(data).digest('hex'),
    sha3_256: createHash('sha3-256').update(data).digest('hex')
  }
  const algorithms = Object.keys(expected)
  const viaBase64 = await callTask(url, 'hash.digest', { data: data.toString('base64'), algorithms })
  const viaRaw = await callTask(url, `hash.digest?algorithms=${algorithms.join(',')}`, data, { 'content-type': 'application/octet-stream' })
  const viaMsgpack = await fetch(`${url}/api/tasks/hash.digest`, { method: 'POST', headers: { 'content-type': 'application/msgpack' }, body: new Uint8Array(pack({ data, algorithms })) })
  for (const reply of [viaBase64.json, viaRaw.json, await viaMsgpack.json()]) {
    t.equal(reply.size, data.length)
    t.same(reply.digests, expected)
  }
})

t.test('hash.digest: an unknown algorithm is a 400 before any worker is borrowed', async (t) => {
  const before = callsSoFar()
  const reply = await callTask(url, 'hash.digest', { data: 'aGk=', algorithms: ['sha256', 'crc32'] })
  t.equal(reply.status, 400)
  t.equal(reply.json.code, 'FST_ERR_VALIDATION')
  t.match(reply.json.message, /^body\/algorithms\/1 must be equal to one of the allowed values: "sha256", "sha1", "md5", "blake2b", "sha3_256"$/,
    'the message names the bad element and the choices, not the other anyOf branch ("must be string")')
  const raw = await callTask(url, 'hash.digest?algorithms=rot13', Buffer.from('x'), { 'content-type': 'application/octet-stream' })
  t.equal(raw.status, 400)
  t.equal(callsSoFar(), before)
})

t.test('schema violations of every task are 400s that borrow no worker', async (t) => {
  const before = callsSoFar()
  const bad: Array<[string, unknown]> = [
    ['xml.import', { xml: 5 }], ['xml.import', { xml: '<a/>', limit: -1 }], ['csv.profile', { csv: 'a', header: 'yes' }],
    ['text.stats', { text: 'x', top: 1000 }], ['stats.describe', { values: [] }], ['stats.describe', { values: ['1'] }],
    ['stats.regression', { x: [1], y: [1], degree: 9 }], ['hash.digest', {}]
  ]
  for (const [task, body] of bad) {
    const reply = await callTask(url, task, body)
    t.equal(reply.status, 400, `${task} ${JSON.stringify(body)}`)
  }
  t.equal(callsSoFar(), before)
  // Beside a JSON or msgpack body a query parameter would be ignored: refused instead.
  const misplaced = await callTask(url, 'hash.digest?algorithms=md5', { data: 'aGVsbG8=' })
  t.equal(misplaced.status, 400)
  t.equal(misplaced.json.code, 'FST_ERR_VALIDATION')
  t.equal(misplaced.json.message, 'query parameter "algorithms" is a field of task hash.digest\'s input: with a JSON or msgpack body, put it in the body (task hash.digest reads it beside a raw body: application/octet-stream)')
  t.same(misplaced.json.details, [{ instancePath: '/algorithms', keyword: 'queryBesideBody', params: { parameter: 'algorithms' }, message: 'is a query parameter; put it in the body' }], 'with details, as every validation error')
  t.equal(callsSoFar(), before, 'and no call ran')
  // After a `#` (a request target fetch would not send), the router reads a query too: refused the same way (it was ignored).
  const body = '{"data":"aGk="}'
  const hashed = await rawExchange(url, `POST /api/tasks/hash.digest#algorithms=md5 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`)
  t.match(hashed, /^HTTP\/1\.1 400 [^]*"code":"FST_ERR_VALIDATION",[^]*"message":"query parameter \\"algorithms\\" is a field of task hash\.digest's input/)
  t.equal(callsSoFar(), before)
  // A raw body's option given twice where one value is wanted: said so, not "must be integer".
  const twice = await callTask(url, 'text.stats?top=2&top=3', 'hello world', { 'content-type': 'text/plain' })
  t.match(twice.json, { code: 'FST_ERR_VALIDATION', message: 'querystring/top is given 2 times ("2", "3"); give it once', details: [{ instancePath: '/top', keyword: 'repeated' }] })
  const list = await callTask(url, 'hash.digest?algorithms=md5&algorithms=sha1', 'hello', { 'content-type': 'application/octet-stream' })
  t.same(Object.keys(list.json.digests), ['md5', 'sha1'], 'an option that takes a list may repeat')
  // Other names are none of the task's business: a gateway's key, a cache-buster.
  for (const query of ['', '?', '?code=abc&_=1764400000', '?__proto__=1&constructor=2&toString=3']) {
    const reply = await callTask(url, `hash.digest${query}`, { data: 'aGVsbG8=' })
    t.same([reply.status, Object.keys(reply.json.digests)], [200, ['sha256']], query)
  }
})

t.test('xml.import streams a 20 MB document: the worker peaks under 100 MB above its idle RSS', async (t) => {
  const big = await startServer(t, { POOL_SIZE: '1', BODY_LIMIT_BYTES: String(32 * 1024 * 1024) })
  const [worker] = big.app.pool.members()
  const { readFile } = await import('node:fs/promises')
  const status = async (): Promise<{ rss: number, peak: number }> => {
    const text = await readFile(`/proc/${worker.pid}/status`, 'utf8')
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]) * 1024
    return { rss: kb('VmRSS'), peak: kb('VmHWM') }
  }
  const item = '<item id="ID"><title>A title for this record</title><price currency="EUR">12.50</price><tags><tag>a</tag><tag>b</tag></tags></item>'
  const count = Math.ceil(20 * 1024 * 1024 / item.length)
  const xml = `<?xml version="1.0"?><catalog>${Array.from({ length: count }, (_, i) => item.replace('ID', String(i))).join('')}</catalog>`
  t.ok(xml.length >= 20 * 1024 * 1024)
  const before = await status()
  const reply = await callTask(big.url, 'xml.import?record=item&limit=3', xml, { 'content-type': 'application/xml' })
  t.equal(reply.status, 200)
  t.equal(reply.json.count, count)
  t.equal(reply.json.records.length, 3)
  const after = await status()
  const growthMb = (after.peak - before.rss) / 1024 / 1024
  t.ok(growthMb < 100, `worker peak RSS grew by ${growthMb.toFixed(1)} MB for a ${(xml.length / 1024 / 1024).toFixed(1)} MB document`)
})
