// A body refused as too costly to check is logged at warn for its task, at most once a minute.

import t from 'tap'
import type { FastifyBaseLogger } from 'fastify'
import { CostlyBodyWarnings, WARN_EVERY_MS } from '../src/routes/costly-bodies.js'
import { compileBodyValidator, validationError } from '../src/schema-compile.js'

t.test('each task is warned about at most once a minute, with the count of refusals since', async (t) => {
  const lines: Array<{ task: unknown, msg: string }> = []
  const log = { warn: (fields: { task: unknown }, msg: string) => { lines.push({ task: fields.task, msg }) } } as unknown as FastifyBaseLogger
  let now = 0
  const warnings = new CostlyBodyWarnings(() => now)
  const recursive = compileBodyValidator({ type: 'object', patternProperties: { '^x': { $ref: '#' }, 'y$': { $ref: '#' } } })
  let deep = {}
  for (let level = 0; level < 40; level++) deep = { xy: deep }
  t.equal(recursive(deep), false)
  const costly = validationError(recursive.errors, 'body', recursive.schema)
  t.equal(recursive({ xa: 1 }), false)
  const ordinary = validationError(recursive.errors, 'body', recursive.schema)
  warnings.note('a', ordinary, log)
  t.same(lines, [], 'an ordinary validation error is the client\'s alone')
  warnings.note('a', costly, log)
  warnings.note('a', costly, log)
  warnings.note('b', costly, log)
  now += WARN_EVERY_MS
  warnings.note('a', costly, log)
  t.same(lines.map((line) => line.task), ['a', 'b', 'a'])
  t.match(lines[2].msg, /^task a refused a body as too costly to check against its input schema \(and 1 more since the last such warning\)/)
})
