// The cgroup's CPU and memory limits read from real files laid out as the kernel's cgroup
// file system (v2 and v1, with limits on ancestors), and what in POOL_SIZE and
// MAX_WORKER_RSS_MB does not fit them. A HOST on the loopback inside a container.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { groupKillNote, NODE_ALLOWANCE_MB, readCgroupLimits, sizingProblems } from '../src/cgroup-limits.js'
import { isLoopback, loopbackInContainer } from '../src/listen-address.js'

/** Writes `files` (path -> content) under a new directory, and returns it. */
async function tree (t: { teardown: (fn: () => unknown) => void }, files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'pyfleet-cgroup-'))
  t.teardown(async () => { await rm(root, { recursive: true, force: true }) })
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true })
    await writeFile(join(root, path), content)
  }
  return root
}

const MiB = 1024 * 1024

t.test('v2: the tightest of the cgroup\'s and its ancestors\' limits', async (t) => {
  const root = await tree(t, {
    'self-cgroup': '0::/kubepods/pod1/ctr\n',
    'fs/cgroup.controllers': 'cpu memory',
    'fs/kubepods/cpu.max': 'max 100000\n',
    'fs/kubepods/memory.max': String(4096 * MiB),
    'fs/kubepods/pod1/cpu.max': '150000 100000\n',
    'fs/kubepods/pod1/memory.max': 'max\n',
    'fs/kubepods/pod1/ctr/cpu.max': '300000 100000\n',
    'fs/kubepods/pod1/ctr/memory.max': String(1536 * MiB)
  })
  t.same(await readCgroupLimits(join(root, 'fs'), join(root, 'self-cgroup')), { cpus: 1.5, memoryBytes: 1536 * MiB, killedAsGroup: false })
})

t.test('v2 inside a container: its own cgroup is the root, and no limit anywhere is none', async (t) => {
  const limited = await tree(t, { 'self-cgroup': '0::/\n', 'fs/cgroup.controllers': 'cpu memory', 'fs/cpu.max': '200000 100000', 'fs/memory.max': '1073741824' })
  t.same(await readCgroupLimits(join(limited, 'fs'), join(limited, 'self-cgroup')), { cpus: 2, memoryBytes: 1024 * MiB, killedAsGroup: false })
  const free = await tree(t, { 'self-cgroup': '0::/user.slice\n', 'fs/cgroup.controllers': 'cpu memory', 'fs/user.slice/cpu.max': 'max 100000', 'fs/user.slice/memory.max': 'max' })
  t.same(await readCgroupLimits(join(free, 'fs'), join(free, 'self-cgroup')), { cpus: undefined, memoryBytes: undefined, killedAsGroup: false })
})

