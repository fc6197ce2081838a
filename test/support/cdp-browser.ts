/**
 * Headless Chromium driven over the DevTools protocol directly, for what playwright cannot
 * show: a page that really freezes (`Page.setWebLifecycleState`) and a page that enters the
 * back-forward cache. Playwright keeps every page visible and focused (its focus emulation
 * counts as a capture, and the browser never hides, so never freezes, a captured page) and
 * launches Chromium with the back-forward cache disabled.
 *
 * One browser per test, with its own profile: its pages (targets of the default context)
 * share one origin's storage, Web Locks and BroadcastChannel, as the tabs of one browser do.
 * Every call is bounded; `close()` kills the browser and removes its profile.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { CHROMIUM_ARGS, chromiumExecutable } from './chromium.js'
import { withTimeout } from './servers.js'

/** A page (a tab) of a {@link CdpBrowser}. */
export interface CdpPage {
  /** Uncaught exceptions the page reported (`Runtime.exceptionThrown`), as their description. */
  readonly errors: string[]
  /** Why the back-forward cache did not keep the page, each time (`Page.backForwardCacheNotUsed`, as JSON). */
  readonly notCached: string[]
  /** Sends a DevTools command to the page (bounded, 10 s by default). */
  send<T = unknown>(method: string, params?: object, timeout?: number): Promise<T>
  /** Runs `fn(arg)` in the page (its source, as playwright does) and returns its JSON-serializable result, awaited. */
  evaluate<R, A = undefined>(fn: (arg: A) => R | Promise<R>, arg?: A): Promise<R>
  /** Navigates and waits (5 s at most) until the new document has loaded. */
  goto(url: string): Promise<void>
  /** Closes the tab as a user would (its pagehide and unload handlers run). */
  close(): Promise<void>
}

export interface CdpBrowser {
  newPage(): Promise<CdpPage>
  close(): Promise<void>
}

type Message = {
  id?: number
  method?: string
  params?: Record<string, unknown>
  sessionId?: string
  result?: unknown
  error?: { message: string }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The DevTools endpoint Chromium writes into its profile once it listens (5 s at most). */
async function endpointOf(profile: string, browser: ChildProcess): Promise<string> {
  const file = join(profile, 'DevToolsActivePort')
  const deadline = Date.now() + 5000
  while (!existsSync(file) || readFileSync(file, 'utf8').split('\n').length < 2) {
    if (browser.exitCode !== null) throw new Error(`Chromium exited with code ${browser.exitCode} before listening for DevTools`)
    if (Date.now() > deadline) throw new Error('Chromium did not write its DevTools port within 5 s')
    await sleep(20)
  }
  const [port, path] = readFileSync(file, 'utf8').split('\n')
  return `ws://127.0.0.1:${port}${path}`
}

/** Launches headless Chromium (the executable of chromium.ts) with a fresh profile, and connects to it. */
export async function launchCdpBrowser(): Promise<CdpBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'tethersocket-cdp-'))
  const child = spawn(chromiumExecutable(), [...CHROMIUM_ARGS, `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank'], {
    stdio: 'ignore',
    // Its own process group: closing kills the renderers and helpers with it.
    detached: true,
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
    await withTimeout(exited, 5000, 'Chromium did not exit')
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 })
  }
  let ws: WebSocket
  try {
    ws = new WebSocket(await endpointOf(profile, child))
    await withTimeout(
      new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)),
      5000,
      'DevTools did not accept the connection',
    )
  } catch (error) {
    await kill()
    throw error
  }

  let lastId = 0
  const waiting = new Map<number, { resolve(result: unknown): void; reject(error: Error): void }>()
  const listeners = new Map<string, (message: Message) => void>()
  ws.on('message', (raw) => {
    const message = JSON.parse(String(raw)) as Message
    if (message.id !== undefined) {
      const call = waiting.get(message.id)
      waiting.delete(message.id)
      if (message.error) call?.reject(new Error(message.error.message))
      else call?.resolve(message.result)
    } else if (message.sessionId) listeners.get(message.sessionId)?.(message)
  })
  ws.on('close', () => {
    for (const call of waiting.values()) call.reject(new Error('the DevTools connection closed'))
    waiting.clear()
  })
  const send = <T>(method: string, params: object = {}, sessionId?: string, timeout = 10000): Promise<T> => {
    const id = ++lastId
    const result = new Promise<T>((resolve, reject) => {
      waiting.set(id, { resolve: resolve as (result: unknown) => void, reject })
    })
    ws.send(JSON.stringify({ id, method, params, ...(sessionId && { sessionId }) }))
    return withTimeout(result, timeout, `DevTools did not answer ${method}`).finally(() => waiting.delete(id))
  }

  return {
    async newPage() {
      // A window of its own: a tab behind another would be hidden, its timers slowed to one a second.
      const { targetId } = await send<{ targetId: string }>('Target.createTarget', { url: 'about:blank', newWindow: true })
      const { sessionId } = await send<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true })
      const errors: string[] = []
      const notCached: string[] = []
      let loaded = 0
      listeners.set(sessionId, ({ method, params }) => {
        if (method === 'Runtime.exceptionThrown') {
          const details = params?.exceptionDetails as { exception?: { description?: string }; text: string }
          errors.push(details.exception?.description ?? details.text)
        } else if (method === 'Page.loadEventFired') loaded++
        else if (method === 'Page.backForwardCacheNotUsed') notCached.push(JSON.stringify(params))
      })
      await send('Runtime.enable', {}, sessionId)
      await send('Page.enable', {}, sessionId)
      const page: CdpPage = {
        errors,
        notCached,
        send: (method, params, timeout) => send(method, params, sessionId, timeout),
        async evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg?: A) {
          const expression = `(${fn.toString()})(${arg === undefined ? '' : JSON.stringify(arg)})`
          const { result, exceptionDetails } = await send<{
            result: { value?: unknown }
            exceptionDetails?: { exception?: { description?: string }; text: string }
          }>('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, sessionId)
          if (exceptionDetails) throw new Error(`in the page: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`)
          return result.value as R
        },
        async goto(url) {
          const before = loaded
          const { errorText } = await send<{ errorText?: string }>('Page.navigate', { url }, sessionId)
          if (errorText) throw new Error(`navigating to ${url} failed: ${errorText}`)
          const deadline = Date.now() + 5000
          while (loaded === before) {
            if (Date.now() > deadline) throw new Error(`${url} did not load within 5 s`)
            await sleep(10)
          }
        },
        async close() {
          await send('Target.closeTarget', { targetId })
          listeners.delete(sessionId)
        },
      }
      return page
    },
    async close() {
      ws.close()
      await kill()
    },
  }
}
