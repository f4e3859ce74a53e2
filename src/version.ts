// pyfleet's version, as package.json says (--version, --check, the OpenAPI document).

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PROJECT_ROOT } from './plugins/worker-pool.js'

export async function version (): Promise<string> {
  const manifest = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
  return manifest.version
}
