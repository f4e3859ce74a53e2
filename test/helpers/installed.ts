// Tools from Debian packages that some checks run (promtool, prometheus, nginx, haproxy), or why they
// cannot: a fresh machine's `npm test` stays green without them (the check is skipped, saying
// so); CI, which installs them (.ci/run), must run every check, so there a missing one fails.

import { execFile } from 'node:child_process'

export interface TapLike {
  fail: (message: string) => unknown
  pass: (message: string, extra: { skip: string }) => unknown
  error: (error: unknown, message: string) => unknown
}

const looked = new Map<string, Promise<boolean>>()

function installed (command: string): Promise<boolean> {
  let found = looked.get(command)
  if (found === undefined) {
    found = new Promise<boolean>((resolve) => { execFile('sh', ['-c', `command -v ${command}`], (error) => { resolve(error === null) }) })
    looked.set(command, found)
  }
  return found
}

/** True when `command` is on PATH; otherwise false, after failing the test under CI=true or skipping elsewhere. */
export async function hasCommand (t: TapLike, command: string, debianPackage: string): Promise<boolean> {
  if (await installed(command)) return true
  const why = `${command} is not installed (Debian package "${debianPackage}"; .ci/run installs it)`
  if (process.env.CI === 'true') t.fail(why)
  else t.pass(`${command} checks`, { skip: why })
  return false
}
