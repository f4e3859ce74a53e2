// One measured run: a design's handle, a case, and everything we watch while
// the load runs: the tree's memory before, during (sampled every 100 ms) and
// after; CPU by kind over the measurement window; the whole machine's CPU, so
// a run disturbed by someone else's work can be seen for what it was.

import { performance } from 'node:perf_hooks'
import { cpus } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { cpuBetween, machineCpu, processCpuSeconds, treeCpu, treeMemory } from './procs.mjs'

const SAMPLE_MS = 100
const SETTLE_MS = 500
const CORES = cpus().length

async function queueStats (handle) {
  if (!handle.name.startsWith('pyfleet')) return undefined
  try {
    const response = await fetch(`${handle.url}/api/queue-stats`, { signal: AbortSignal.timeout(5000) })
    return await response.json()
  } catch {
    return undefined
  }
}

function restartsBetween (before, after) {
  if (before === undefined || after === undefined) return undefined
  let total = 0
  const byReason = {}
  for (const [reason, n] of Object.entries(after.restarts)) {
    const d = n - (before.restarts[reason] ?? 0)
    if (d > 0) byReason[reason] = d
    total += d
  }
  return { total, byReason }
}

export async function measure (handle, spec) {
  const pid = handle.pid
  const statsBefore = await queueStats(handle)
  const before = treeMemory(pid)
  const samples = []
  let phase = 'warmup'
  let driverPid
  let start
  let end
  const sampler = setInterval(() => { samples.push({ phase, ...treeMemory(pid) }) }, SAMPLE_MS)
  const reading = () => ({
    at: performance.now(),
    tree: treeCpu(pid),
    machine: machineCpu(),
    driverSeconds: driverPid === undefined ? 0 : processCpuSeconds(driverPid)
  })

  let result
  try {
    result = await handle.run(spec, (mark) => {
      if (mark.type === 'driver') driverPid = mark.pid
      else if (mark.type === 'measure-start') { phase = 'measure'; start = reading() } else if (mark.type === 'measure-end') { end = reading(); phase = 'drain' }
    })
  } finally {
    clearInterval(sampler)
  }
  await sleep(SETTLE_MS)
  const after = treeMemory(pid)
  const statsAfter = await queueStats(handle)

  const during = samples.filter((s) => s.phase === 'measure')
  const peak = (key) => Math.max(before[key], ...samples.map((s) => s[key]))
  const memory = {
    beforeBytes: before.rssBytes,
    maxBytes: peak('rssBytes'),
    meanDuringBytes: during.length > 0 ? during.reduce((a, s) => a + s.rssBytes, 0) / during.length : before.rssBytes,
    afterBytes: after.rssBytes,
    maxPssBytes: peak('pssBytes'),
    maxNodeBytes: peak('nodeRssBytes'),
    maxPythonBytes: peak('pythonRssBytes'),
    maxProcesses: peak('processes')
  }

  let cpu
  if (start !== undefined && end !== undefined) {
    const seconds = (end.at - start.at) / 1000
    const used = cpuBetween(start.tree, end.tree)
    const busy = end.machine.busy - start.machine.busy
    const total = end.machine.total - start.machine.total
    const machineBusyCores = total > 0 ? busy / total * CORES : 0
    const nodeCores = used.nodeSeconds / seconds
    const pythonCores = used.pythonSeconds / seconds
    const driverCores = (end.driverSeconds - start.driverSeconds) / seconds
    cpu = {
      cores: CORES,
      nodeCores,
      pythonCores,
      /** Share of all the machine's cores that Python used: the "≥ 90 % on the CPU task" figure. */
      pythonShare: pythonCores / CORES,
      driverCores,
      machineBusyCores,
      /** CPU used by processes outside this run (other users of a shared machine). */
      otherCores: Math.max(0, machineBusyCores - nodeCores - pythonCores - driverCores)
    }
  }
  return { ...result, memory, cpu, restarts: restartsBetween(statsBefore, statsAfter) }
}
