// Runs Prometheus's promtool (Debian package "prometheus"), or says why it cannot (installed.ts).

import { execFile } from 'node:child_process'
import { hasCommand, type TapLike } from './installed.js'
import { ROOT } from './server.js'

/** False (after failing in CI, skipping elsewhere) when promtool is missing. */
export async function hasPromtool (t: TapLike): Promise<boolean> {
  return await hasCommand(t, 'promtool', 'prometheus')
}

/** False (after failing in CI, skipping elsewhere) when the Prometheus server is missing. */
export async function hasPrometheus (t: TapLike): Promise<boolean> {
  return await hasCommand(t, 'prometheus', 'prometheus')
}

/** Runs promtool in the repository root, with `input` on stdin, and asserts that it succeeds. */
export async function promtool (t: TapLike, args: string[], input = ''): Promise<string> {
  // Wait for execFile's callback (after the output is read), not 'exit', which can come first.
  return await new Promise<string>((resolve) => {
    const child = execFile('promtool', args, { cwd: ROOT }, (error, stdout, stderr) => {
      t.error(error, `promtool ${args.join(' ')}: ${stdout}${stderr}`)
      resolve(`${stdout}${stderr}`)
    })
    child.stdin?.end(input)
  })
}
