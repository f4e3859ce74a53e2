// Keeps the error table, the README and the statuses in step.

import t from 'tap'
import { readFile } from 'node:fs/promises'
import { ERROR_CODES } from '../src/errors.js'
import { ROOT } from './helpers/server.js'

t.test('every error code is in the README error table with its status', async (t) => {
  const readme = await readFile(`${ROOT}/README.md`, 'utf8')
  for (const { code, statusCode } of ERROR_CODES) {
    t.match(readme, new RegExp(`\\|\\s*${statusCode}\\s*\\|\\s*\`${code}\``), `${code} (${statusCode}) is documented`)
  }
})

t.test('every status is an HTTP error status and codes are unique', async (t) => {
  for (const { code, statusCode } of ERROR_CODES) t.ok(statusCode >= 400 && statusCode <= 599, code)
  t.equal(new Set(ERROR_CODES.map((e) => e.code)).size, ERROR_CODES.length)
})
