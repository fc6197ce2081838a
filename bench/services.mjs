// Child processes of the store section (redis-server, haproxy, server nodes): finding Debian's
// binaries, free ports, temporary folders, bounded waits, and nothing left running when the
// benchmark ends, however it ends (an error, process.exit, Ctrl-C).
import { spawn } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { sleep } from './harness.mjs'

const live = new Set()
const dirs = new Set()
let hooked = false

// Synchronous, as an 'exit' listener must be: an orphaned redis-server or haproxy would outlive the run.
function hook() {
  if (hooked) return
  hooked = true
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL')
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })
  // Without a listener, Ctrl-C ends the process without 'exit'.
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130))
}

/** Remembers a child process until it exits, so that the exit hook can kill it. */
export function track(child) {
  hook()
  live.add(child)
  child.once('exit', () => live.delete(child))
  return child
}

/** A temporary folder, removed at exit unless removed before with `removeDir`. */
export function makeDir(prefix) {
  hook()
  const dir = mkdtempSync(join(tmpdir(), prefix))
  dirs.add(dir)
  return dir
}

export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}

/** The path of `command` on PATH or in the sbin folders (Debian puts haproxy in /usr/sbin); throws naming the package. */
export function findBinary(command, debianPackage) {
  const folders = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean)
  for (const folder of folders) {
    try {
      accessSync(join(folder, command), constants.X_OK)
      return join(folder, command)
    } catch {
      // not in this folder
    }
  }
  throw new Error(
    `${command} was not found: install Debian's ${debianPackage} package (as root, \`node scripts/ensure-packages.mjs\` does)`,
  )
}

/** A port of 127.0.0.1 that was free a moment ago (callers retry if another process takes it first). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/**
 * Spawns a service process whose output is kept (the last 64 KiB) for error messages.
 * Returns `{ child, output(), exited, stop(signal, timeoutMs) }`; `exited` resolves with the exit code.
 */
export function spawnService(name, binary, args, cwd) {
  const child = track(spawn(binary, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }))
  let output = ''
  const keep = (chunk) => {
    output = (output + chunk.toString('utf8')).slice(-64 * 1024)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)))
  let running = true
  exited.then(() => {
    running = false
  })
  return {
    name,
    child,
    exited,
    output: () => output,
    get running() {
      return running
    },
    /** Sends `signal`, then SIGKILL if it has not exited within `timeoutMs`. */
    async stop(signal = 'SIGTERM', timeoutMs = 5000) {
      if (!running) return
      child.kill(signal)
      const timer = sleep(timeoutMs).then(() => 'timeout')
      if ((await Promise.race([exited, timer])) === 'timeout') {
        child.kill('SIGKILL')
        await exited
      }
    },
  }
}

/** Polls `ready()` every 20 ms until it is true; throws with the service's output if it exits or `timeoutMs` passes. */
export async function waitReady(service, ready, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!service.running) throw new Error(`${service.name} exited before ${what}:\n${service.output()}`)
    if (await ready()) return
    await sleep(20)
  }
  throw new Error(`${service.name} was not ${what} within ${timeoutMs} ms:\n${service.output()}`)
}
