// README read by the tests that keep its reference tables in step with the code.

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ROOT } from './server.js'

export const readme = readFile(join(ROOT, 'README.md'), 'utf8')

/** The text of one README section, from its heading to the next of the same level. */
export async function readmeSection (heading: string): Promise<string> {
  const text = await readme
  const start = text.indexOf(`\n${heading}\n`)
  if (start === -1) throw new Error(`README has no section ${heading}`)
  const level = heading.split(' ')[0]
  const end = text.indexOf(`\n${level} `, start + heading.length + 1)
  return text.slice(start, end === -1 ? undefined : end)
}

/** A section's table rows whose first cell is code (`| \`name\` | ...`). */
export async function readmeRows (heading: string): Promise<string[]> {
  return (await readmeSection(heading)).split('\n').filter((line) => line.startsWith('| `'))
}
