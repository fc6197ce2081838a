// Headless Chromium with no DevTools client attached, for measurements that an attached client
// would distort.
//
// playwright-core (bench/browser.mjs) enables the DevTools Network domain on every page it
// controls, and listens to WebSocket frame events: Chromium then copies every frame, sent or
// received, to the DevTools session (through the browser process to this Node process, which
// parses it). Measured here with 10,000 small messages each way, that tripled the CPU a frame
// costs (renderer, browser process and Node together), and halved the native WebSocket's
// receive rate, while a client that batches many messages into one frame hardly paid for it.
// A page opened here is driven by the page itself (see bench/browser-throughput.mjs: a control
// WebSocket), never by DevTools.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The flags of bench/browser.mjs (and test/support/chromium.ts): headless, in a container without a desktop or outside network. */
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** `CHROME_PATH`, or Debian's chromium, as bench/browser.mjs finds it (which has already said what to install when there is none). */
const executable = () => process.env.CHROME_PATH || '/usr/bin/chromium'

/**
 * Starts headless Chromium on `url`, with a fresh profile in a temporary directory.
 * @param {string} url the page to open
 * @returns {{ pid: number, exited: Promise<number | null>, close(): Promise<void> }}
 */
export function launchPlainChromium(url) {
  const path = executable()
  if (!existsSync(path)) throw new Error(`the browser benchmarks need Chromium: none at ${path} (set CHROME_PATH)`)
  const profile = mkdtempSync(join(tmpdir(), 'tethersocket-bench-plain-'))
  // gc() in the page: a benchmark collects one round's garbage before the next starts. A process
  // group of its own: close() ends Chromium's helper processes too, and waits for them.
  const child = spawn(path, [...ARGS, '--js-flags=--expose-gc', `--user-data-dir=${profile}`, url], { stdio: 'ignore', detached: true })
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)))
  child.once('error', () => {}) // a spawn failure shows as the page never connecting, which the caller bounds
  /** Signals the group; false once no process of it is left. */
  const signal = (name) => {
    try {
      process.kill(-child.pid, name)
      return true
    } catch {
      return false
    }
  }
  /** Whether the group is gone within `ms`. */
  const gone = async (ms) => {
    const deadline = Date.now() + ms
    while (signal(0)) {
      if (Date.now() > deadline) return false
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    return true
  }
  // Should this process end first (an uncaught error, process.exit()), Chromium goes with it.
  const killOnExit = () => signal('SIGKILL')
  process.once('exit', killOnExit)
  return {
    pid: child.pid,
    exited,
    async close() {
      process.off('exit', killOnExit)
      if (child.pid !== undefined && signal('SIGTERM') && !(await gone(5000))) {
        signal('SIGKILL')
        await gone(5000)
      }
      rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })
    },
  }
}
