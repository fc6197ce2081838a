/**
 * The tether.v1 reference server for Node, built on `ws`: sessions that survive reconnects,
 * exactly-once delivery both ways, request handlers, and the hardening a public endpoint
 * needs (origin allowlist, authentication, payload limit, heartbeat).
 *
 * @example
 * ```ts
 * import { createTetherServer } from 'tethersocket/server'
 * const server = await createTetherServer({ port: 8080 })
 * server.on('message', (data, session) => session.send({ echo: data }))
 * server.onRequest(async (data) => ({ time: Date.now() }))
 * ```
 * @module
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Duplex } from 'node:stream'
import { EventEmitter } from 'eventemitter3'
import { type WebSocket, WebSocketServer } from 'ws'
import { ClosedError } from '../errors.js'
import { encodePayload } from '../protocol/frames.js'
import type { RateLimit } from './limits.js'
import { RequestError, Session } from './sessions.js'
import { serveStatic } from './static.js'
import { attachConnection, type ConnectionHooks, type HeartbeatCheck } from './ws.js'

export type { RateLimit } from './limits.js'
export { RequestError, Session } from './sessions.js'

/** Options of {@link createTetherServer}. */
export interface TetherServerOptions {
  /** Port to listen on (standalone mode; 0 picks a free one). Default `8080`. */
  port?: number
  /** Host to bind (standalone mode). Default `'127.0.0.1'`. */
  host?: string
  /** An existing HTTP(S) server to attach to, instead of listening on a port. */
  server?: Server | HttpsServer
  /**
   * Only upgrades on this path (the request target before any `?`) are handled. Default: every path.
   * Attached to your server, other paths are left to your other upgrade handlers; standalone, they get 404.
   */
  path?: string
  /** How long a disconnected session is kept for resume, in ms. Default `120000`. */
  sessionTtl?: number
  /** Largest frame accepted from a client, in bytes; bigger closes the connection with 1009. Default `1048576`. */
  maxPayload?: number
  /** Most unacknowledged messages held per session; `session.send()` beyond rejects. Default `10000`. */
  maxQueue?: number
  /** Origins allowed to connect (the `Origin` header), or a predicate. Others are refused with HTTP 403. Default: all. */
  allowedOrigins?: string[] | ((origin: string | undefined) => boolean)
  /**
   * Decides who may connect, per upgrade request. Return a principal id (string), or `true`
   * for an anonymous client; `false` or nothing refuses with close code 4401 (clients stop).
   * A throw or rejection means "cannot decide now" (the auth backend is down): close 1013, and
   * clients come back later. A session can only be resumed by the principal that created it.
   * @example
   * ```ts
   * authenticate: async (req) => (await sessions.verify(cookie(req, 'sid')))?.userId ?? false
   * ```
   */
  authenticate?: (request: IncomingMessage) => string | boolean | undefined | Promise<string | boolean | undefined>
  /**
   * Incoming messages, requests and pings per session: `rate` per second sustained (finite,
   * above 0), `burst` at once (at least 1). Every other frame (acks, frames of unknown types)
   * costs a token too, charged before the frame is decoded. A client over it is slowed down, not
   * disconnected: the server delivers what the limit allows and holds the rest, delivering it in order at
   * `rate` (acknowledging as it goes; a pong may come late). It goes on reading meanwhile, so the
   * client's acks and its close are handled at once; reading stops only while
   * `max(4 × maxPayload, 1 MiB)` of frames are held, until less than half of that is. It holds
   * only what it can deliver within 10 s: work beyond that is refused, and once the held work is
   * delivered the connection is closed with 1013 (Try Again Later); the client resends what was
   * not acknowledged when it resumes, so nothing is lost. Below a `rate` of 0.1/s, work over a
   * drained bucket is thus refused at once. Held work is released every 10 ms or so, so the
   * burst in effect is at least `rate / 100`. `false` disables. Default `{ rate: 1000, burst: 10000 }`.
   */
  rateLimit?: RateLimit | false
  /**
   * Most requests per session awaiting the handler's reply, announced to clients in `welcome`
   * (the reference client holds further requests until replies come). A client that sends more
   * is closed with 1013 and resumes later. Default `100`.
   */
  maxPendingRequests?: number
  /** A connection that has not sent its `hello` within this many ms is closed with 1002. Default `5000`. */
  helloTimeout?: number
  /**
   * Protocol-level ping to every connection at this interval in ms. One that answered neither with
   * a pong nor with ack progress since the previous beat is terminated (frames it merely sends do
   * not count); one that pongs but leaves what it received unacknowledged for an interval is closed
   * with 1013. `0` disables. Default `30000`.
   */
  heartbeatInterval?: number
  /** A folder served over plain HTTP on the same port (standalone mode), e.g. the demo page. */
  static?: string
}

