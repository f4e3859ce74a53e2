// A client's W3C Trace Context (https://www.w3.org/TR/trace-context/): its `traceparent` header,
// read so that every log line about its request carries the trace's id (`traceId`: find a
// trace's lines from a tracing UI), and handed to the task (`pyfleet.traceparent()`) to pass on
// to the services it calls. pyfleet records no spans of its own, so it passes the client's
// parent id on unchanged: what a task's calls record is a child of the client's span, not of a
// span no backend ever receives. An invalid header is ignored, as the specification says.

/** version-traceid-parentid-flags, lower-case hex; a later version may add fields after a dash. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-|$)/
const INVALID_TRACE_ID = '0'.repeat(32)
const INVALID_PARENT_ID = '0'.repeat(16)
/** Level 1's length: version 00 has nothing after its flags. */
const VERSION_00_LENGTH = 55

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

/** The trace id of a traceparentOf() value, as logged (`traceId`). */
export function traceIdOf (traceparent: string): string {
  return traceparent.slice(3, 35)
}
