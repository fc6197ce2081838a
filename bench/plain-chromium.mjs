// Headless Chromium with no DevTools client attached, for measurements that an attached client
// would distort.
//
// playwright-core (bench/browser.mjs) enables the DevTools Network domain on every page it
// controls, and listens to WebSocket frame events: Chromium then copies every frame, sent or
// received, to the DevTools session (through the browser process to the Node process, which
// parses it). Measured here with 20,000 small messages each way (the browser section), that
// took the CPU a frame costs across the processes from about 40 to 65 µs sending and from 40 to
// 105 µs receiving, and cut the native WebSocket to about half its rate sending and a third
// receiving, while a client that batches many messages into one frame hardly paid for it.
// A page opened here drives itself (see bench/browser-throughput.mjs: a control WebSocket).
//
// For a CPU profile, `profiler: true` opens DevTools on a local port, and `profilerOf()` attaches
// to the page with the Profiler domain alone: the sampling costs, the frames are not copied.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { CHROMIUM_ARGS, chromiumExecutable } from './browser.mjs'

/**
 * Starts headless Chromium on `url`, with a fresh profile in a temporary directory.
 * @param {string} url the page to open
 * @param {{ profiler?: boolean }} [options] `profiler`: listen for DevTools on a local port (for {@link profilerOf})
 * @returns {{ pid: number, profile: string, exited: Promise<number | null>, close(): Promise<void> }}
 */
export function launchPlainChromium(url, { profiler = false } = {}) {
  const path = chromiumExecutable()
  const profile = mkdtempSync(join(tmpdir(), 'tethersocket-bench-plain-'))
  // gc() in the page: a benchmark collects one round's garbage before the next starts. A process
  // group of its own: close() ends Chromium's helper processes too, and waits for them.
  const args = [
    ...CHROMIUM_ARGS,
    '--js-flags=--expose-gc',
    `--user-data-dir=${profile}`,
    ...(profiler ? ['--remote-debugging-port=0'] : []),
    url,
  ]
  const child = spawn(path, args, { stdio: 'ignore', detached: true })
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
    profile,
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

/**
 * Attaches to the page at `url` of a Chromium started with `profiler: true`, enabling only the
 * Profiler domain: `start()`, then `stop()` resolves with the .cpuprofile's object.
 * @param {{ profile: string }} browser what launchPlainChromium returned
 * @param {string} url the page's address
 */
export async function profilerOf(browser, url) {
  // Chromium writes the port it chose into the profile directory.
  const port = readFileSync(join(browser.profile, 'DevToolsActivePort'), 'utf8').split('\n')[0]
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()
  const target = targets.find((t) => t.type === 'page' && t.url === url)
  if (!target) throw new Error(`no page at ${url} to profile (pages: ${targets.map((t) => t.url).join(', ')})`)
  const ws = new WebSocket(target.webSocketDebuggerUrl, { perMessageDeflate: false, maxPayload: 1 << 30 })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  let nextId = 0
  const pending = new Map()
  ws.on('message', (data) => {
    const { id, result, error } = JSON.parse(data)
    const call = pending.get(id)
    pending.delete(id)
    if (error) call?.reject(new Error(`DevTools: ${error.message}`))
    else call?.resolve(result)
  })
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = ++nextId
      pending.set(id, { resolve, reject })
      ws.send(JSON.stringify({ id, method, params }))
    })
  await send('Profiler.enable')
  await send('Profiler.setSamplingInterval', { interval: 100 })
  return {
    start: () => send('Profiler.start'),
    stop: async () => (await send('Profiler.stop')).profile,
    close: () => ws.close(),
  }
}