t.test('v2 with memory.oom.group set (the kubelet on cgroup v2 since Kubernetes 1.28): a worker past the limit ends the whole container, and the start says so', async (t) => {
  const root = await tree(t, {
    'self-cgroup': '0::/kubepods/pod1/ctr\n',
    'fs/cgroup.controllers': 'cpu memory',
    'fs/kubepods/pod1/ctr/memory.max': String(1536 * MiB),
    'fs/kubepods/pod1/ctr/memory.oom.group': '1\n'
  })
  const limits = await readCgroupLimits(join(root, 'fs'), join(root, 'self-cgroup'))
  t.same(limits, { cpus: undefined, memoryBytes: 1536 * MiB, killedAsGroup: true })
  t.match(groupKillNote(limits), /^this container's cgroup is OOM-killed as a group \(memory\.oom\.group=1[^]*ends Node and every call with it/)
  const [memory] = sizingProblems({ poolSize: 4, maxWorkerRssMb: 512 }, limits)
  t.match(memory, /this cgroup is killed as a group \(memory\.oom\.group, set by Kubernetes 1\.28\+ on cgroup v2\): Node and every call with it/)
  t.equal(groupKillNote({ memoryBytes: 1536 * MiB, killedAsGroup: false }), undefined, 'a worker alone is killed: nothing to say')
  t.equal(groupKillNote({ killedAsGroup: true }), undefined, 'no memory limit: no OOM kill of the cgroup')
})

t.test('v1: the cpu and memory hierarchies, -1 and 2^63 meaning none', async (t) => {
  const root = await tree(t, {
    'self-cgroup': '12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n',
    'fs/memory/memory.limit_in_bytes': '9223372036854771712',
    'fs/memory/docker/abc/memory.limit_in_bytes': String(512 * MiB),
    'fs/cpu/cpu.cfs_quota_us': '-1',
    'fs/cpu/cpu.cfs_period_us': '100000',
    'fs/cpu/docker/abc/cpu.cfs_quota_us': '50000',
    'fs/cpu/docker/abc/cpu.cfs_period_us': '100000'
  })
  t.same(await readCgroupLimits(join(root, 'fs'), join(root, 'self-cgroup')), { cpus: 0.5, memoryBytes: 512 * MiB })
  // Docker without a cgroup namespace: /proc/self/cgroup names a path the container's mount does not have; its root is the container's.
  const mounted = await tree(t, { 'self-cgroup': '12:memory:/docker/abc\n', 'fs/memory/memory.limit_in_bytes': String(768 * MiB) })
  t.same(await readCgroupLimits(join(mounted, 'fs'), join(mounted, 'self-cgroup')), { cpus: undefined, memoryBytes: 768 * MiB })
})

t.test('a cgroup outside the mount\'s view (a path with ..) has no limit read for it, not another cgroup\'s', async (t) => {
  const root = await tree(t, { 'self-cgroup': '0::/../other/me\n', 'fs/cgroup.controllers': 'memory', 'fs/other/me/memory.max': String(256 * MiB), 'fs/other/me/memory.oom.group': '1', 'other/me/memory.oom.group': '1' })
  t.same(await readCgroupLimits(join(root, 'fs'), join(root, 'self-cgroup')), { cpus: undefined, memoryBytes: undefined, killedAsGroup: false })
})

t.test('nothing readable is no limit', async (t) => {
  const root = await tree(t, {})
  t.same(await readCgroupLimits(join(root, 'fs'), join(root, 'missing')), { cpus: undefined, memoryBytes: undefined })
})

t.test('this machine\'s own limits read without error', async (t) => {
  const limits = await readCgroupLimits()
  t.ok(limits.cpus === undefined || limits.cpus > 0)
  t.ok(limits.memoryBytes === undefined || limits.memoryBytes > 0)
})

t.test('a pool that fits says nothing; past the cores or the memory, a warning that says what to set', async (t) => {
  t.same(sizingProblems({ poolSize: 4, maxWorkerRssMb: 256 }, { cpus: 4, memoryBytes: 1536 * MiB }), [], 'deploy/kubernetes.yaml\'s sizing fits')
  t.same(sizingProblems({ poolSize: 4, maxWorkerRssMb: 512 }, {}), [], 'no limits')
  t.same(sizingProblems({ poolSize: 3, maxWorkerRssMb: 0 }, { cpus: 2.5, memoryBytes: 100 * MiB }), [], 'MAX_WORKER_RSS_MB=0 bounds nothing to compare; 3 workers on 2.5 cores')
  const [cpu] = sizingProblems({ poolSize: 8, maxWorkerRssMb: 0 }, { cpus: 2 })
  t.match(cpu, /^POOL_SIZE=8 workers with a CPU limit of 2 cores[^]*Set POOL_SIZE to about one worker per core \(2\)/)
  const [memory] = sizingProblems({ poolSize: 4, maxWorkerRssMb: 512 }, { memoryBytes: 1536 * MiB })
  t.match(memory, `that is ${4 * 512 + NODE_ALLOWANCE_MB} MB, above the cgroup's memory limit of 1536 MB`)
  t.match(memory, `Set MAX_WORKER_RSS_MB to ${Math.floor((1536 - NODE_ALLOWANCE_MB) / 4)} or less`)
  const [tiny] = sizingProblems({ poolSize: 4, maxWorkerRssMb: 64 }, { memoryBytes: 128 * MiB })
  t.match(tiny, /Lower POOL_SIZE, or raise the limit$/, 'no MAX_WORKER_RSS_MB could fit')
  const [alone] = sizingProblems({ poolSize: 1, maxWorkerRssMb: 64 }, { memoryBytes: 128 * MiB })
  t.match(alone, /\. Raise the limit$/, 'one worker: nothing to lower')
})

t.test('HOST on the loopback: told apart, and warned of inside a container only', async (t) => {
  for (const host of ['localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) t.ok(isLoopback(host), host)
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'localhost.example', '127.0.0.1.nip.io']) t.notOk(isLoopback(host), host)
  const root = await tree(t, { '.dockerenv': '' })
  const marker = join(root, '.dockerenv')
  t.match(await loopbackInContainer('localhost', [join(root, 'absent'), marker]), /^HOST=localhost is the loopback of this container .*Leave HOST unset \(0\.0\.0\.0\)/)
  t.equal(await loopbackInContainer('0.0.0.0', [marker]), undefined, 'every address')
  t.equal(await loopbackInContainer('127.0.0.1', [join(root, 'absent')]), undefined, 'not in a container')
})
