// A bench script's options, from the comment block at the top of its file: what --help
// prints, and what a bad option is answered with, so the text cannot drift from the code's list.

import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

/** The leading `//` comment lines of the file at `fileUrl` (the shebang left out). */
export function usage (fileUrl) {
  const lines = readFileSync(fileURLToPath(fileUrl), 'utf8').split('\n').filter((line, i) => !(i === 0 && line.startsWith('#!')))
  return lines.slice(0, lines.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n')
}

/**
 * parseArgs with a --help of its own: prints the usage and exits 0 for --help, or the
 * error and the usage and exits 2 for an option it does not know.
 */
export function parseOptions (fileUrl, options, name) {
  let values
  try {
    values = parseArgs({ options: { ...options, help: { type: 'boolean', default: false } } }).values
  } catch (error) {
    console.error(`${name}: ${error.message}\n\n${usage(fileUrl)}`)
    process.exit(2)
  }
  if (values.help) {
    console.log(usage(fileUrl))
    process.exit(0)
  }
  return values
}