/** Events of a {@link TetherServer}. */
export interface TetherServerEvents {
  /** A new session (not a resumed one). */
  session: (session: Session) => void
  /** A session's client reconnected and resumed it. */
  resume: (session: Session) => void
  /**
   * A session's connection closed; the session waits `sessionTtl` for a resume. Not emitted for
   * a connection replaced by a newer one of the same session (a resume from elsewhere: `resume`
   * says so, and the session stays connected); when a session ends while connected (`server.close()`,
   * `session.end()`), `disconnect` comes before `expire`.
   */
  disconnect: (session: Session, code: number) => void
  /** A session ended (expired or closed) and was freed. */
  expire: (session: Session) => void
  /** A client's `send()`: exactly once per message, in order per session. */
  message: (data: unknown, session: Session) => void
  /** A handler threw, or a connection failed in a way worth logging. The server goes on. */
  error: (error: Error) => void
}

/** Answers a client's `request()`. Throw `RequestError` to answer with an error the client sees. */
export type RequestHandler = (data: unknown, session: Session) => unknown

/** A running tether.v1 server. Create it with {@link createTetherServer}. */
export class TetherServer extends EventEmitter<TetherServerEvents> {
  /** Sessions by id, connected or waiting for a resume. */
  readonly sessions = new Map<string, Session>()
  private handler: RequestHandler | undefined
  private readonly wss: WebSocketServer
  private readonly sockets = new Set<WebSocket>()
  private readonly unanswered = new Set<WebSocket>()
  /** Each connection's heartbeat check (ws.ts). */
  private readonly checks = new WeakMap<WebSocket, HeartbeatCheck>()
  private readonly heartbeat: ReturnType<typeof setInterval> | undefined
  private closing: Promise<void> | undefined

  /** @internal use {@link createTetherServer} */
  constructor(
    private readonly http: Server | HttpsServer,
    private readonly owned: boolean,
    private readonly options: Required<
      Pick<
        TetherServerOptions,
        'sessionTtl' | 'maxPayload' | 'maxQueue' | 'heartbeatInterval' | 'rateLimit' | 'maxPendingRequests' | 'helloTimeout'
      >
    > &
      TetherServerOptions,
  ) {
    super()
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxPayload,
      handleProtocols: (offered) => (offered.has('tether.v1') ? 'tether.v1' : false),
    })
    http.on('upgrade', this.upgrade)
    if (options.heartbeatInterval > 0) {
      // Each connection judges whether its client answered since the last beat (liveness.ts): a
      // pong, or acks that keep up. Frames it merely sends are no sign that it reads.
      this.heartbeat = setInterval(() => {
        for (const ws of this.sockets) {
          const ping = this.checks.get(ws)?.(!this.unanswered.has(ws)) ?? false
          this.unanswered.delete(ws)
          if (!ping) continue
          this.unanswered.add(ws)
          ws.ping()
        }
      }, options.heartbeatInterval)
      this.heartbeat.unref()
    }
  }

  /** The bound port. */
  get port(): number {
    const address = this.http.address()
    return typeof address === 'object' && address ? address.port : 0
  }

  /**
   * Sets the handler of client `request()`s; its return value (or resolved value) is the reply.
   * @example
   * ```ts
   * server.onRequest(async ({ a, b }) => a + b)
   * ```
   */
  onRequest(handler: RequestHandler): void {
    this.handler = handler
  }

  /** Sends a message to every session (connected or awaiting resume); encoded once for all. */
  broadcast(data: unknown): void {
    const payload = encodePayload(data)
    for (const session of this.sessions.values()) session.sendEncoded(payload)
  }

  /** Closes every connection (1001 Going Away), ends every session, and stops listening. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      clearInterval(this.heartbeat)
      this.http.off('upgrade', this.upgrade)
      // Sessions first: each acknowledges what it delivered before its connection closes.
      for (const session of [...this.sessions.values()]) {
        session.endWith(new ClosedError('the server shut down'), 1001, 'server shutting down')
      }
      for (const ws of this.sockets) ws.close(1001, 'server shutting down') // those before their hello
      // Clients that do not complete the close handshake within a second are cut.
      const deadline = setTimeout(() => {
        for (const ws of this.sockets) ws.terminate()
      }, 1000)
      this.wss.close(() => {
        clearTimeout(deadline)
        if (!this.owned) return resolve()
        this.http.closeAllConnections()
        this.http.close(() => resolve())
      })
    })
    return this.closing
  }

  private readonly upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const { path, allowedOrigins, authenticate } = this.options
    // The request target is the client's text: split it, never parse it with URL (which throws).
    if (path !== undefined && (request.url ?? '/').split('?')[0] !== path) {
      // Attached to a user's server: other paths may belong to someone else's upgrade handler.
      if (this.owned) refuse(socket, 404, 'Not Found')
      return
    }
    if (allowedOrigins && !originAllowed(allowedOrigins, request.headers.origin)) {
      refuse(socket, 403, 'Forbidden')
      return
    }
    Promise.resolve()
      .then(() => (authenticate ? authenticate(request) : true))
      .then(
        (who) => who,
        (error: unknown) => {
          // A throw is a failure to decide (the auth backend is down), not a refusal: come back later.
          this.emit('error', error instanceof Error ? error : new Error(String(error)))
          return 'retry' as const
        },
      )
      .then((who) => {
        this.wss.handleUpgrade(request, socket, head, (ws) => {
          if (who === 'retry' || !who) {
            ws.close(who === 'retry' ? 1013 : 4401, who === 'retry' ? 'authentication unavailable' : 'unauthorized')
            return
          }
          this.sockets.add(ws)
          const answered = () => this.unanswered.delete(ws)
          ws.on('pong', answered)
          ws.once('close', () => {
            this.sockets.delete(ws)
            answered()
          })
          attachConnection(ws, typeof who === 'string' ? who : undefined, this.hooks)
        })
      })
  }

  private readonly hooks: ConnectionHooks = {
    findSession: (id, principal) => {
      const session = this.sessions.get(id)
      // Someone else's session id resumes nothing: the same answer as for an unknown id.
      return session && session.principal === principal ? session : undefined
    },
    newSession: (principal) => {
      const session = new Session(principal, this.options, {
        message: (data, s) => {
          try {
            this.emit('message', data, s)
          } catch (error) {
            this.emit('error', error as Error)
          }
        },
        request: async (data, s) => {
          try {
            if (!this.handler) throw new Error('a client sent a request, but no handler is set (server.onRequest)')
            return await this.handler(data, s)
          } catch (error) {
            // The client only learns ERR_INTERNAL; the details belong in the server's logs.
            if (!(error instanceof RequestError)) this.emit('error', error instanceof Error ? error : new Error(String(error)))
            throw error
          }
        },
        expire: (s) => {
          this.sessions.delete(s.id)
          this.emit('expire', s)
        },
        disconnect: (s, code) => this.emit('disconnect', s, code),
      })
      this.sessions.set(session.id, session)
      return session
    },
    opened: (session, resumed) => this.emit(resumed ? 'resume' : 'session', session),
    helloTimeout: this.options.helloTimeout,
    watch: (ws, check) => this.checks.set(ws, check),
  }
}

/** An origin check that cannot crash the server: a throwing predicate refuses. */
function originAllowed(allowed: string[] | ((origin: string | undefined) => boolean), origin: string | undefined): boolean {
  try {
    return typeof allowed === 'function' ? allowed(origin) === true : origin !== undefined && allowed.includes(origin)
  } catch {
    return false
  }
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
}

