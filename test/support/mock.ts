/**
 * Shared helpers for the unit tests of `TetherSocket` in raw mode: mock-socket servers on
 * unique URLs that record what they see, fake-timer flushing, stub WebSocket classes, and
 * automatic cleanup of every socket and server a test created.
 */
import { type Client, WebSocket as MockWebSocket, Server } from 'mock-socket'
import { afterEach, beforeEach, expect, vi } from 'vitest'
import { TetherSocket, type TetherSocketOptions, type WebSocketConstructor } from '../../src/index.js'

let counter = 0

/** The platform's setTimeout, captured before any test installs fake timers. */
const realSetTimeout = globalThis.setTimeout

/** A URL no other test uses, so mock servers never see another test's clients. */
export function uniqueUrl(name = 'socket'): string {
  counter++
  return `ws://mock.test/${name}-${counter}`
}

/** A close as the server saw it. */
export interface ServerSawClose {
  code: number
  reason: string
}

/** A mock-socket server that records connections, offered subprotocols and received messages. */
export interface MockServer {
  readonly url: string
  readonly server: Server
  /** Every message received, from every connection, in arrival order. */
  readonly received: unknown[]
  /** Every accepted connection, in order. */
  readonly connections: Client[]
  /** The subprotocols the client offered, per connection attempt that reached the server. */
  readonly offered: string[][]
  /** Closes initiated by clients, as the server saw them. */
  readonly closes: ServerSawClose[]
  /** Clients currently connected. */
  open(): Client[]
  stop(): void
}

export interface MockServerOptions {
  /** Called for every accepted connection (index counts from 0). */
  onConnection?: (client: Client, index: number) => void
  /** The subprotocol the server selects; default: the first offered, or none. */
  selectProtocol?: (offered: string[]) => string
}

const servers = new Set<MockServer>()
const sockets = new Set<TetherSocket<any, any>>()

/** Starts a mock server on a unique URL (or `url`). Stopped automatically after the test. */
export function createServer(options: MockServerOptions = {}, url = uniqueUrl()): MockServer {
  const received: unknown[] = []
  const connections: Client[] = []
  const offered: string[][] = []
  const closes: ServerSawClose[] = []
  const server = new Server(url, {
    mock: false,
    selectProtocol: (protocols: string[]) => {
      offered.push([...protocols])
      return options.selectProtocol ? options.selectProtocol(protocols) : (protocols[0] ?? '')
    },
  })
  server.on('connection', (client) => {
    connections.push(client)
    client.on('message', (data) => received.push(data))
    client.on('close', ((event: CloseEvent) => {
      closes.push({ code: event.code, reason: event.reason })
    }) as never)
    options.onConnection?.(client, connections.length - 1)
  })
  let stopped = false
  const mock: MockServer = {
    url,
    server,
    received,
    connections,
    offered,
    closes,
    open: () => connections.filter((c) => c.readyState === MockWebSocket.OPEN),
    stop: () => {
      if (stopped) return
      stopped = true
      servers.delete(mock)
      server.stop()
    },
  }
  servers.add(mock)
  return mock
}

/**
 * A mock server that speaks just enough tether.v1: it selects the subprotocol, answers each
 * hello with a welcome for session `S` (no `pa`: acks go alone), then runs `afterWelcome`; it
 * answers nothing else (no pong, no ack).
 */
export function createTetherMockServer(afterWelcome: (client: Client) => void = () => {}): MockServer {
  return createServer({
    selectProtocol: () => 'tether.v1',
    onConnection: (client) => {
      client.on('message', (data) => {
        if (JSON.parse(String(data)).t !== 'hello') return
        client.send(JSON.stringify({ t: 'welcome', sid: 'S', resumed: false, ack: 0, max: 1 << 20 }))
        afterWelcome(client)
      })
    },
  })
}

/** A server that accepts every connection and closes it at once with `code` (default 1000). */
export function createDroppingServer(code = 1000, reason = ''): MockServer {
  return createServer({ onConnection: (client) => client.close({ code, reason, wasClean: code === 1000 }) })
}

/** A raw-mode TetherSocket on mock-socket's WebSocket (not a raw WebSocket). Closed automatically after the test. */
export function rawSocket<In = unknown, Out = unknown>(
  url: ConstructorParameters<typeof TetherSocket>[0],
  options: TetherSocketOptions<In, Out> = {},
): TetherSocket<In, Out> {
  const sock = new TetherSocket<In, Out>(url, { mode: 'raw', WebSocket: MockWebSocket, ...options })
  sockets.add(sock)
  return sock
}

