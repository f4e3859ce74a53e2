// pyfleet's version, as package.json says (--version, --check, the OpenAPI document, pyfleet_build_info).

import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** package.json, one level above src/ (tests) or dist/ (production). */
const MANIFEST = join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json')

export async function version (): Promise<string> {
  const manifest = JSON.parse(await readFile(MANIFEST, 'utf8')) as { version: string }
  return manifest.version
}
