/**
 * Tabs of one origin in Node for the `shared` option: each page of support/pages.ts gets its own
 * `navigator.locks` (the origin's in-memory lock manager) and BroadcastChannel class (Node's, which
 * reaches every channel of the same name in this process), read by the socket when it is made.
 * `crash()` does what a closed or crashed tab does: its connections drop, its locks are released,
 * its store writes nothing more, and its channels go silent.
 */
import type { SharedInfo, TetherSocketOptions } from '../../src/index.js'
import type { Origin, Page } from './pages.js'
import { type Recorder, tetherClient } from './tether.js'

/** A page with shared sockets. */
export interface SharedPage {
  readonly page: Page
  /** A socket of this page with `shared: true` (and the page's store), recorded; its `shared` events too. */
  open<In = unknown, Out = unknown>(
    url: string,
    options?: TetherSocketOptions<In, Out>,
  ): ReturnType<typeof tetherClient<In, Out>> & Recorder<In> & { parts: SharedInfo[] }
  /** The page goes away without closing anything. */
  crash(): void
}

/** Runs `make` with the page's platform as the globals a socket reads when it is made. */
function withGlobals<T>(globals: Record<string, unknown>, make: () => T): T {
  const saved = Object.keys(globals).map((key) => [key, Object.getOwnPropertyDescriptor(globalThis, key)] as const)
  for (const [key, value] of Object.entries(globals)) Object.defineProperty(globalThis, key, { value, configurable: true, writable: true })
  try {
    return make()
  } finally {
    for (const [key, descriptor] of saved) {
      if (descriptor) Object.defineProperty(globalThis, key, descriptor)
      else delete (globalThis as Record<string, unknown>)[key]
    }
  }
}

/** Every channel made by a page, closed at cleanup (an open BroadcastChannel keeps Node running). */
const everyChannel = new Set<BroadcastChannel>()

/** Closes what the pages left open. */
export function closeChannels(): void {
  for (const channel of everyChannel) channel.close()
  everyChannel.clear()
}

/** A page in `tab` (a new tab by default) of `origin`, whose sockets share. */
export function sharedPage(origin: Origin, tab = origin.tab(), { locks = true }: { locks?: boolean } = {}): SharedPage {
  const page = origin.page(tab)
  const channels = new Set<BroadcastChannel>()
  let alive = true
  class PageChannel extends BroadcastChannel {
    constructor(name: string) {
      super(name)
      channels.add(this)
      everyChannel.add(this)
    }
    override postMessage(message: unknown): void {
      if (alive) super.postMessage(message)
    }
  }
  return {
    page,
    open: (url, options = {}) =>
      withGlobals({ navigator: locks ? { locks: page.locks } : {}, BroadcastChannel: PageChannel, sessionStorage: tab }, () => {
        const client = tetherClient(url, { WebSocket: page.WebSocket, persist: page.store, shared: true, ...options })
        const parts: SharedInfo[] = []
        client.sock.on('shared', (part) => parts.push(part))
        return { ...client, parts }
      }),
    crash: () => {
      alive = false
      for (const channel of channels) channel.close()
      page.crash()
    },
  }
}
