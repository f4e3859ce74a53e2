// The open-file limit's arithmetic: its soft figure read from /proc/self/limits' text, the
// files kept for the server, and the connection cap they leave. The cap on a real server
// under `ulimit -n` is test/e2e/connection-limit.test.ts's.

import t from 'tap'
import { connectionCap, parseOpenFileLimit, readOpenFileLimit, reservedFiles } from '../src/open-file-limit.js'

const limits = (soft: string, hard: string): string => [
  'Limit                     Soft Limit           Hard Limit           Units     ',
  'Max cpu time              unlimited            unlimited            seconds   ',
  'Max processes             96365                96365                processes ',
  `Max open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     `,
  'Max locked memory         8388608              8388608              bytes     ',
  ''
].join('\n')

t.test('the soft limit on open files is read from /proc/self/limits, not the hard one', async (t) => {
  t.equal(parseOpenFileLimit(limits('1024', '524288')), 1024)
  t.equal(parseOpenFileLimit(limits('1048576', '1048576')), 1048576)
})

t.test('an unlimited or missing limit is no limit to keep to', async (t) => {
  t.equal(parseOpenFileLimit(limits('unlimited', 'unlimited')), undefined)
  t.equal(parseOpenFileLimit('Limit  Soft Limit  Hard Limit  Units\nMax processes  1  1  processes\n'), undefined)
  t.equal(parseOpenFileLimit(''), undefined)
})

t.test('this process\'s limit is read as a number (Linux)', async (t) => {
  const limit = await readOpenFileLimit()
  t.ok(limit !== undefined && limit > 0, `${String(limit)} open files`)
})

t.test('the files kept for the server grow with the pool: each worker\'s three pipes and a /proc read, twice over for spares', async (t) => {
  t.equal(reservedFiles(1), 72)
  t.equal(reservedFiles(4), 96)
  t.equal(reservedFiles(256) - reservedFiles(255), 8)
})

t.test('MAX_CONNECTIONS within what the limit leaves is kept as it is', async (t) => {
  t.same(connectionCap(10_000, 4, 1_048_576), { maxConnections: 10_000, configured: 10_000 })
  t.same(connectionCap(928, 4, 1024), { maxConnections: 928, configured: 928 }, 'exactly the room left')
})

t.test('MAX_CONNECTIONS past what the limit leaves is lowered to it, saying why', async (t) => {
  t.same(connectionCap(10_000, 4, 1024), { maxConnections: 928, configured: 10_000, lowered: { openFileLimit: 1024, reservedFiles: 96 } })
  t.same(connectionCap(929, 4, 1024), { maxConnections: 928, configured: 929, lowered: { openFileLimit: 1024, reservedFiles: 96 } })
})

t.test('with PROBE_PORT, its files are kept from the limit too: clients get fewer, and Node never passes it', async (t) => {
  t.equal(reservedFiles(4, 66), 162)
  t.same(connectionCap(10_000, 4, 1024, 66), { maxConnections: 862, configured: 10_000, lowered: { openFileLimit: 1024, reservedFiles: 162 } })
})

t.test('MAX_CONNECTIONS=0 (no cap of its own) is capped by the limit too', async (t) => {
  t.same(connectionCap(0, 4, 1024), { maxConnections: 928, configured: 0, lowered: { openFileLimit: 1024, reservedFiles: 96 } })
})

t.test('a limit that leaves nothing past the server\'s own files still leaves one connection, never a cap of 0', async (t) => {
  t.same(connectionCap(10_000, 1, 73), { maxConnections: 1, configured: 10_000, lowered: { openFileLimit: 73, reservedFiles: 72 } })
  t.same(connectionCap(10_000, 4, 50), { maxConnections: 1, configured: 10_000, lowered: { openFileLimit: 50, reservedFiles: 96 } })
  t.same(connectionCap(0, 4, 50), { maxConnections: 1, configured: 0, lowered: { openFileLimit: 50, reservedFiles: 96 } })
})

t.test('where the limit is unknown (no /proc) or unlimited, MAX_CONNECTIONS stands, 0 included', async (t) => {
  t.same(connectionCap(10_000, 4, undefined), { maxConnections: 10_000, configured: 10_000 })
  t.same(connectionCap(0, 4, undefined), { maxConnections: 0, configured: 0 })
})
