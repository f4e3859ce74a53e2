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

const installed = (command: string): Promise<boolean> => new Promise<boolean>((resolve) => {
  execFile('sh', ['-c', `command -v ${command}`], (error) => { resolve(error === null) })
})
const promtoolInstalled = installed('promtool')
const prometheusInstalled = installed('prometheus')

async function has (t: TapLike, command: string, isInstalled: Promise<boolean>): Promise<boolean> {
  if (await isInstalled) return true
  const why = `${command} is not installed (Debian package "prometheus"; .ci/run installs it)`
  if (process.env.CI === 'true') t.fail(why)
  else t.pass(`${command} checks`, { skip: why })
  return false
}

/** False (after failing in CI, skipping elsewhere) when promtool is missing. */
export async function hasPromtool (t: TapLike): Promise<boolean> {
  return await has(t, 'promtool', promtoolInstalled)
}

/** False (after failing in CI, skipping elsewhere) when the Prometheus server is missing. */
export async function hasPrometheus (t: TapLike): Promise<boolean> {
  return await has(t, 'prometheus', prometheusInstalled)
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
