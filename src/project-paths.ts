// Where the project's own files are, found from this module's place: one level above
// src/ (tests run src/ through tsx) or dist/ (production runs the build).

import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project root: the workers' cwd, and where `.venv` is looked for. */
export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
/** The Python runtime (`pyfleet`) and the built-in tasks (`pyfleet_tasks`): first on the workers' PYTHONPATH. */
export const WORKERS_DIR = join(PROJECT_ROOT, 'workers')
