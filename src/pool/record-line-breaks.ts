// The line breaks of a worker's log records, given back. The runtime writes each logging
// record as one line on stderr (workers/pyfleet/reporting.py: a traceback or a multi-line
// message has its breaks written `\n` and its backslashes `\\`), since the server reads a
// level per line. Logged as written, a traceback read as one long line full of `\n`
// (`jq -r .msg`, pino-pretty, a log viewer): the server's log line has the breaks back, as
// the `traceback` of a failed call has.

/**
 * A record's line: `LEVEL logger: message`, as the runtime's format writes it
 * (`Level 5` is a level without a name). A task's own print that looks like one is taken
 * for one; only its `\n` and `\\` change.
 */
const RECORD_LINE = /^(?:[A-Z]+|Level \d+) \S+: /

export function isRecordLine (line: string): boolean {
  return RECORD_LINE.test(line)
}

/** `text` (a record's line, or a piece of one) with `\n` as a line break and `\\` as a backslash. */
export function withLineBreaks (text: string): string {
  return text.includes('\\') ? text.replace(/\\([\\n])/g, (_, escaped: string) => escaped === 'n' ? '\n' : '\\') : text
}

/**
 * `cut` (where a long line is cut into pieces), moved back one character if it would split
 * an escape (`\` ending the piece, its `n` or `\` starting the next): each piece's escapes are
 * read on their own.
 */
export function escapeKeptWhole (text: string, cut: number): number {
  let backslashes = 0
  while (backslashes < cut && text.charCodeAt(cut - 1 - backslashes) === 0x5c) backslashes++
  return backslashes % 2 === 1 && cut > 1 ? cut - 1 : cut
}
