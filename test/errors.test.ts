// Keeps the error table, the README and the statuses in step.

import t from 'tap'
import { readFile } from 'node:fs/promises'
import { ERROR_CODES } from '../src/errors.js'
import { ROOT } from './helpers/server.js'

t.test('every error code is in the README error table with its status', async (t) => {
  // The HTTP API's table ("### Errors"), not any table that happens to name the code.
  const readme = await readFile(`${ROOT}/README.md`, 'utf8')
  const start = readme.indexOf('\n### Errors')
  const table = readme.slice(start, readme.indexOf('\n## ', start))
  t.ok(start > 0, 'README has its Errors section')
  for (const { code, statusCode } of ERROR_CODES) {
    t.match(table, new RegExp(`\\|\\s*${statusCode}\\s*\\|\\s*\`${code}\``), `${code} (${statusCode}) is documented`)
  }
})

t.test('every status is an HTTP error status and codes are unique', async (t) => {
  for (const { code, statusCode } of ERROR_CODES) t.ok(statusCode >= 400 && statusCode <= 599, code)
  t.equal(new Set(ERROR_CODES.map((e) => e.code)).size, ERROR_CODES.length)
})
