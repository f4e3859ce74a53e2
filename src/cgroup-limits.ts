// The CPU and memory limits of the cgroup pyfleet runs in (a container's, a systemd unit's
// CPUQuota and MemoryMax), held against what POOL_SIZE and MAX_WORKER_RSS_MB ask for. A
// pool sized for the machine inside a container sized smaller failed without a word: workers
// throttled together with Node, or OOM-killed (a 502 for the call) before MAX_WORKER_RSS_MB
// could recycle them. Read once, at start-up.

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface CgroupLimits {
  /** CPU time allowed, in cores (quota ÷ period); undefined without a quota. */
  readonly cpus?: number
  /** Memory allowed, in bytes; undefined without a limit. */
  readonly memoryBytes?: number
  /**
   * The process's cgroup is OOM-killed as a whole (v2's `memory.oom.group`, which the kubelet
   * sets on every container since Kubernetes 1.28): a worker that takes it past its limit
   * ends Node and every call with it, whatever the workers' `oom_score_adj`.
   */
  readonly killedAsGroup?: boolean
}

/** At or past this, a v1 memory limit means "none" (the kernel writes 2^63 rounded down to a page). */
const UNLIMITED_V1 = 2 ** 62

/** What Node itself is given in the memory sum: ~80 MB idle, ~270 MB at 1,000 connections (bench/README.md). */
export const NODE_ALLOWANCE_MB = 200

/**
 * The tightest CPU and memory limits on the cgroup of this process and its ancestors, from
 * `/proc/self/cgroup` and the cgroup file system under `root` (v2, or v1's `cpu` and `memory`
 * hierarchies). Nothing it cannot read counts as a limit.
 */
export async function readCgroupLimits (root = '/sys/fs/cgroup', selfCgroup = '/proc/self/cgroup'): Promise<CgroupLimits> {
  const membership = await readFile(selfCgroup, 'utf8').catch(() => '')
  const paths = new Map<string, string>()
  for (const line of membership.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? []
    if (path === undefined) continue
    for (const controller of controllers.split(',')) paths.set(controller, path)
  }
  const unified = paths.get('')
  if (unified !== undefined && await readFile(join(root, 'cgroup.controllers'), 'utf8').then(() => true, () => false)) {
    return {
      cpus: await tightest(root, unified, async (dir) => cpusOfV2(await readText(join(dir, 'cpu.max')))),
      memoryBytes: await tightest(root, unified, async (dir) => bytesOf(await readText(join(dir, 'memory.max')), Infinity)),
      // The process's own cgroup, where the kubelet sets it; one outside this mount's view (see tightest) is not read.
      killedAsGroup: !unified.split('/').includes('..') && await readText(join(root, unified, 'memory.oom.group')) === '1'
    }
  }
  const cpu = paths.get('cpu')
  const memory = paths.get('memory')
  return {
    cpus: cpu === undefined ? undefined : await tightest(join(root, 'cpu'), cpu, async (dir) => cpusOfV1(await readText(join(dir, 'cpu.cfs_quota_us')), await readText(join(dir, 'cpu.cfs_period_us')))),
    memoryBytes: memory === undefined ? undefined : await tightest(join(root, 'memory'), memory, async (dir) => bytesOf(await readText(join(dir, 'memory.limit_in_bytes')), UNLIMITED_V1))
  }
}

/** The smallest limit `read` finds in the cgroup at `path` under `root` and in each of its ancestors, up to `root` itself. */
async function tightest (root: string, path: string, read: (dir: string) => Promise<number | undefined>): Promise<number | undefined> {
  let least: number | undefined
  const parts = path.split('/').filter((part) => part !== '')
  // A cgroup outside this mount's view (`/../other`, cgroup namespaces): its limits cannot be read here.
  if (parts.includes('..')) return undefined
  for (let depth = parts.length; depth >= 0; depth--) {
    const limit = await read(join(root, ...parts.slice(0, depth)))
    if (limit !== undefined && (least === undefined || limit < least)) least = limit
  }
  return least
}

async function readText (path: string): Promise<string | undefined> {
  return await readFile(path, 'utf8').then((text) => text.trim(), () => undefined)
}