/** Lets fake time pass (mock-socket delivers every event through a 4 ms timer). */
export async function flush(ms = 10): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms)
}

/** Jumps from timer to timer until `condition` holds; fails after `limit` ms of fake time. */
export async function advanceUntil(condition: () => boolean, limit = 600_000): Promise<void> {
  const end = Date.now() + limit
  while (!condition()) {
    if (Date.now() >= end || vi.getTimerCount() === 0) {
      throw new Error(`condition still false after ${limit} ms of fake time (${vi.getTimerCount()} timers pending)`)
    }
    await vi.advanceTimersToNextTimerAsync()
  }
}

/**
 * Records `unhandledRejection` events from now on. `check()` waits a real macrotask (Node
 * reports unhandled rejections after the microtask queue drains), then asserts there were none.
 */
export function watchUnhandledRejections(): { check(): Promise<void> } {
  const unhandled = vi.fn()
  process.on('unhandledRejection', unhandled)
  return {
    async check() {
      await microtasks(50)
      await new Promise((resolve) => realSetTimeout(resolve, 5))
      process.off('unhandledRejection', unhandled)
      expect(unhandled).not.toHaveBeenCalled()
    },
  }
}

/** Runs queued microtasks without letting any fake time pass. */
export async function microtasks(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve()
}

/** Whether a promise has settled, checked without letting time pass. */
export async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  promise.then(
    () => {
      done = true
    },
    () => {
      done = true
    },
  )
  await microtasks()
  return done
}

/** The rejection of a promise (fails the test when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected the promise to reject, but it resolved')
}

/** One WebSocket construction seen by {@link countingWebSocket}. */
export interface Construction {
  url: string
  protocols: string | string[] | undefined
  /** Fake time at construction. */
  at: number
  /** The WebSocket itself. */
  socket: MockWebSocket
}

/** mock-socket's WebSocket, recording every construction (counts attempts that reach the network, even without a server). */
export function countingWebSocket(): { WebSocket: WebSocketConstructor; created: Construction[] } {
  const created: Construction[] = []
  class Counting extends MockWebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols)
      created.push({ url: String(url), protocols, at: Date.now(), socket: this })
    }
  }
  return { WebSocket: Counting, created }
}

/** A WebSocket that never opens (a server that never answers the handshake); close() aborts it with a 1006 close event. */
export function hangingWebSocket(): { WebSocket: WebSocketConstructor; instances: { url: string; closed: number[] }[] } {
  const instances: { url: string; closed: number[] }[] = []
  class Hanging {
    readyState = 0
    protocol = ''
    binaryType = 'blob'
    onopen: (() => void) | null = null
    onmessage: ((event: unknown) => void) | null = null
    onclose: ((event: unknown) => void) | null = null
    onerror: (() => void) | null = null
    private readonly record: { url: string; closed: number[] }
    constructor(url: string) {
      this.record = { url, closed: [] }
      instances.push(this.record)
    }
    send(): void {
      throw new Error('not open')
    }
    close(code?: number): void {
      this.record.closed.push(code ?? 1005)
      if (this.readyState === 3) return
      this.readyState = 3
      // like a browser aborting a handshake: the close event follows asynchronously
      setTimeout(() => this.onclose?.({ code: 1006, reason: '', wasClean: false }), 0)
    }
  }
  return { WebSocket: Hanging, instances }
}

/** Collects a socket's events of one kind. */
export function collect<T extends unknown[]>(sock: TetherSocket<any, any>, event: string): T[] {
  const seen: T[] = []
  sock.on(event as 'error', ((...args: T) => seen.push(args)) as never)
  return seen
}

/**
 * Installs fake timers before each test and, after it, closes every socket and stops every
 * server the test created, drains mock-socket's timers and restores mocks.
 */
export function useMockEnvironment(): void {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(async () => {
    for (const sock of sockets) {
      sock.removeAllListeners()
      sock.on('error', () => {})
      void sock.close()
    }
    sockets.clear()
    await vi.advanceTimersByTimeAsync(20)
    for (const server of [...servers]) server.stop()
    vi.clearAllTimers()
    vi.useRealTimers()
    vi.restoreAllMocks()
  })
}
