// A client's W3C Trace Context (https://www.w3.org/TR/trace-context/) and W3C Baggage
// (https://www.w3.org/TR/baggage/), as OpenTelemetry's HTTP instrumentations send them: read
// so that every log line about a request carries its trace's id and its client's span's id
// (`traceId`, `spanId`: go from a trace to pyfleet's lines about it), and handed to the task
// (`pyfleet.trace_headers()`) to send on to the services it calls. pyfleet records no spans of
// its own, so it passes the client's parent id on unchanged: what a task's calls record is a
// child of the client's span, not of a span no backend ever receives. Invalid headers are
// ignored, as the specifications say.

import type { IncomingHttpHeaders } from 'node:http'

/** What a call passes on to its task: the headers that were sent and valid (at least one). */
export interface TraceContext {
  /** As version 00. */
  readonly traceparent?: string
  /** Only with a valid traceparent, as the specification says. */
  readonly tracestate?: string
  readonly baggage?: string
}

/** version-traceid-parentid-flags, lower-case hex; a later version may add fields after a dash. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-|$)/
const INVALID_TRACE_ID = '0'.repeat(32)
const INVALID_PARENT_ID = '0'.repeat(16)
/** Level 1's length: version 00 has nothing after its flags. */
const VERSION_00_LENGTH = 55
/** What may go on in a header's value: visible ASCII and spaces (both lists percent-encode the rest). */
const HEADER_TEXT = /^[\x20-\x7e]*$/
/** tracestate: what a participant must pass on at least; past it, entries are left out (longest first, then from the end). */
const TRACESTATE_MAX_CHARS = 512
const TRACESTATE_LONG_ENTRY_CHARS = 128
/** The most list members a tracestate may have. */
const TRACESTATE_MAX_ENTRIES = 32
/** W3C Baggage's limit on the whole header. */
const BAGGAGE_MAX_BYTES = 8192

/**
 * The `traceparent` to log and pass on, as version 00 (the version pyfleet reads: a later
 * one is read as far as 00's fields go, and passed on as 00, as the specification asks), or
 * undefined when there is none or it is invalid. Node joins repeated headers with ", ", which
 * makes them invalid, as the specification wants.
 */
export function traceparentOf (header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined
  const match = TRACEPARENT.exec(header)
  if (match === null) return undefined
  const [, version, traceId, parentId, flags] = match
  if (version === 'ff' || (version === '00' && header.length !== VERSION_00_LENGTH)) return undefined
  if (traceId === INVALID_TRACE_ID || parentId === INVALID_PARENT_ID) return undefined
  return version === '00' ? header : `00-${traceId}-${parentId}-${flags}`
}

/**
 * One tracestate list member, as level 1 writes it: a key (lower-case letters, digits and
 * `_`, `-`, `*`, `/`; or a tenant@system pair) and a value of 1 to 256 visible ASCII characters
 * other than `,` and `=` (spaces inside only). Bounded repeats: no backtracking to speak of.
 */
const TRACESTATE_MEMBER = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/

/**
 * A tracestate to pass on, or undefined when nothing in it is valid. Its members are checked
 * one by one, and an invalid one, or a later one with a key already seen, is left out (the
 * specification lets a participant discard invalid entries, and a vendor reading a malformed
 * one downstream could do worse); what is kept is joined with plain commas. Past 32 members
 * or 512 characters, whole members are left out: those over 128 characters first, then from
 * the end, as the specification suggests.
 */
export function tracestateOf (header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string' || !HEADER_TEXT.test(header)) return undefined
  const members: string[] = []
  const keys = new Set<string>()
  let length = -1 // the commas between members: one fewer than the members
  for (const raw of header.split(',')) {
    const member = raw.trim()
    if (!TRACESTATE_MEMBER.test(member)) continue // an empty member (allowed), or an invalid one
    const key = member.slice(0, member.indexOf('='))
    if (keys.has(key)) continue
    keys.add(key)
    members.push(member)
    length += member.length + 1
  }
  if (members.length <= TRACESTATE_MAX_ENTRIES && length <= TRACESTATE_MAX_CHARS) return members.length > 0 ? members.join(',') : undefined
  const kept: string[] = []
  length = -1
  for (const member of members) {
    if (member.length > TRACESTATE_LONG_ENTRY_CHARS) continue
    if (kept.length === TRACESTATE_MAX_ENTRIES || length + member.length + 1 > TRACESTATE_MAX_CHARS) break
    length += member.length + 1
    kept.push(member)
  }
  return kept.length > 0 ? kept.join(',') : undefined
}

/** A baggage header to pass on, whole (its entries are the client's to choose), or undefined past W3C's 8,192 bytes. */
export function baggageOf (header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string' || !HEADER_TEXT.test(header)) return undefined
  const value = header.trim()
  return value === '' || value.length > BAGGAGE_MAX_BYTES ? undefined : value
}

/** The trace context of a request's headers, or undefined when it sent none that is valid. */
export function traceContextOf (headers: IncomingHttpHeaders): TraceContext | undefined {
  // The common case, no header at all: three property reads.
  if (headers.traceparent === undefined && headers.baggage === undefined) return undefined
  const traceparent = traceparentOf(headers.traceparent)
  const tracestate = traceparent === undefined ? undefined : tracestateOf(headers.tracestate)
  const baggage = baggageOf(headers.baggage)
  if (traceparent === undefined && baggage === undefined) return undefined
  return { ...(traceparent !== undefined && { traceparent }), ...(tracestate !== undefined && { tracestate }), ...(baggage !== undefined && { baggage }) }
}

/** What log lines about a traced request carry: its trace's id and its client's span's id. */
export interface TraceLogFields {
  traceId: string
  spanId: string
}

/** The log fields of a traceparentOf() value. */
export function traceLogFieldsOf (traceparent: string | undefined): TraceLogFields | undefined {
  return traceparent === undefined ? undefined : { traceId: traceparent.slice(3, 35), spanId: traceparent.slice(36, 52) }
}