/**
 * Starts a tether.v1 server: standalone on `port`/`host`, or attached to `server`.
 * Resolves once it is listening.
 */
export async function createTetherServer(options: TetherServerOptions = {}): Promise<TetherServer> {
  const settings = {
    ...options,
    sessionTtl: options.sessionTtl ?? 120000,
    maxPayload: options.maxPayload ?? 1024 * 1024,
    maxQueue: options.maxQueue ?? 10000,
    heartbeatInterval: options.heartbeatInterval ?? 30000,
    rateLimit: options.rateLimit ?? { rate: 1000, burst: 10000 },
    maxPendingRequests: options.maxPendingRequests ?? 100,
    helloTimeout: options.helloTimeout ?? 5000,
  }
  const { rateLimit } = settings
  if (
    rateLimit !== false &&
    (typeof rateLimit !== 'object' || !(Number.isFinite(rateLimit.rate) && rateLimit.rate > 0) || !(rateLimit.burst >= 1))
  ) {
    throw new TypeError('createTetherServer: options.rateLimit must be false or { rate: a finite number > 0, burst >= 1 }')
  }
  for (const key of ['sessionTtl', 'maxPayload', 'maxQueue', 'heartbeatInterval', 'maxPendingRequests', 'helloTimeout'] as const) {
    const value = settings[key]
    if (typeof value !== 'number' || !(value >= 0) || (key !== 'heartbeatInterval' && value === 0)) {
      throw new TypeError(`createTetherServer: options.${key} must be a positive number; got ${String(value)}`)
    }
  }
  if (settings.helloTimeout > 2 ** 31 - 1) throw new TypeError('createTetherServer: options.helloTimeout must be at most 2147483647 ms')
  if (options.server) return new TetherServer(options.server, false, settings)
  const staticDir = options.static
  const http = createServer((request, response) => {
    if (staticDir) serveStatic(staticDir, request, response)
    else response.writeHead(426, { 'Content-Type': 'text/plain' }).end('This is a tethersocket (tether.v1) WebSocket endpoint.\n')
  })
  const server = new TetherServer(http, true, settings)
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => {
      http.off('error', reject)
      resolve()
    })
  })
  return server
}
