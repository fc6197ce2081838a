// A Node child process driven over IPC, pinned to one CPU with `taskset` where it can be: the
// server-at-scale sections run the server on one core and the clients on the other, so neither
// steals the other's CPU and the server's own time is what it measures.
//
// Parent: `const child = await startPinned(url, { cpu: 1 })`, then `await child.call('name', …args)`.
// Child: `serve({ name: async (…args) => result })`.
import { execFileSync, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'

let tasksetWorks
/** Whether `taskset` exists and may pin to CPU 1 (a 2-core machine at least). */
export function canPin() {
  if (tasksetWorks === undefined) {
    try {
      execFileSync('taskset', ['-c', '1', 'true'], { stdio: 'ignore' })
      tasksetWorks = cpus().length >= 2
    } catch {
      tasksetWorks = false
    }
  }
  return tasksetWorks
}

/** The soft limit on open files of this process (its children inherit it), or Infinity if unknown. */
export function openFileLimit() {
  try {
    const limit = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()
    return limit === 'unlimited' ? Number.POSITIVE_INFINITY : Number(limit)
  } catch {
    return Number.POSITIVE_INFINITY
  }
}

/** Files a process needs besides its sockets (node's own, the IPC channel, …). */
export const SPARE_FILES = 100

/**
 * Starts `node [execArgv] file` (pinned to `cpu` when {@link canPin}), waits for its `serve()`
 * to be ready, and returns how to call its commands and stop it.
 */
export async function startPinned(file, { cpu, execArgv = [] } = {}) {
  const script = fileURLToPath(file)
  const pinned = cpu !== undefined && canPin()
  // taskset execs node in the same process: the IPC channel (an inherited fd) survives.
  const [command, args] = pinned
    ? ['taskset', ['-c', String(cpu), process.execPath, ...execArgv, script]]
    : [process.execPath, [...execArgv, script]]
  const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const pending = new Map()
  let nextId = 0
  let exited = false
  await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)))
  })
  child.on('message', ({ id, result, error }) => {
    const call = pending.get(id)
    pending.delete(id)
    if (error) call?.reject(new Error(`${script}: ${error}`))
    else call?.resolve(result)
  })
  child.once('exit', (code, signal) => {
    exited = true
    for (const call of pending.values()) call.reject(new Error(`${script} exited (${signal ?? code}) during a call`))
    pending.clear()
  })
  return {
    pinned,
    call: (command, ...commandArgs) =>
      new Promise((resolve, reject) => {
        if (exited) return reject(new Error(`${script} has exited`))
        const id = nextId++
        pending.set(id, { resolve, reject })
        child.send({ id, command, args: commandArgs })
      }),
    /** Ends the child (SIGKILL: its connections are cut like a crash) and waits for its exit. */
    stop: () => {
      if (exited) return Promise.resolve()
      const gone = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      return gone
    },
  }
}

/**
 * Asks `child` its `command` (a count) every 50 ms until it answers `count`; rejects after 30 s
 * saying how many of what it has (connections may trail the clients' open events).
 */
export async function untilCount(child, command, count, what = command) {
  const deadline = Date.now() + 30_000
  for (;;) {
    const have = await child.call(command)
    if (have === count) return
    if (Date.now() > deadline) throw new Error(`the server has ${have} ${what} of ${count} after 30 s`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Calls `open(i)` for every `i` below `count`, `batch` at a time (each batch settled before the
 * next, so thousands of connections do not all handshake at once). Resolves with the time taken, ms.
 */
export async function inBatches(count, open, batch = 500) {
  const started = performance.now()
  for (let i = 0; i < count; i += batch) {
    const opening = []
    for (let j = i; j < Math.min(count, i + batch); j++) opening.push(open(j))
    await Promise.all(opening)
  }
  return performance.now() - started
}

/** In the child (node --expose-gc): heapUsed after full GCs. */
export async function settledHeap() {
  // Three passes with a turn of the loop between: objects with finalizers go on the later ones.
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

/**
 * In the child: starts the CPU profiler (sampling every `interval` µs); resolves with a function
 * that stops it and writes the profile to `file`.
 */
export async function startProfiling(interval = 100) {
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval })
  await session.post('Profiler.start')
  return async (file) => {
    const { profile } = await session.post('Profiler.stop')
    session.disconnect()
    writeFileSync(file, JSON.stringify(profile))
  }
}

/** In the child: a CPU profile of `work` (sampled every `interval` µs), written to `file`; resolves with what `work` resolves with. */
export async function profiled(file, work, interval = 100) {
  const stop = await startProfiling(interval)
  const result = await work()
  await stop(file)
  return result
}

/** In the child: answers the parent's calls with `commands`, and says it is ready. */
export function serve(commands) {
  process.on('message', async ({ id, command, args }) => {
    try {
      if (!commands[command]) throw new Error(`unknown command ${command}`)
      process.send({ id, result: await commands[command](...args) })
    } catch (error) {
      process.send({ id, error: error?.stack ?? String(error) })
    }
  })
  process.on('disconnect', () => process.exit(0))
  process.send({ ready: true })
}
