// Cgroups with small limits, for tests that need the kernel's real enforcement: a memory
// cgroup whose OOM killer ends a worker that allocates past the limit, as in a container
// that runs out; a pids cgroup where fork and thread creation fail with EAGAIN, as under a
// container's --pids-limit. Need root and a writable cgroup file system (v1's hierarchy of
// the controller, or v2 with the controller enabled); undefined where there is none.

import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'

export interface TestCgroup {
  path: string
  /** Moves a process (not its later children) into the cgroup. */
  add: (pid: number) => Promise<void>
  /** Removes the cgroup once it is empty (its processes dead or moved out), waiting up to 5 s for that. */
  remove: () => Promise<void>
}
/** The name the OOM tests knew it by. */
export type MemoryCgroup = TestCgroup

const V2_ROOT = '/sys/fs/cgroup'

/** A cgroup of `controller` named `name`, with each setting written as v1 or v2 names it. */
async function makeCgroup (controller: 'memory' | 'pids', name: string, settings: (v2: boolean) => Array<[file: string, value: string, optional?: boolean]>): Promise<TestCgroup | undefined> {
  if (process.getuid?.() !== 0) return undefined
  const v2 = await readFile(`${V2_ROOT}/cgroup.subtree_control`, 'utf8').then((text) => text.split(/\s+/).includes(controller), () => false)
  const root = v2 ? V2_ROOT : `${V2_ROOT}/${controller}`
  const path = `${root}/${name}-${process.pid}`
  try {
    await mkdir(path)
  } catch {
    return undefined // no such hierarchy, or not writable (a container without its own cgroups)
  }
  try {
    for (const [file, value, optional = false] of settings(v2)) {
      await writeFile(`${path}/${file}`, value).catch((error: unknown) => { if (!optional) throw error })
    }
  } catch {
    await rmdir(path).catch(() => {})
    return undefined
  }
  return {
    path,
    add: async (pid) => { await writeFile(`${path}/cgroup.procs`, String(pid)) },
    remove: async () => {
      // Processes killed a moment ago may not have left yet (a worker ends with its server by
      // PR_SET_PDEATHSIG, after it): rmdir would fail with EBUSY.
      for (let waited = 0; waited < 5000 && (await readFile(`${path}/cgroup.procs`, 'utf8').catch(() => '')).trim() !== ''; waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      await rmdir(path)
    }
  }
}

export async function makeMemoryCgroup (name: string, limitBytes: number): Promise<MemoryCgroup | undefined> {
  // v2: no swap to spill into, or the "OOM" would be a slow swap-out instead.
  return await makeCgroup('memory', name, (v2) => v2
    ? [['memory.max', String(limitBytes)], ['memory.swap.max', '0', true]]
    : [['memory.limit_in_bytes', String(limitBytes)]])
}

/** At most `max` processes and threads in it, together (pids.max, the same file in v1 and v2). */
export async function makePidsCgroup (name: string, max: number | 'max'): Promise<TestCgroup | undefined> {
  return await makeCgroup('pids', name, () => [['pids.max', String(max)]])
}
