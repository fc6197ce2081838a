// CPU time of this process and of the processes it started (Chromium's), by role, from Linux's
// /proc: where a browser round's time goes when the page's main thread is idle (the network
// service, the browser process) or busy. Elsewhere `cpuTimes()` returns undefined and the
// sections leave the columns out.
//
// Per thread, /proc/<pid>/task/<tid>/schedstat counts nanoseconds on a CPU: the sum over a
// process's threads is its CPU time (less that of threads gone meanwhile, which Chromium's
// long-lived threads seldom are). Without schedstat, /proc/<pid>/stat's clock ticks (10 ms).
import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`, 100 on Linux everywhere in practice). */
const TICKS = 100

/**
 * The role of a process, from its command line: a Chromium process's type (`browser` for the main
 * one), a Node script's name (`browser-servers` for bench/browser-servers.mjs); this process is `node`.
 */
function role(cmdline) {
  const type = /--type=([\w-]+)/.exec(cmdline)?.[1]
  if (!type) return /chrom/i.test(cmdline) ? 'browser' : (/([\w-]+)\.m?js\b/.exec(cmdline)?.[1] ?? 'other')
  if (type === 'utility') return /NetworkService/.test(cmdline) ? 'network' : 'utility'
  if (type === 'gpu-process') return 'gpu'
  return type // renderer, zygote, …
}

/** `{ pid, ppid, ticksMs }` of a /proc/<pid>/stat, or undefined when the process is gone. */
function stat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    // Fields 4 (ppid), 14 (utime) and 15 (stime), counted from 1; `fields` starts at field 3.
    return { pid: Number(pid), ppid: Number(fields[1]), ticksMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS }
  } catch {
    return undefined
  }
}

/** CPU ms of a process: the sum of its threads' schedstat, or its clock ticks. */
function cpuMs({ pid, ticksMs }) {
  try {
    let ns = 0
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      } catch {} // a thread that ended since the listing
    }
    return ns / 1e6
  } catch {
    return ticksMs
  }
}

/**
 * CPU ms so far per role: `node` (this process, µs-exact from process.cpuUsage()) and every
 * descendant process by its role (`renderer`, `network`, `browser`, `gpu`, …). Undefined where
 * there is no /proc.
 * @returns {Record<string, number> | undefined}
 */
export function cpuTimes() {
  let pids
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return undefined
  }
  const stats = pids.map(stat).filter(Boolean)
  const children = new Map()
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s])
  const { user, system } = process.cpuUsage()
  const times = { node: (user + system) / 1000 }
  const visit = (pid) => {
    for (const child of children.get(pid) ?? []) {
      let cmdline = ''
      try {
        cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').replaceAll('\0', ' ')
      } catch {}
      const name = role(cmdline)
      times[name] = (times[name] ?? 0) + cpuMs(child)
      visit(child.pid)
    }
  }
  visit(process.pid)
  return times
}

/** What `after` adds to `before`, per role (roles absent before count from 0). */
export function cpuSpent(before, after) {
  if (!before || !after) return undefined
  return Object.fromEntries(Object.entries(after).map(([name, ms]) => [name, ms - (before[name] ?? 0)]))
}
