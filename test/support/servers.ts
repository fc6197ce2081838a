/**
 * Real `ws` servers on 127.0.0.1 for integration tests, and bounded waiting.
 *
 * Every server started here is remembered until `closeAllServers()` (call it from
 * `afterEach`), and every socket handed to `track()` is closed by `closeAllSockets()`.
 * Nothing here waits without a deadline.
 */
import { createServer, type Server as HttpServer, type IncomingMessage } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { type RawData, type ServerOptions, WebSocket, WebSocketServer } from 'ws'

/** One message a server received. */
export interface ReceivedMessage {
  /** Text frames as strings, binary frames as Buffers. */
  data: string | Buffer
  isBinary: boolean
  /** Which connection of this server it came on (0 for the first). */
  connection: number
}

/** A connection the server accepted. */
export interface ServerConnection {
  index: number
  socket: WebSocket
  /** The request URL of the upgrade (path and query). */
  url: string
  /** The subprotocol the server selected ('' for none). */
  protocol: string
  /** Set once the connection ended: the close code and reason the server saw. */
  closed?: { code: number; reason: string }
}

export interface StartOptions {
  /** Port to bind; 0 (default) picks a free one. */
  port?: number
  /** Passed to `ws`: refuse handshakes (`cb(false, 401)`) or accept them. */
  verifyClient?: ServerOptions['verifyClient']
  /** Called for every accepted connection, after the server's own bookkeeping. */
  onConnection?: (connection: ServerConnection, request: IncomingMessage) => void
  /** How long to keep retrying when the port is still in use (TIME_WAIT, or a slow close). Default 3000 ms. */
  bindTimeout?: number
}

/** A running test server. */
export interface TestServer {
  readonly port: number
  /** `ws://127.0.0.1:<port>` */
  readonly url: string
  readonly wss: WebSocketServer
  readonly http: HttpServer
  /** Every message received, in arrival order, over all connections. */
  readonly messages: ReceivedMessage[]
  /** Every connection accepted, in order. */
  readonly connections: ServerConnection[]
  /** Upgrade requests seen (accepted or refused), as request URLs. */
  readonly upgrades: { url: string; at: number }[]
  /** Text messages received, in order. */
  texts(): string[]
  /** Connections currently open. */
  openConnections(): ServerConnection[]
  /** Sends to every open connection. */
  broadcast(data: string | Buffer): void
  /** Drops every client at once (no close frame, as a crash would). */
  terminateClients(): void
  /** Terminates every client and closes the server: a server that died. */
  kill(): Promise<void>
  /** Whether kill() or close() has run. */
  readonly stopped: boolean
}

const servers = new Set<TestServer>()
const sockets = new Set<{ close(): unknown }>()

