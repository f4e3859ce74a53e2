// Runs Prometheus's promtool (Debian package "prometheus"), or says why it cannot.
// A fresh machine's `npm test` stays green without it; CI, which installs it
// (.ci/run), must run every check.

import { execFile } from 'node:child_process'
import { ROOT } from './server.js'

interface TapLike {
  fail: (message: string) => unknown
  pass: (message: string, extra: { skip: string }) => unknown
  error: (error: unknown, message: string) => unknown
}

const installed = new Promise<boolean>((resolve) => {
  execFile('sh', ['-c', 'command -v promtool'], (error) => { resolve(error === null) })
})

/** False (after failing in CI, skipping elsewhere) when promtool is missing. */
export async function hasPromtool (t: TapLike): Promise<boolean> {
  if (await installed) return true
  const why = 'promtool is not installed (Debian package "prometheus"; .ci/run installs it)'
  if (process.env.CI === 'true') t.fail(why)
  else t.pass('promtool checks', { skip: why })
  return false
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
