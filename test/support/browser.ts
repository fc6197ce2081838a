/**
 * Headless Chromium for the browser tests, driven by playwright-core.
 *
 * `browserSuite()` (call it at the top of a test file) connects to the Chromium that the
 * project's globalSetup (browser-global.ts) launched for all files, gives each test fresh
 * contexts and pages, and after each test runs every cleanup it was given (pages, servers,
 * gates) in reverse order, each bounded. A missing browser fails every test with a message
 * that says how to install it: browser tests are never skipped.
 */
import { type Browser, type BrowserContext, type BrowserContextOptions, chromium, type Page, type Response } from 'playwright-core'
import { afterAll, afterEach, beforeAll, inject } from 'vitest'
import type { SocketState, TetherSocket, TetherSocketOptions } from '../../src/index.js'
import { launchBrowser } from './chromium.js'
import { withTimeout } from './servers.js'

export { CHROMIUM_ARGS, chromiumPath, launchBrowser } from './chromium.js'
export { waitFor, withTimeout } from './servers.js'

/** The shared browser of test/support/browser-global.ts, or a new one when there is none (a file run on its own config). */
async function connectBrowser(): Promise<Browser> {
  const error = inject('chromiumError')
  if (error) throw new Error(error)
  const endpoint = inject('chromiumEndpoint')
  return endpoint ? chromium.connect(endpoint, { timeout: 10000 }) : launchBrowser()
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The ws endpoint of the shared Chromium (set by browser-global.ts). */
    chromiumEndpoint?: string
    /** Why the shared Chromium could not be launched. */
    chromiumError?: string
  }
}

/** A page with the uncaught errors (exceptions, unhandled rejections) it reported. */
export interface TestPage {
  page: Page
  context: BrowserContext
  /** `pageerror`s, as `name: message`. */
  errors: string[]
}

export interface BrowserSuite {
  /** A page in a fresh context, closed after the test. */
  open(options?: BrowserContextOptions): Promise<TestPage>
  /** Runs `fn` after the current test, before the cleanups registered earlier (bounded, 5 s). */
  defer(fn: () => unknown): void
}

/** Connects to the shared browser (beforeAll) and cleans up after every test; call at the top level of a test file. */
export function browserSuite(): BrowserSuite {
  let browser: Browser | undefined
  let launchError: unknown
  const cleanups: (() => unknown)[] = []

  // A launch failure is not thrown here (vitest would report the tests as skipped) but by
  // open(), so that every test of the file fails with it.
  beforeAll(async () => {
    try {
      browser = await connectBrowser()
    } catch (error) {
      launchError = error
    }
  })

  afterEach(async () => {
    const failures: unknown[] = []
    while (cleanups.length) {
      const fn = cleanups.pop()!
      try {
        await withTimeout(Promise.resolve().then(fn), 5000, 'a browser-test cleanup did not finish')
      } catch (error) {
        failures.push(error)
      }
    }
    if (failures.length) throw failures[0]
  })

  afterAll(async () => {
    if (browser) await withTimeout(browser.close(), 10000, 'Chromium did not close')
  })

  const suite: BrowserSuite = {
    defer: (fn) => {
      cleanups.push(fn)
    },
    async open(options) {
      if (!browser) throw launchError ?? new Error('the browser was not launched (browserSuite() must be called at the top of the file)')
      const context = await browser.newContext(options)
      suite.defer(() => context.close())
      context.setDefaultTimeout(10000)
      const page = await context.newPage()
      const errors: string[] = []
      page.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`))
      return { page, context, errors }
    },
  }
  return suite
}

/** What test/support/browser-harness.js records in the page (`window.harness`). */
export interface Harness {
  build: 'iife' | 'iife-prod' | 'esm'
  sock: TetherSocket<unknown, unknown> | undefined
  received: unknown[]
  states: SocketState[]
  closes: { code: number; willReconnect: boolean; at: number }[]
  sessions: { id: string; previous: string | null }[]
  errors: string[]
  reconnecting: { attempt: number; delay: number; waitingFor: 'delay' | 'network'; at: number }[]
  opens: number[]
  acked: unknown[]
  failed: { value: unknown; error: string }[]
  /** Date.now() of every WebSocket the client constructed. */
  attempts: number[]
  /** The window's online/offline events, with `navigator.onLine` at that moment. */
  network: { type: 'online' | 'offline'; at: number; onLine: boolean }[]
  /** Creates the socket: `url` (default: `path`, '/ws', on the page's origin) and serializable options. */
  start(
    options?: { url?: string; path?: string } & Omit<TetherSocketOptions, 'WebSocket' | 'onOpen' | 'serialize' | 'deserialize'>,
  ): SocketState
  send(value: unknown): Promise<void>
  sendRange(from: number, to: number): void
  stream(from: number, to: number, gap?: number): Promise<void>
  request(value: unknown, timeout?: number): Promise<unknown>
  summary(): unknown
}

declare global {
  interface Window {
    harness: Harness
    esmExports?: string[]
  }
}

/** Loads `url` and waits until the page's harness exists; on failure, says what the page reported while loading. */
export async function openHarness(page: Page, url: string): Promise<void> {
  const problems: string[] = []
  const onError = (error: Error) => problems.push(`${error.name}: ${error.message}`)
  const onResponse = (response: Response) => {
    if (response.status() >= 400 && !response.url().endsWith('/favicon.ico'))
      problems.push(`HTTP ${response.status()} for ${response.url()}`)
  }
  page.on('pageerror', onError)
  page.on('response', onResponse)
  try {
    await page.goto(url)
    await waitInPage(page, () => typeof window.harness === 'object', 'the harness to load')
  } catch (error) {
    throw new Error(`${(error as Error).message}\n  while loading ${url}: ${problems.join('; ') || 'no page errors'}`)
  } finally {
    page.off('pageerror', onError)
    page.off('response', onResponse)
  }
}

/** What a truthy value of type T can be. */
export type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>

/**
 * Waits until `predicate(arg)` (run in the page) returns a truthy value, and returns it. On
 * timeout (default 5 s) the error says what was awaited and where the page's socket stands.
 */
export async function waitInPage<T, A = undefined>(
  page: Page,
  predicate: (arg: A) => T,
  description: string,
  options: { timeout?: number; arg?: A } = {},
): Promise<Truthy<T>> {
  const timeout = options.timeout ?? 5000
  try {
    // Only serializable arguments are used here, for which playwright's Unboxed<A> is A.
    const handle = await page.waitForFunction(predicate as (arg: unknown) => T, options.arg, { timeout, polling: 20 })
    return (await handle.jsonValue()) as Truthy<T>
  } catch (error) {
    const summary = await page
      .evaluate(() => (typeof window.harness === 'object' ? window.harness.summary() : 'no harness'))
      .catch((e: Error) => `page unavailable: ${e.message}`)
    throw new Error(
      `waiting in the page for ${description} failed: ${(error as Error).message.split('\n')[0]}\n  page: ${JSON.stringify(summary)}`,
    )
  }
}

/** 0, 1, …, n-1 shifted by `from`. */
export const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i)

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