/** Listens on 127.0.0.1:`port`; rejects with the listen error (such as EADDRINUSE). */
export function listen(http: HttpServer, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      http.off('listening', onListening)
      reject(error)
    }
    const onListening = () => {
      http.off('error', onError)
      resolve()
    }
    http.once('error', onError)
    http.once('listening', onListening)
    http.listen(port, '127.0.0.1')
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts a `ws` server on 127.0.0.1. With a fixed `port`, retries briefly while that port is still in use. */
export async function startServer(options: StartOptions = {}): Promise<TestServer> {
  const requested = options.port ?? 0
  const deadline = Date.now() + (options.bindTimeout ?? 3000)
  const http = createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' })
    res.end('WebSocket only')
  })
  const tcp = new Set<Socket>()
  http.on('connection', (socket) => {
    tcp.add(socket)
    socket.on('close', () => tcp.delete(socket))
  })
  for (;;) {
    try {
      await listen(http, requested)
      break
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'EADDRINUSE' || Date.now() > deadline) {
        throw new Error(`test server could not listen on 127.0.0.1:${requested}: ${(error as Error).message}`)
      }
      await sleep(25)
    }
  }
  const port = (http.address() as AddressInfo).port
  const upgrades: TestServer['upgrades'] = []
  http.on('upgrade', (req: IncomingMessage) => upgrades.push({ url: req.url ?? '', at: Date.now() }))
  const wss = new WebSocketServer({ server: http, verifyClient: options.verifyClient })
  const messages: ReceivedMessage[] = []
  const connections: ServerConnection[] = []
  wss.on('connection', (socket, request) => {
    const connection: ServerConnection = { index: connections.length, socket, url: request.url ?? '', protocol: socket.protocol }
    connections.push(connection)
    socket.on('error', () => {}) // a client vanishing mid-frame is part of these tests
    socket.on('message', (data: RawData, isBinary: boolean) => {
      const buffer = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
      messages.push({ data: isBinary ? buffer : buffer.toString('utf8'), isBinary, connection: connection.index })
    })
    socket.on('close', (code, reason) => {
      connection.closed = { code, reason: reason.toString('utf8') }
    })
    options.onConnection?.(connection, request)
  })

  let stopped = false
  const server: TestServer = {
    port,
    url: `ws://127.0.0.1:${port}`,
    wss,
    http,
    messages,
    connections,
    upgrades,
    get stopped() {
      return stopped
    },
    texts: () => messages.filter((m) => !m.isBinary).map((m) => m.data as string),
    openConnections: () => connections.filter((c) => c.socket.readyState === WebSocket.OPEN),
    broadcast(data) {
      for (const c of connections) if (c.socket.readyState === WebSocket.OPEN) c.socket.send(data)
    },
    terminateClients() {
      for (const client of wss.clients) client.terminate()
    },
    async kill() {
      if (stopped) return
      stopped = true
      servers.delete(server)
      for (const client of wss.clients) client.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      const closed = new Promise<void>((resolve) => http.close(() => resolve()))
      http.closeAllConnections()
      for (const socket of tcp) socket.destroy()
      await withTimeout(closed, 3000, `test server on port ${port} did not close`)
    },
  }
  servers.add(server)
  return server
}

/** Starts a new server on the port of one that was stopped (killing it first if it still runs). */
export async function restartServer(previous: TestServer, options: Omit<StartOptions, 'port'> = {}): Promise<TestServer> {
  if (!previous.stopped) await previous.kill()
  return startServer({ ...options, port: previous.port })
}

/** Remembers a client (anything with `close()`) so that `closeAllSockets()` closes it. Returns it. */
export function track<T extends { close(): unknown }>(socket: T): T {
  sockets.add(socket)
  return socket
}

/** Closes every tracked client, waiting (bounded) for each close to finish. */
export async function closeAllSockets(timeoutMs = 3000): Promise<void> {
  const all = [...sockets]
  sockets.clear()
  await Promise.all(
    all.map((socket) =>
      withTimeout(
        Promise.resolve()
          .then(() => socket.close())
          .catch(() => {}),
        timeoutMs,
        'a client socket did not finish closing',
      ),
    ),
  )
}

/** Kills every server started and not yet stopped. */
export async function closeAllServers(): Promise<void> {
  const all = [...servers]
  servers.clear()
  await Promise.all(all.map((server) => server.kill()))
}

/** For `afterEach`: clients first (so they see a normal close), then servers. */
export async function cleanup(): Promise<void> {
  try {
    await closeAllSockets()
  } finally {
    await closeAllServers()
  }
}

/** Rejects with `message` when `promise` has not settled within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} (after ${ms} ms)`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Polls `predicate` every few milliseconds until it returns a truthy value, and returns that
 * value. Throws after `timeoutMs` with `description` (and the last thrown error, if any).
 */
export async function waitFor<T>(predicate: () => T, timeoutMs = 3000, description = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = predicate()
      if (value) return value as NonNullable<T>
      lastError = undefined
    } catch (error) {
      lastError = error
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : ''
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${detail}`)
    }
    await sleep(5)
  }
}
