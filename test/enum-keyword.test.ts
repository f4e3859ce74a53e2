// `enum` by a Set lookup: Ajv's verdicts and words, at a cost that does not grow with the
// number of allowed values (a few thousand time zones made a 250 KB body take 1.4 s; an
// enum of 30,000 values took 4 s to compile).

import t from 'tap'
import { Ajv } from 'ajv'
import { compileBodyValidator, makeAjv, validationError } from '../src/schema-compile.js'

t.test('values are allowed and refused as Ajv\'s own enum does', async (t) => {
  const schemas = [
    { enum: [1, 'a', null, true, { b: [1, { c: 'd' }] }, [1, 2]] },
    { type: 'string', enum: ['UTC', 'Europe/Paris', 'constructor', '__proto__'] },
    { type: 'number', enum: [0, 1.5, -2] }
  ]
  const values = [1, 1.0, '1', 'a', 'A', null, 'null', true, 'true', false, 0, -0, { b: [1, { c: 'd' }] }, { b: [1, { c: 'e' }] }, [1, 2], [2, 1], 'UTC', 'constructor', '__proto__', 'toString', 1.5, -2, 2, {}, []]
  for (const schema of schemas) {
    const stock = new Ajv({ strict: false }).compile(schema)
    const ours = makeAjv(false).compile(schema)
    for (const value of values) {
      const expected = stock(value)
      t.equal(ours(value), expected, `${JSON.stringify(schema.enum)}: ${JSON.stringify(value)}`)
      if (!expected) t.same(ours.errors?.map((e) => [e.keyword, e.params, e.message]), stock.errors?.map((e) => [e.keyword, e.params, e.message]))
    }
  }
  const validate = compileBodyValidator({ type: 'object', properties: { zone: { type: 'string', enum: ['UTC', 'Europe/Paris'] } } })
  t.equal(validate({ zone: 'Mars/Olympus' }), false)
  t.equal(validationError(validate.errors, 'body', validate.schema).message, 'body/zone must be equal to one of the allowed values: "UTC", "Europe/Paris"')
})

t.test('an enum of 200,000 values compiles and checks at once (Ajv\'s own took 46 s to compile 100,000)', async (t) => {
  const zones = Array.from({ length: 200_000 }, (_, i) => `Zone/${i}`)
  const validate = compileBodyValidator({ type: 'array', items: { type: 'string', enum: zones } })
  t.equal(validate(Array(20_000).fill(zones[199_999])), true)
  t.equal(validate(['Zone/200000']), false)
})
