// What the benchmark sends: the request bodies (deterministic, built once per
// process) and the cases, each a scenario at a number of connections with the
// designs that run it. The driver (HTTP) and the pipe baseline (no HTTP) both
// build their inputs here, so every design gets the same bytes.

/** A small deterministic PRNG (mulberry32), so every run sends the same bodies. */
function random (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const WORDS = 'the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches near our old river house and every tired sailor reads maps'.split(' ')

function sentence (rand, words) {
  const out = []
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(rand() * WORDS.length)])
  const text = out.join(' ')
  return text[0].toUpperCase() + text.slice(1) + '.'
}

/** About 100 bytes of JSON: the classic "overhead" payload. */
export const ECHO_SMALL = { id: 12345, name: 'benchmark', tags: ['a', 'b', 'c'], active: true, score: 0.75, note: 'hello pyfleet' }

/** About 1 MB of JSON: an array of small records (exercises both JSON and msgpack codecs, not just a memcpy). */
function echoLarge () {
  const rand = random(1)
  const records = []
  let bytes = 2
  for (let i = 0; bytes < 1_000_000; i++) {
    const record = { id: i, name: `user-${i}`, email: `user${i}@example.com`, score: Math.round(rand() * 1e6) / 1e3, active: rand() < 0.5, tags: ['alpha', 'beta', 'gamma'].slice(0, 1 + (i % 3)) }
    bytes += JSON.stringify(record).length + 1
    records.push(record)
  }
  return { records }
}

/** A catalogue of `items` records as XML; about 215 bytes per item. */
function xmlCatalog (items, seed) {
  const rand = random(seed)
  const parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<catalog source="bench">\n']
  for (let i = 0; i < items; i++) {
    parts.push(`  <item id="${i}" sku="SKU-${(i * 7919) % 100000}"><title>${sentence(rand, 4)}</title>` +
      `<price currency="EUR">${(rand() * 100).toFixed(2)}</price><stock>${Math.floor(rand() * 500)}</stock>` +
      `<tags><tag>${WORDS[i % WORDS.length]}</tag><tag>${WORDS[(i * 3) % WORDS.length]}</tag></tags></item>\n`)
  }
  parts.push('</catalog>\n')
  return parts.join('')
}

function xmlOfSize (bytes, seed) {
  const probe = xmlCatalog(100, seed).length / 100
  return xmlCatalog(Math.round(bytes / probe), seed)
}

function csvText (rows, seed) {
  const rand = random(seed)
  const lines = ['id,name,price,in_stock,added']
  for (let i = 0; i < rows; i++) {
    lines.push(`${i},${WORDS[i % WORDS.length]},${(rand() * 100).toFixed(2)},${rand() < 0.5 ? 'true' : 'false'},2026-0${1 + (i % 9)}-1${i % 10}`)
  }
  return lines.join('\n') + '\n'
}

function numbers (n, seed) {
  const rand = random(seed)
  return Array.from({ length: n }, () => Math.round(rand() * 1e6) / 1e3)
}

function regressionInput (n, seed) {
  const rand = random(seed)
  const x = Array.from({ length: n }, (_, i) => i / 10)
  const y = x.map((v) => 3 + 2 * v - 0.05 * v * v + (rand() - 0.5))
  return { x, y, degree: 2 }
}

const memo = new Map()
const once = (key, make) => { if (!memo.has(key)) memo.set(key, make()); return memo.get(key) }

const json = (task, input) => ({ task, contentType: 'application/json', input, body: JSON.stringify(input) })

/**
 * The requests of a scenario, in the order each connection cycles through them:
 * `{task, contentType, body, input, query}`. `input` is what reaches the task
 * (the pipe baseline sends it directly); `body` and `query` are the HTTP form.
 */
