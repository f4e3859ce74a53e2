// trace-context.ts: which traceparent headers are read, and what is passed on.

import t from 'tap'
import { traceIdOf, traceparentOf } from '../src/trace-context.js'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT = '00f067aa0ba902b7'

t.test('a valid version 00 header is passed on as it came, and its trace id is the one logged', async (t) => {
  const header = `00-${TRACE}-${PARENT}-01`
  t.equal(traceparentOf(header), header)
  t.equal(traceIdOf(header), TRACE)
  t.equal(traceparentOf(`00-${TRACE}-${PARENT}-00`), `00-${TRACE}-${PARENT}-00`, 'not sampled: still a trace to log')
})

t.test('a later version is read as far as version 00 goes, and passed on as 00', async (t) => {
  t.equal(traceparentOf(`cc-${TRACE}-${PARENT}-01`), `00-${TRACE}-${PARENT}-01`)
  t.equal(traceparentOf(`cc-${TRACE}-${PARENT}-01-what-comes-later`), `00-${TRACE}-${PARENT}-01`)
  t.equal(traceparentOf(`cc-${TRACE}-${PARENT}-01x`), undefined, 'after the flags, a dash or nothing')
})

t.test('an invalid header is ignored, as the specification says', async (t) => {
  const invalid = [
    undefined, '', 'garbage', [`00-${TRACE}-${PARENT}-01`, `00-${TRACE}-${PARENT}-01`],
    `00-${TRACE}-${PARENT}-01, 00-${TRACE}-${PARENT}-01`, // two headers, as Node joins them
    `ff-${TRACE}-${PARENT}-01`, // the version that is never valid
    `00-${TRACE}-${PARENT}-01-extra`, // version 00 has nothing after its flags
    `00-${'0'.repeat(32)}-${PARENT}-01`, `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero ids
    `00-${TRACE.toUpperCase()}-${PARENT}-01`, // lower-case hex only
    `00-${TRACE.slice(1)}-${PARENT}-01`, `00-${TRACE}-${PARENT}-1`, `0-${TRACE}-${PARENT}-01`,
    ` 00-${TRACE}-${PARENT}-01`, `00_${TRACE}_${PARENT}_01`
  ]
  for (const header of invalid) t.equal(traceparentOf(header), undefined, JSON.stringify(header))
})
