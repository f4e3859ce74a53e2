// A task schema's `default` and `examples` values are checked against the subschema they
// annotate, at start and at each reload (through TaskRegistry), and the error names the place.

import t from 'tap'
import { checkAnnotations as checkDefaults, defaultPointers, examplePointers } from '../src/schema-annotations.js'
import { TaskRegistry } from '../src/task-registry.js'
import { loadConfig } from '../src/config.js'
import type { TaskInfo } from '../src/pool/ready-message.js'

const noKeywords = (): void => {}

t.test('finds every default, wherever it sits in the schema', async (t) => {
  const schema = {
    type: 'object',
    default: {},
    properties: { 'a/b': { type: 'integer', default: 1 }, list: { type: 'array', items: { type: 'string', default: 'x' } } },
    anyOf: [{ properties: { c: { default: 2 } } }],
    definitions: { D: { type: 'string', default: 'd' } },
    not: { default: 5 }
  }
  t.same(defaultPointers(schema).sort(), ['', '/anyOf/0/properties/c', '/definitions/D', '/properties/a~1b', '/properties/list/items'].sort())
  t.same(defaultPointers({ type: 'object' }), [])
})

t.test('a default its own subschema accepts passes; one it refuses is named, with the reason', async (t) => {
  t.doesNotThrow(() => checkDefaults({ type: 'object', properties: { limit: { type: 'integer', minimum: 1, default: 10 } } }, noKeywords))
  t.throws(() => checkDefaults({ type: 'object', properties: { limit: { type: 'integer', default: '10' } } }, noKeywords),
    { message: 'the default at /properties/limit ("10") fails its own schema: must be integer' })
  t.throws(() => checkDefaults({ type: 'object', properties: { algorithms: { type: 'array', items: { enum: ['sha256', 'md5'] }, default: ['sha512'] } } }, noKeywords),
    { message: /^the default at \/properties\/algorithms \(\["sha512"\]\) fails its own schema: \/0 must be equal to one of the allowed values/ })
  t.throws(() => checkDefaults({ type: 'object', properties: { text: { type: 'string', maxLength: 3, default: 'x'.repeat(500) } } }, noKeywords),
    { message: /\("x{79}\.\.\.\) fails its own schema: must NOT have more than 3 characters$/ }, 'a long default is cut short')
})

t.test('a default under a $ref is checked against what the $ref names, in a schema with or without an $id', async (t) => {
  const schema = { type: 'object', properties: { mode: { $ref: '#/definitions/Mode', default: 'slow' } }, definitions: { Mode: { enum: ['fast', 'safe'] } } }
  t.throws(() => checkDefaults(schema, noKeywords), { message: /^the default at \/properties\/mode \("slow"\) fails its own schema/ })
  t.throws(() => checkDefaults({ $id: 'https://example.com/task.json', ...schema }, noKeywords), { message: /^the default at \/properties\/mode/ })
  t.doesNotThrow(() => checkDefaults({ ...schema, properties: { mode: { $ref: '#/definitions/Mode', default: 'safe' } } }, noKeywords))
})

t.test('property names that look like escapes in a URI fragment are checked too', async (t) => {
  for (const name of ['per%cent', '%41', 'a b', 'x#y', 'ü']) {
    t.throws(() => checkDefaults({ type: 'object', properties: { [name]: { type: 'integer', default: 'x' } } }, noKeywords),
      { message: /fails its own schema: must be integer$/ }, name)
  }
})

function info (schema: Record<string, unknown>): TaskInfo {
  return { name: 'demo.task', doc: '', schema, timeoutMs: null, raw: [], rawField: null, maxConcurrency: null, module: 'demo_tasks' } as unknown as TaskInfo
}

t.test('the registry refuses a task whose default fails its schema, as it refuses a schema that does not compile', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  t.throws(() => registry.update([info({ type: 'object', properties: { top: { type: 'integer', minimum: 1, default: 0 } } })]),
    { message: 'task demo.task (in module demo_tasks) declares an invalid input schema: the default at /properties/top (0) fails its own schema: must be >= 1' })
  t.throws(() => registry.check([info({ type: 'object', properties: { raw: { bytes: true, default: 'abc' } } })]),
    { message: /the default at \/properties\/raw \("abc"\) fails its own schema: must be binary \(msgpack bin\)/ }, 'pyfleet\'s own keywords are known')
  // Ajv checks a schema as the data of its meta-schema, and says "data/...": the schema is called the schema.
  t.throws(() => registry.check([info({ type: 'object', additionalProperties: 'false' })]),
    { message: 'task demo.task (in module demo_tasks) declares an invalid input schema: schema is invalid: schema/additionalProperties must be object,boolean' })
  t.throws(() => registry.check([{ ...info({ type: 'object' }), outputSchema: { type: 'object', properties: 'none' } }]),
    { message: 'task demo.task (in module demo_tasks) declares an invalid output schema: schema is invalid: schema/properties must be object' })
  t.throws(() => registry.check([info({ type: 'object', properties: { data: { type: 'object', properties: { data: 'x' } } } })]),
    { message: /schema is invalid: schema\/properties\/data\/properties\/data must be object,boolean$/ }, 'a property named data keeps its name')
  t.doesNotThrow(() => registry.update([info({ type: 'object', properties: { top: { type: 'integer', minimum: 1, default: 10 } } })]))
  t.same(registry.names(), ['demo.task'])
})

t.test('finds every example, and checks each against the subschema it annotates', async (t) => {
  const schema = {
    type: 'object',
    examples: [{ n: 1 }, { n: 2 }],
    properties: { n: { type: 'integer', examples: [3] }, tags: { type: 'array', items: { type: 'string', examples: ['a', 'b'] } } },
    not: { required: ['forbidden'], examples: [{ forbidden: 'left out: a value the schema refuses' }] }
  }
  t.same(examplePointers(schema).sort(), ['/examples/0', '/examples/1', '/properties/n/examples/0', '/properties/tags/items/examples/0', '/properties/tags/items/examples/1'].sort())
  t.same(defaultPointers(schema), [])
  t.doesNotThrow(() => checkDefaults(schema, noKeywords))
  t.throws(() => checkDefaults({ ...schema, examples: [{ n: 1 }, { n: 'two' }] }, noKeywords),
    { message: 'example 1 at its root ({"n":"two"}) fails its own schema: /n must be integer' })
  t.throws(() => checkDefaults({ type: 'object', required: ['values'], examples: [{}] }, noKeywords),
    { message: 'example 0 at its root ({}) fails its own schema: must have required property \'values\'' })
  t.throws(() => checkDefaults({ ...schema, properties: { ...schema.properties, n: { type: 'integer', examples: [1.5] } } }, noKeywords),
    { message: 'example 0 at /properties/n (1.5) fails its own schema: must be integer' })
})

t.test('the registry refuses a task whose example fails its input or output schema, naming which', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  t.throws(() => registry.check([info({ type: 'object', properties: { top: { type: 'integer' } }, examples: [{ top: 'three' }] })]),
    { message: 'task demo.task (in module demo_tasks) declares an invalid input schema: example 0 at its root ({"top":"three"}) fails its own schema: /top must be integer' })
  const withOutput = (outputSchema: Record<string, unknown>): TaskInfo => ({ ...info({ type: 'object' }), outputSchema })
  t.throws(() => registry.check([withOutput({ type: 'object', properties: { count: { type: 'integer' } }, required: ['count'], examples: [{ total: 3 }] })]),
    { message: 'task demo.task (in module demo_tasks) declares an invalid output schema: example 0 at its root ({"total":3}) fails its own schema: must have required property \'count\'' })
  t.doesNotThrow(() => registry.check([withOutput({ type: 'object', properties: { count: { type: 'integer' } }, required: ['count'], examples: [{ count: 3 }] })]))
  // One $id for the input and the output schema: each is checked, neither clashes with the other.
  const shared = { $id: 'https://example.com/demo.json', type: 'object', properties: { n: { type: 'integer', default: 1 } } }
  t.doesNotThrow(() => registry.check([{ ...info(shared), outputSchema: { ...shared, examples: [{ n: 2 }] } }]))
  t.throws(() => registry.check([{ ...info(shared), outputSchema: { ...shared, examples: [{ n: 'x' }] } }]),
    { message: /declares an invalid output schema: example 0 at its root \(\{"n":"x"\}\) fails its own schema: \/n must be integer/ })
})

t.test('schemas that share an $id\'d part, an input and an output, or two tasks\', are each checked on their own', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  const point = { $id: 'https://example.com/point.json', type: 'object', properties: { x: { type: 'number' } } }
  const wrap = { ...info({ type: 'object', properties: { p: { ...point, examples: [{ x: 1 }] } } }), outputSchema: { type: 'object', examples: [{ p: { x: 1 } }], properties: { p: point } } }
  t.doesNotThrow(() => { registry.check([wrap]) })
  t.doesNotThrow(() => { registry.check([{ ...info({ ...point, examples: [{ x: 2 }] }), name: 'point.root' }, { ...wrap, name: 'point.wrap', schema: { type: 'object' } }]) })
  t.throws(() => { registry.check([{ ...wrap, outputSchema: { type: 'object', examples: [{ p: { x: 'one' } }], properties: { p: point } } }]) },
    { message: /declares an invalid output schema: example 0 at its root \({"p":{"x":"one"}}\) fails its own schema: \/p\/x must be number/ })
})

t.test('$async is refused, in an input or an output schema: every check is synchronous', async (t) => {
  const registry = new TaskRegistry(loadConfig({}))
  t.throws(() => { registry.check([info({ $async: true, type: 'object', examples: [{ a: 1 }] })]) },
    { message: 'task demo.task (in module demo_tasks) declares an invalid input schema: "$async" at its root is not supported: pyfleet checks inputs and results synchronously; remove it' })
  t.throws(() => { registry.check([{ ...info({ type: 'object' }), outputSchema: { type: 'object', definitions: { A: { $async: true, type: 'object' } } } }]) },
    { message: /declares an invalid output schema: "\$async" at \/definitions\/A is not supported/ })
})