export function requestsOf (scenario) {
  return once(scenario, () => {
    switch (scenario) {
      case 'echo-100B': return [json('echo', ECHO_SMALL)]
      case 'echo-1MB': return [json('echo', echoLarge())]
      case 'cpu-10ms': return [json('diag.work', { cpu_ms: 10 })]
      case 'xml-1MB': {
        const xml = xmlOfSize(1_000_000, 2)
        return [{ task: 'xml.import', contentType: 'application/xml', body: xml, query: { record: 'item', limit: 10 }, input: { xml, record: 'item', limit: 10 } }]
      }
      case 'mix': return [
        json('echo', ECHO_SMALL),
        json('xml.import', { xml: xmlCatalog(40, 3), record: 'item', limit: 10 }),
        json('csv.profile', { csv: csvText(300, 4) }),
        json('text.stats', { text: Array.from({ length: 40 }, (_, i) => sentence(random(10 + i), 12)).join(' '), top: 10 }),
        json('stats.describe', { values: numbers(2000, 5), bins: 10 }),
        json('stats.regression', regressionInput(1000, 6)),
        json('hash.digest', { data: Buffer.from(xmlCatalog(20, 7)).toString('base64'), algorithms: ['sha256', 'md5'] }),
        json('diag.work', { cpu_ms: 2 })
      ]
      default: throw new Error(`unknown scenario ${scenario}`)
    }
  })
}

/** Path and query of a request, as every HTTP design serves it. */
export function pathOf (request) {
  const query = request.query === undefined ? '' : '?' + new URLSearchParams(Object.entries(request.query).map(([k, v]) => [k, String(v)])).toString()
  return `/api/tasks/${request.task}${query}`
}

export const SCENARIO_TITLES = {
  'echo-100B': 'echo, 100-byte JSON',
  'echo-1MB': 'echo, 1 MB JSON (array of records)',
  'cpu-10ms': 'CPU-bound: diag.work cpu_ms=10',
  'xml-1MB': 'xml.import of a 1 MB document (raw application/xml)',
  mix: 'mix of all eight tasks (small inputs)'
}

/**
 * The cases of a full run, in the order they run within a repetition (large
 * bodies last, so their leftover heap does not inflate the RSS of the small
 * ones). `pipe` ignores connections: it keeps one call in flight per worker.
 */
export const CASES = [
  { scenario: 'echo-100B', connections: 50, designs: ['pyfleet', 'proto', 'bare', 'pipe', 'spawn', 'gunicorn'] },
  { scenario: 'echo-100B', connections: 200, designs: ['pyfleet', 'bare', 'gunicorn'] },
  { scenario: 'echo-100B', connections: 1000, designs: ['pyfleet', 'proto', 'bare', 'gunicorn'] },
  { scenario: 'cpu-10ms', connections: 50, designs: ['pyfleet', 'proto', 'pipe', 'spawn', 'gunicorn'] },
  { scenario: 'mix', connections: 50, designs: ['pyfleet', 'proto', 'spawn', 'gunicorn'] },
  { scenario: 'echo-1MB', connections: 10, designs: ['pyfleet', 'bare', 'pipe', 'gunicorn'] },
  { scenario: 'xml-1MB', connections: 10, designs: ['pyfleet', 'pipe', 'spawn', 'gunicorn'] }
]

/** The cases of --quick: enough for CI's checks (errors, RSS at 1,000 connections, pyfleet/spawn). */
export const QUICK_CASES = [
  { scenario: 'echo-100B', connections: 50, designs: ['pyfleet', 'bare', 'pipe', 'spawn', 'gunicorn'] },
  { scenario: 'echo-100B', connections: 1000, designs: ['pyfleet', 'bare'] },
  { scenario: 'cpu-10ms', connections: 50, designs: ['pyfleet', 'spawn', 'gunicorn'] },
  { scenario: 'mix', connections: 50, designs: ['pyfleet'] },
  { scenario: 'echo-1MB', connections: 10, designs: ['pyfleet'] },
  { scenario: 'xml-1MB', connections: 10, designs: ['pyfleet'] }
]

export const caseId = (c) => `${c.scenario}@${c.connections}`
