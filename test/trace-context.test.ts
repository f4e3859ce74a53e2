// trace-context.ts: which traceparent headers are read, and what is passed on.

import t from 'tap'
import { baggageOf, traceContextOf, traceLogFieldsOf, traceparentOf, tracestateOf } from '../src/trace-context.js'

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT = '00f067aa0ba902b7'

t.test('a valid version 00 header is passed on as it came, and its trace and span ids are the ones logged', async (t) => {
  const header = `00-${TRACE}-${PARENT}-01`
  t.equal(traceparentOf(header), header)
  t.same(traceLogFieldsOf(header), { traceId: TRACE, spanId: PARENT })
  t.equal(traceLogFieldsOf(undefined), undefined)
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

t.test('tracestate: passed on with a valid traceparent only; past 512 characters, whole entries left out, long ones first', async (t) => {
  const traceparent = `00-${TRACE}-${PARENT}-01`
  t.same(traceContextOf({ traceparent, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' }), { traceparent, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' })
  t.same(traceContextOf({ traceparent: 'garbage', tracestate: 'rojo=1' }), undefined, 'no tracestate without a traceparent')
  t.equal(tracestateOf(' rojo=1 , congo=2 '), 'rojo=1,congo=2', 'spaces around members are not passed on')
  const long = `big=${'x'.repeat(200)},${Array.from({ length: 60 }, (_, i) => `k${i}=${'v'.repeat(6)}`).join(',')}`
  const kept = tracestateOf(long) ?? ''
  t.ok(kept.length <= 512, `${kept.length} characters`)
  t.match(kept, /^k0=vvvvvv,k1=vvvvvv,/, 'the entry over 128 characters goes first, then entries from the end')
  t.notMatch(kept, /big=/)
  const many = Array.from({ length: 60 }, (_, i) => `k${i}=v`).join(',')
  t.equal(tracestateOf(many), Array.from({ length: 32 }, (_, i) => `k${i}=v`).join(','), 'at most 32 entries, the first ones')
  for (const bad of [undefined, '', '  ', ',,', 'a=\u0001', 'a=\n', ['a=1', 'b=2'], 'ü=1', 'Rojo=1', 'rojo', 'rojo=', 'rojo=a=b', '1abc=x']) t.equal(tracestateOf(bad as string | undefined), undefined, JSON.stringify(bad))
})

t.test('tracestate: each member checked against the specification\'s syntax; invalid ones and repeated keys left out', async (t) => {
  t.equal(tracestateOf('rojo=1,,congo=2,'), 'rojo=1,congo=2', 'empty members are allowed, and dropped')
  t.equal(tracestateOf('acme@vendor=x,1tenant@sys=y,a_b-c*d/e=z'), 'acme@vendor=x,1tenant@sys=y,a_b-c*d/e=z', 'tenant@system keys, and every character a key may hold')
  t.equal(tracestateOf('rojo=a b,congo=t61rcWkgMzE'), 'rojo=a b,congo=t61rcWkgMzE', 'a space inside a value')
  t.equal(tracestateOf('Rojo=1,rojo=2,x=a=b,y=,z=ok'), 'rojo=2,z=ok', 'an upper-case key, a value with "=", an empty value: left out')
  t.equal(tracestateOf('rojo=1,congo=2,rojo=3'), 'rojo=1,congo=2', 'a repeated key: the first is kept')
  t.equal(tracestateOf(`k=${'v'.repeat(256)}`), `k=${'v'.repeat(256)}`, 'a value of 256 characters')
  t.equal(tracestateOf(`k=${'v'.repeat(257)},ok=1`), 'ok=1', 'a value of 257 is not one')
  t.equal(tracestateOf(`${'k'.repeat(256)}=1,ok=1`), `${'k'.repeat(256)}=1,ok=1`, 'a key of 256 characters')
  t.equal(tracestateOf(`${'k'.repeat(257)}=1,ok=1`), 'ok=1', 'a key of 257 is not one')
  t.equal(tracestateOf(`t@${'s'.repeat(15)}=1,ok=1`), 'ok=1', 'a system id past 14 characters')
  t.equal(tracestateOf('a'.repeat(16000)), undefined, 'a header-long member: refused, not backtracked over')
})

t.test('baggage: passed on whole, with or without a traceparent, up to W3C\'s 8,192 bytes', async (t) => {
  t.same(traceContextOf({ baggage: 'tenant=acme,userId=alice;prop=1' }), { baggage: 'tenant=acme,userId=alice;prop=1' })
  t.equal(baggageOf(`k=${'v'.repeat(8190)}`), `k=${'v'.repeat(8190)}`)
  t.equal(baggageOf(`k=${'v'.repeat(8191)}`), undefined, 'past the limit: left out, not cut')
  for (const bad of ['', 'k=\r\nx-injected: 1', 'k=caf\u00e9']) t.equal(baggageOf(bad), undefined, JSON.stringify(bad))
  t.equal(traceContextOf({}), undefined, 'no header: nothing')
  t.equal(traceContextOf({ traceparent: 'garbage', baggage: '' }), undefined, 'nothing valid: nothing')
})
