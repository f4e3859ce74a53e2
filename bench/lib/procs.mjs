// Processes of a benchmark run, read from /proc: free ports, the tree of a
// server (Node and every Python worker under it), its memory and CPU time, and
// stopping it so that nothing outlives the run. Linux only, as pyfleet is.

import { spawn } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Clock ticks per second of utime/stime in /proc/<pid>/stat (USER_HZ; 100 on every Linux build that matters). */
const CLK_TCK = 100

/** A TCP port that was free a moment ago: the OS picks it, we close and hand it on. */
export async function freePort () {
  const server = createServer()
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve) })
  const { port } = server.address()
  await new Promise((resolve) => { server.close(resolve) })
  return port
}

/** Polls a URL until it answers (any status) or the deadline passes. */
export async function waitForHttp (url, timeoutMs = 20_000, isAlive = () => true) {
  const deadline = Date.now() + timeoutMs
  let lastError
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error(`the process serving ${url} exited while starting`)
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) })
      await response.arrayBuffer()
      if (response.status < 500) return
      lastError = new Error(`status ${response.status}`)
    } catch (error) {
      lastError = error
    }
    await sleep(100)
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms: ${lastError?.message}`)
}

/** One line of /proc/<pid>/stat, parsed past the command name (which may hold spaces and parentheses). */
function readStat (pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const close = text.lastIndexOf(')')
    const comm = text.slice(text.indexOf('(') + 1, close)
    const fields = text.slice(close + 2).split(' ')
    // fields[0] is field 3 (state) of proc(5): ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
    return {
      pid,
      comm,
      ppid: Number(fields[1]),
      cpuTicks: Number(fields[11]) + Number(fields[12]),
      childTicks: Number(fields[13]) + Number(fields[14])
    }
  } catch {
    return undefined // exited between readdir and read
  }
}

/** Every live process whose ancestry reaches `rootPid`, root included. */
export function processTree (rootPid) {
  const byParent = new Map()
  let root
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const stat = readStat(Number(name))
    if (stat === undefined) continue
    if (stat.pid === rootPid) root = stat
    let siblings = byParent.get(stat.ppid)
    if (siblings === undefined) byParent.set(stat.ppid, siblings = [])
    siblings.push(stat)
  }
  if (root === undefined) return []
  const tree = [root]
  for (let i = 0; i < tree.length; i++) tree.push(...(byParent.get(tree[i].pid) ?? []))
  return tree
}

/** Resident and proportional set size of one process in bytes (smaps_rollup: one read for both). */
function readMemory (pid) {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    const rss = /^Rss:\s+(\d+) kB/m.exec(text)
    const pss = /^Pss:\s+(\d+) kB/m.exec(text)
    return { rss: Number(rss?.[1] ?? 0) * 1024, pss: Number(pss?.[1] ?? 0) * 1024 }
  } catch {
    return { rss: 0, pss: 0 }
  }
}

/** Node processes are counted as "node", everything else in a tree (python3, gunicorn) as "python". */
const kindOf = (comm) => comm.startsWith('node') ? 'node' : 'python'

/** Memory of a whole tree now: total RSS and PSS, RSS by kind, and how many processes. */
export function treeMemory (rootPid) {
  const sample = { rssBytes: 0, pssBytes: 0, nodeRssBytes: 0, pythonRssBytes: 0, processes: 0 }
  for (const p of processTree(rootPid)) {
    const { rss, pss } = readMemory(p.pid)
    sample.rssBytes += rss
    sample.pssBytes += pss
    sample[kindOf(p.comm) === 'node' ? 'nodeRssBytes' : 'pythonRssBytes'] += rss
    sample.processes++
  }
  return sample
}

/**
 * CPU ticks of a tree by kind. Children that already exited and were reaped
 * (spawn's one-shot Pythons, recycled workers) are in the root's
 * cutime/cstime, so they count as python.
 */
export function treeCpu (rootPid) {
  const reading = { node: 0, python: 0, reaped: 0 }
  for (const p of processTree(rootPid)) {
    reading[kindOf(p.comm)] += p.cpuTicks
    if (p.pid === rootPid) reading.reaped = p.childTicks
  }
  return reading
}

/** CPU seconds a tree used between two readings, by kind. */
export function cpuBetween (before, after) {
  // A process alive at both readings contributes its delta. One that exited
  // in between leaves the "after" sum, taking its earlier ticks with it, and
  // comes back whole in the root's reaped (cutime) delta: together, exactly
  // what it used in between. Only Python processes come and go.
  const node = after.node - before.node
  const python = after.python - before.python + (after.reaped - before.reaped)
  return { nodeSeconds: Math.max(0, node) / CLK_TCK, pythonSeconds: Math.max(0, python) / CLK_TCK }
}

/** Whole-machine CPU: busy and total jiffies from /proc/stat (to see how much others used). */
export function machineCpu () {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = v[3] + (v[4] ?? 0)
  const total = v.reduce((a, b) => a + b, 0)
  return { busy: total - idle, total }
}

/** CPU ticks of one process alone (the load generator), in seconds. */
export function processCpuSeconds (pid) {
  const stat = readStat(pid)
  return stat === undefined ? 0 : stat.cpuTicks / CLK_TCK
}

export function isAlive (pid) {
  try { process.kill(pid, 0); return true } catch { return false }
}

/**
 * Stops a server tree: SIGTERM to the root (pyfleet drains and stops its
 * workers, gunicorn stops its own), then SIGKILL to whatever of the tree is
 * still there after `graceMs` — by pid, only the processes this run started.
 */
export async function stopTree (child, graceMs = 8000) {
  const rootPid = child.pid
  if (rootPid === undefined) return
  const members = processTree(rootPid).map((p) => p.pid)
  const exited = child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', resolve))
  try { child.kill('SIGTERM') } catch { /* gone */ }
  await Promise.race([exited, sleep(graceMs)])
  for (const pid of members) {
    if (isAlive(pid)) {
      try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
    }
  }
  // Give the kernel a moment to reap, then report anything that survived.
  for (let i = 0; i < 20 && members.some(isAlive); i++) await sleep(50)
  return members.filter(isAlive)
}

/**
 * Starts pyfleet from a checkout (`root`, built) on a free port of 127.0.0.1, its stdout and
 * stderr in `logFile`, with `env` as its whole environment apart from PORT and HOST; resolves
 * once /ready answers (the bench:stall, bench:overload and bench:soak servers). One that
 * does not answer in time is stopped, workers and all, before the error is thrown.
 */
export async function startPyfleetServer ({ root, logFile, env }) {
  const port = await freePort()
  const fd = openSync(logFile, 'w')
  const child = spawn(process.execPath, [join(root, 'dist', 'server.js')], {
    cwd: root,
    stdio: ['ignore', fd, fd],
    env: { ...env, PORT: String(port), HOST: '127.0.0.1' }
  })
  closeSync(fd)
  const url = `http://127.0.0.1:${port}`
  try {
    await waitForHttp(`${url}/ready`, 30_000, () => child.exitCode === null)
  } catch (error) {
    await stopTree(child)
    throw new Error(`${error.message} (its log: ${logFile})`)
  }
  return { child, port, url }
}