/** v2's cpu.max: "max 100000" (none) or "200000 100000" (2 cores). */
function cpusOfV2 (text: string | undefined): number | undefined {
  const [quota, period] = (text ?? '').split(/\s+/)
  return quota === undefined || quota === 'max' ? undefined : ratio(Number(quota), Number(period))
}

/** v1's cfs_quota_us (-1: none) over cfs_period_us. */
function cpusOfV1 (quota: string | undefined, period: string | undefined): number | undefined {
  return quota === undefined || period === undefined ? undefined : ratio(Number(quota), Number(period))
}

function ratio (quota: number, period: number): number | undefined {
  return Number.isFinite(quota) && quota > 0 && Number.isFinite(period) && period > 0 ? quota / period : undefined
}

/** A memory limit in bytes, or undefined for "max", unreadable, or at least `unlimitedFrom`. */
function bytesOf (text: string | undefined, unlimitedFrom: number): number | undefined {
  if (text === undefined || text === 'max') return undefined
  const bytes = Number(text)
  return Number.isFinite(bytes) && bytes > 0 && bytes < unlimitedFrom ? bytes : undefined
}

/** The settings a pool needs checked against the limits. */
export interface PoolSizing {
  readonly poolSize: number
  readonly maxWorkerRssMb: number
}

/** What in the settings does not fit `limits`, each said as the warning to log (none when it fits). */
export function sizingProblems ({ poolSize, maxWorkerRssMb }: PoolSizing, { cpus, memoryBytes, killedAsGroup = false }: CgroupLimits): string[] {
  const problems: string[] = []
  if (cpus !== undefined && poolSize > Math.ceil(cpus)) {
    const cores = Number(cpus.toFixed(2))
    problems.push(`POOL_SIZE=${poolSize} workers with a CPU limit of ${cores} cores (the cgroup's quota): CPU-bound calls share those cores, each runs slower and the queue drains no faster, and Node is throttled with them. ` +
      `Set POOL_SIZE to about one worker per core (${Math.max(1, Math.floor(cpus))}), or raise the limit; tasks that mostly wait on I/O may need no core each`)
  }
  if (memoryBytes !== undefined && maxWorkerRssMb > 0) {
    const limitMb = Math.floor(memoryBytes / (1024 * 1024))
    const neededMb = poolSize * maxWorkerRssMb + NODE_ALLOWANCE_MB
    if (neededMb > limitMb) {
      const fitting = Math.floor((limitMb - NODE_ALLOWANCE_MB) / poolSize)
      problems.push(`POOL_SIZE=${poolSize} workers may each grow to MAX_WORKER_RSS_MB=${maxWorkerRssMb} before they are recycled: with Node's ~${NODE_ALLOWANCE_MB} MB that is ${neededMb} MB, above the cgroup's memory limit of ${limitMb} MB. ` +
        (killedAsGroup
          ? 'The kernel\'s OOM killer would act before recycling, and this cgroup is killed as a group (memory.oom.group, set by Kubernetes 1.28+ on cgroup v2): Node and every call with it. '
          : 'The kernel\'s OOM killer would act before recycling: it ends a worker and its call with a 502, or the whole container where its cgroup is killed as a group (Kubernetes 1.28+ on cgroup v2). ') +
        (fitting > 0 ? `Set MAX_WORKER_RSS_MB to ${fitting} or less, lower POOL_SIZE, or raise the limit` : poolSize > 1 ? 'Lower POOL_SIZE, or raise the limit' : 'Raise the limit'))
    }
  }
  return problems
}

/**
 * What a cgroup killed as a group means here, said once at start where it is (undefined
 * elsewhere): the workers' head start on the OOM killer (oom_score_adj) does not apply, so a
 * worker past the memory limit ends the whole replica; only sizing keeps that from happening.
 */
export function groupKillNote ({ memoryBytes, killedAsGroup }: CgroupLimits): string | undefined {
  if (killedAsGroup !== true || memoryBytes === undefined) return undefined
  return 'this container\'s cgroup is OOM-killed as a group (memory.oom.group=1, as Kubernetes 1.28+ sets on cgroup v2): a worker that takes it past its memory limit ends Node and every call with it, not only its own call. ' +
    'Keep POOL_SIZE x MAX_WORKER_RSS_MB, plus the largest call and Node, under the limit (README, "Deploy"), or set the kubelet\'s singleProcessOOMKill (Kubernetes 1.32+)'
}
