// A memory cgroup with a small limit, for tests that need the kernel's real OOM killer:
// a worker moved into it and made to allocate past the limit is OOM-killed, as in a
// container that runs out. Needs root and a writable cgroup file system (v1's memory
// hierarchy, or v2 with the memory controller); undefined where there is none.

import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'

export interface MemoryCgroup {
  path: string
  /** Moves a process (not its later children) into the cgroup. */
  add: (pid: number) => Promise<void>
  /** Removes the cgroup; it must be empty by then (its processes dead or moved out). */
  remove: () => Promise<void>
}

const V1_ROOT = '/sys/fs/cgroup/memory'
const V2_ROOT = '/sys/fs/cgroup'

export async function makeMemoryCgroup (name: string, limitBytes: number): Promise<MemoryCgroup | undefined> {
  if (process.getuid?.() !== 0) return undefined
  const v2 = await readFile(`${V2_ROOT}/cgroup.subtree_control`, 'utf8').then((text) => text.split(/\s+/).includes('memory'), () => false)
  const root = v2 ? V2_ROOT : V1_ROOT
  const limitFile = v2 ? 'memory.max' : 'memory.limit_in_bytes'
  const path = `${root}/${name}-${process.pid}`
  try {
    await mkdir(path)
  } catch {
    return undefined // no such hierarchy, or not writable (a container without its own cgroups)
  }
  try {
    await writeFile(`${path}/${limitFile}`, String(limitBytes))
    // v2: no swap to spill into, or the "OOM" would be a slow swap-out instead.
    if (v2) await writeFile(`${path}/memory.swap.max`, '0').catch(() => {})
  } catch {
    await rmdir(path).catch(() => {})
    return undefined
  }
  return {
    path,
    add: async (pid) => { await writeFile(`${path}/cgroup.procs`, String(pid)) },
    remove: async () => { await rmdir(path) }
  }
}
