// JSON Schema's `enum` by a Set lookup. Ajv's own compares a value with each allowed one
// in turn: a time-zone list of a few thousand names made a 250 KB body of them take 1.4 s
// of the event loop to check (a review). Each allowed value is keyed once, at compile, as
// `uniqueItems` keys items (unique-items.ts), and each checked value once.

import { _, type Ajv, type CodeKeywordDefinition, type KeywordCxt } from 'ajv'
import { keyOf } from './unique-items.js'

const enumKeyword: CodeKeywordDefinition = {
  keyword: 'enum',
  schemaType: 'array',
  // Ajv's own words and params.
  error: {
    message: 'must be equal to one of the allowed values',
    params: ({ schemaCode }) => _`{allowedValues: ${schemaCode}}`
  },
  code (cxt: KeywordCxt) {
    const values = cxt.schema as unknown[]
    if (values.length === 0) throw new Error('enum must have non-empty array')
    // Strings alone (the usual enum) are looked up as they are, without building a key.
    const strings = values.every((value) => typeof value === 'string')
    const allowed = new Set(strings ? values : values.map(keyOf))
    const isAllowed = strings
      ? (value: unknown): boolean => typeof value === 'string' && allowed.has(value)
      : (value: unknown): boolean => allowed.has(keyOf(value))
    cxt.pass(_`${cxt.gen.scopeValue('func', { ref: isAllowed })}(${cxt.data})`)
  }
}

/** Puts the Set lookup in place of Ajv's own `enum` in `ajv`. */
export function useSetEnum (ajv: Ajv): void {
  ajv.removeKeyword('enum')
  ajv.addKeyword(enumKeyword)
}
