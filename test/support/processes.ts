/**
 * Child processes of real services (redis-server, haproxy) for integration tests: finding
 * Debian's binaries, free ports, output kept for error messages, bounded stops and readiness
 * waits, and no process or temporary folder left behind when the test process exits early.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { accessSync, constants, rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'

const OUTPUT_LIMIT = 64 * 1024

const liveChildren = new Set<ChildProcess>()
const liveDirs = new Set<string>()
let exitHookInstalled = false

// A worker that ends before its cleanup hooks ran (process.exit, an uncaught error) would orphan them:
// kill what is left, synchronously, so no redis-server or haproxy outlives the test run.
function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const child of liveChildren) child.kill('SIGKILL')
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true })
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The absolute path of `command`, looked up on PATH and then in the sbin folders (Debian installs
 * haproxy in /usr/sbin, which is not on an ordinary user's PATH). Throws, naming the Debian
 * package to install, when it is nowhere.
 */
export function findBinary(command: string, debianPackage: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter(Boolean)
  for (const dir of dirs) {
    const candidate = join(dir, command)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here: try the next folder
    }
  }
  throw new Error(
    `${command} was not found on PATH nor in /usr/sbin: install Debian's ${debianPackage} package (npm test installs it when run as root).`,
  )
}

/**
 * A TCP port of 127.0.0.1 that was free a moment ago (the kernel's pick for port 0). Another
 * process may take it before the caller binds it: callers retry with a new one when binding fails.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('could not read the port the kernel picked'))))
    })
  })
}

/** A new temporary folder, removed at process exit if nobody removed it before. */
export async function makeTempDir(prefix: string): Promise<string> {
  installExitHook()
  const dir = await mkdtemp(join(tmpdir(), prefix))
  liveDirs.add(dir)
  return dir
}

/** Leaves a folder made by `makeTempDir` in place, even at process exit (to look at a failure). */
export function keepTempDir(dir: string): void {
  liveDirs.delete(dir)
}

/** Removes a folder made by `makeTempDir`. */
export async function removeTempDir(dir: string): Promise<void> {
  liveDirs.delete(dir)
  await rm(dir, { recursive: true, force: true })
}

/** How a service process ended. */
export interface ServiceExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** Set when the process could not be started at all (such as ENOENT). */
  error?: Error
}

/** A running (or ended) service process. */
export interface ServiceProcess {
  /** Its name in messages, such as `redis-server on 127.0.0.1:6400`. */
  readonly name: string
  readonly pid: number | undefined
  /** Whether it has not exited yet. */
  readonly running: boolean
  /** Settles when it has exited (never rejects). */
  readonly exited: Promise<ServiceExit>
  /** Its stdout and stderr so far, interleaved (the last 64 KiB). */
  output(): string
  /**
   * Sends `signal` and waits up to `timeoutMs` for the exit; then SIGKILL and waits again. Resolves
   * once the process is gone.
   */
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<void>
}

/** Thrown when a service did not become ready; `output` is what it printed. */
export class ServiceStartError extends Error {
  /** What the service printed before it failed. */
  readonly output: string
  /** Whether it exited on its own (rather than being too slow). */
  readonly exitedEarly: boolean
  constructor(message: string, output: string, exitedEarly: boolean) {
    super(message)
    this.name = 'ServiceStartError'
    this.output = output
    this.exitedEarly = exitedEarly
  }
}

/** Starts `binary args…` in `cwd`, output captured, killed at process exit if still running. */
export function spawnService(name: string, binary: string, args: string[], cwd: string): ServiceProcess {
  installExitHook()
  let output = ''
  const child = spawn(binary, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  liveChildren.add(child)
  const append = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT)
  }
  child.stdout?.on('data', append)
  child.stderr?.on('data', append)
  let done = false
  const exited = new Promise<ServiceExit>((resolve) => {
    child.on('error', (error) => {
      // a spawn failure emits 'error' without 'exit'; a failed kill emits 'error' on a live process
      if (child.pid !== undefined || done) return
      done = true
      liveChildren.delete(child)
      resolve({ code: null, signal: null, error })
    })
    child.once('exit', (code, signal) => {
      done = true
      liveChildren.delete(child)
      resolve({ code, signal })
    })
  })
  const waitExit = (ms: number) => Promise.race([exited.then(() => true), sleep(ms).then(() => false)])
  return {
    name,
    pid: child.pid,
    get running() {
      return !done
    },
    exited,
    output: () => output,
    async stop(signal, timeoutMs) {
      if (done) return
      child.kill(signal)
      if (await waitExit(timeoutMs)) return
      child.kill('SIGKILL')
      if (!(await waitExit(5000))) throw new Error(`${name} (pid ${child.pid}) did not exit even after SIGKILL`)
    },
  }
}

/** Describes how a service ended, for error messages. */
export function describeExit(exit: ServiceExit): string {
  if (exit.error) return `could not be started (${exit.error.message})`
  return exit.signal ? `was ended by ${exit.signal}` : `exited with code ${exit.code}`
}

/**
 * Polls `probe` (every 25 ms) until it resolves true. Throws a `ServiceStartError` carrying the
 * service's output when the service exits first or `timeoutMs` passes.
 */
export async function waitForService(
  service: ServiceProcess,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (!service.running) {
      const exit = await service.exited
      const output = service.output()
      throw new ServiceStartError(`${service.name} ${describeExit(exit)} before ${what}. Its output:\n${output || '(none)'}`, output, true)
    }
    if (await probe()) return
    if (Date.now() >= deadline) {
      const output = service.output()
      throw new ServiceStartError(
        `${service.name} was not ${what} after ${timeoutMs} ms. Its output:\n${output || '(none)'}`,
        output,
        false,
      )
    }
    await sleep(25)
  }
}

/**
 * Runs operations on one handle one after another, so that a cleanup hook that fires while a
 * test's restart is still under way waits for it instead of racing it.
 */
export function serialQueue(): <T>(operation: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve()
  return (operation) => {
    const result = tail.then(operation, operation)
    tail = result.catch(() => {})
    return result
  }
}
