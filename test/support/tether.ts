/**
 * Helpers for integration tests of tether mode against the reference server on 127.0.0.1:
 * servers and clients that `cleanupTether()` (call it from `afterEach`) tears down, a way to
 * reach the server's live connections, a pausable TCP proxy, and a free-port finder.
 * Every wait is bounded.
 */
import { createServer as createNetServer, type Server as NetServer, connect as netConnect, type Socket } from 'node:net'
import { WebSocket } from 'ws'
import { TetherSocket } from '../../src/client/socket.js'
import type { SessionInfo } from '../../src/client/wire/tether.js'
import type { SocketState, TetherError, TetherSocketOptions } from '../../src/index.js'
import { createTetherServer, type TetherServer, type TetherServerOptions } from '../../src/server/index.js'
import { withTimeout } from './servers.js'

export { waitFor, withTimeout } from './servers.js'

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Small delays so reconnects happen within a test's time. */
export const fast = { minDelay: 10, maxDelay: 100 }

const servers = new Set<TetherServer>()
const clients = new Set<TetherSocket<any, any>>()
const disposers: (() => unknown)[] = []

/** Runs `fn` (bounded) during `cleanupTether()`: for ad-hoc servers, proxies and raw clients. */
export function defer(fn: () => unknown): void {
  disposers.push(fn)
}

/** A reference server on 127.0.0.1 with a free port, closed by `cleanupTether()`. */
export async function startTether(options: TetherServerOptions = {}): Promise<TetherServer> {
  const server = await createTetherServer({ port: 0, host: '127.0.0.1', ...options })
  servers.add(server)
  return server
}

/** The server's accepted tether connections (a private field, read for fault injection). */
export function serverSockets(server: TetherServer): WebSocket[] {
  return [...(server as unknown as { sockets: Set<WebSocket> }).sockets]
}

/** Drops every connection of the server without a close frame, as a network failure would. */
export function killConnections(server: TetherServer): number {
  const all = serverSockets(server)
  for (const ws of all) ws.terminate()
  return all.length
}

/** The TCP socket under a `ws` WebSocket (to pause reading, as a hung peer would). */
export function tcpSocketOf(ws: WebSocket): Socket {
  return (ws as unknown as { _socket: Socket })._socket
}

export const urlOf = (server: { port: number }, path = '') => `ws://127.0.0.1:${server.port}${path}`

/** What a client saw, recorded from its events. */
export interface Recorder<In> {
  messages: In[]
  errors: TetherError[]
  states: SocketState[]
  sessions: SessionInfo[]
  closes: { code: number; reason: string; willReconnect: boolean }[]
  opens: number
}

/** A tether-mode TetherSocket using `ws`, with small reconnect delays, recorded and cleaned up. */
export function tetherClient<In = unknown, Out = unknown>(
  url: ConstructorParameters<typeof TetherSocket>[0],
  options: TetherSocketOptions<In, Out> = {},
): { sock: TetherSocket<In, Out> } & Recorder<In> {
  const sock = new TetherSocket<In, Out>(url, { WebSocket, reconnect: fast, ...options })
  clients.add(sock)
  const rec: Recorder<In> = { messages: [], errors: [], states: [sock.state], sessions: [], closes: [], opens: 0 }
  sock.on('message', (m) => rec.messages.push(m))
  sock.on('error', (e) => rec.errors.push(e))
  sock.on('state', (s) => rec.states.push(s))
  sock.on('session', (s) => rec.sessions.push(s))
  sock.on('close', (c) => rec.closes.push({ code: c.code, reason: c.reason, willReconnect: c.willReconnect }))
  sock.on('open', () => rec.opens++)
  return { sock, ...rec }
}

/** A port nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const probe = createNetServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as { port: number }
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return port
}

/** A TCP proxy to `targetPort` that can stop forwarding (without closing) or cut everything. */
export interface Proxy {
  readonly port: number
  /** Client-side sockets accepted so far. */
  readonly accepted: number
  /** Stop forwarding, both ways, on the connections open now (later ones flow); they stay open but silent. */
  freeze(): void
  /** Forward again on the frozen connections. */
  thaw(): void
  /** Destroys every connection (new ones are still accepted). */
  cutAll(): void
  close(): Promise<void>
}

/** `target`: the port to forward to, or a function that says it for each new connection (a switch between nodes). */
export async function startProxy(target: number | (() => number)): Promise<Proxy> {
  const targetPort = typeof target === 'number' ? () => target : target
  const pairs = new Set<[Socket, Socket]>()
  const frozen = new Set<[Socket, Socket]>()
  let accepted = 0
  const server: NetServer = createNetServer((client) => {
    accepted++
    const upstream = netConnect(targetPort(), '127.0.0.1')
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      frozen.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  const proxy: Proxy = {
    port,
    get accepted() {
      return accepted
    },
    freeze() {
      for (const pair of pairs) {
        const [a, b] = pair
        frozen.add(pair)
        a.unpipe(b)
        b.unpipe(a)
        a.pause()
        b.pause()
      }
    },
    thaw() {
      for (const pair of frozen) {
        const [a, b] = pair
        a.pipe(b)
        b.pipe(a)
      }
      frozen.clear()
    },
    cutAll() {
      for (const [a, b] of [...pairs]) {
        a.destroy()
        b.destroy()
      }
    },
    close() {
      proxy.cutAll()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  defer(() => proxy.close())
  return proxy
}

/**
 * For `afterEach`: closes clients, then deferred resources, then servers; each step bounded.
 * Server connections are terminated first, so a paused (hung) connection cannot hold `close()`.
 */
export async function cleanupTether(): Promise<void> {
  const all = [...clients]
  clients.clear()
  await Promise.all(
    all.map((sock) =>
      withTimeout(
        Promise.resolve()
          .then(() => sock.close())
          .catch(() => {}),
        2000,
        'a TetherSocket did not finish closing',
      ).catch(() => {}),
    ),
  )
  const deferred = disposers.splice(0)
  await Promise.all(
    deferred.map((fn) =>
      withTimeout(
        Promise.resolve()
          .then(fn)
          .catch(() => {}),
        2000,
        'a deferred cleanup did not finish',
      ).catch(() => {}),
    ),
  )
  const running = [...servers]
  servers.clear()
  await Promise.all(
    running.map((server) => {
      killConnections(server)
      return withTimeout(server.close(), 3000, 'a tether server did not close').catch(() => {})
    }),
  )
}
