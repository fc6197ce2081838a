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
import { ClosedError, DeliveryError, EncodeError, OptionError, QueueFullError } from '../errors.js'
import { encodePayload } from '../protocol/frames.js'
import type { RequestReply } from '../protocol/requests.js'
import { unknownKey } from '../suggest.js'
import { Heartbeat } from './heartbeat.js'
import { MAX_HOLD, type RateLimit, resolveRateLimit } from './limits.js'
import { DisconnectedBudget, SHARED_ENTRY_BYTES } from './memory.js'
import { optionError } from './option-error.js'
import { type SharedMessage, sharedMessage } from './outbox.js'
import { type WebSocket, WebSocketServer } from './require-ws.js'
import type { MessageInfo, SessionConnection, SessionEvents } from './seams.js'
import { SharedService } from './service.js'
import { type ExpireReason, RequestError, Session, type SharedSession } from './sessions.js'
import { serveStatic } from './static.js'
import type { SessionStore } from './store.js'
import { checkTopic, type PresenceEntry, TOPIC_DEFAULTS, type TopicRetention, Topics } from './topics.js'
import { attachConnection, beat, type ConnectionHooks, type HelloFrame, ignoreError } from './ws.js'

export type { ReplyOf, RequestReply } from '../protocol/requests.js'
export type { RateLimit } from './limits.js'
export type { MessageInfo } from './seams.js'
export { type ExpireReason, RequestError, Session } from './sessions.js'
export type {
  ClaimedSession,
  ClaimRefusal,
  ClaimRequest,
  CommitBatch,
  CommitResult,
  LoggedBroadcast,
  LoggedTopicMessage,
  ReleaseRequest,
  SessionStore,
  StoredEntry,
  StoredMember,
  StoreLink,
  StoreListener,
  StoreNotice,
  TopicPlaces,
  TopicRead,
} from './store.js'
export type { PresenceEntry, TopicRetention } from './topics.js'

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
   * Standalone, other paths get HTTP 404. Attached to your server, they are left to your own
   * `upgrade` listeners, and get 404 when there is none (other tether servers aside).
   */
  path?: string
  /** How long a disconnected session is kept for resume, in ms. Default `120000`. */
  sessionTtl?: number
  /** Largest frame accepted from a client, in bytes; bigger closes the connection with 1009. Default `1048576`. */
  maxPayload?: number
  /**
   * Most unacknowledged messages held per session; `session.send()` beyond rejects with
   * `QueueFullError` (a broadcast skips the session). Default: `rateLimit.burst + rateLimit.rate × 10`
   * (what the rate limit lets a client have delivered at once plus 10 s at its rate, so an app
   * that answers every message is not refused while the client's acks come back): `20000` with
   * the default `rateLimit`, and `20000` when `rateLimit` is `false`.
   */
  maxQueue?: number
  /**
   * Most bytes of unacknowledged messages held per session: UTF-8 payload bytes plus a fixed
   * overhead per message (320 for `session.send()`, 16 per broadcast, 64 per reply; a broadcast's
   * payload is held once but counted by every session). Beyond, `session.send()` rejects with
   * `QueueFullError` (a broadcast skips the session). Default `16777216` (16 MiB).
   */
  maxQueueBytes?: number
  /**
   * Server-wide budget for what disconnected sessions hold: the sum of their `maxQueueBytes`
   * counts plus 2048 bytes per session. When it is reached, the sessions disconnected longest
   * are ended (`expire` with reason `'evicted'`, emitted at once from the `broadcast()`,
   * `session.send()` or disconnect that went over; their pending sends reject with
   * `DeliveryError`) until the rest fit. Default `67108864` (64 MiB).
   */
  maxDisconnectedBytes?: number
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
   * above 0), `burst` at once (at least 1); every other frame (unknown types, acks that move
   * nothing) costs a token too, charged before it is decoded. Beside it, a decoding budget: a frame over 64 bytes is
   * decoded only once `bytesPerSecond` (`Infinity` for none) has its bytes, `burstBytes` at once
   * (never below `maxPayload`). A client over either is slowed down, not disconnected: the rest
   * is held, in order, and delivered as the limits allow; work beyond 10 s of it is refused, and
   * the connection closed with 1013 once the held work is delivered (the client resends the rest
   * on resume, so nothing is lost). Held work is released every 10 ms or so, so the burst in
   * effect is at least `rate / 100`. docs/SECURITY.md has the whole rule. `false` disables both.
   * Default `{ rate: 1000, burst: 10000, bytesPerSecond: 2097152, burstBytes: 4194304 }`
   * (`burstBytes` `max(4 MiB, maxPayload)`); a `rateLimit` given without the byte fields gets
   * their defaults.
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
  /**
   * Where sessions live. Default: in this process's memory (they end with it). A shared store,
   * `redisStore(client)` from `tethersocket/redis`, makes every server that uses it one
   * service: any node resumes any session, and exactly-once holds across the death of a node
   * (docs/SCALING.md). `maxDisconnectedBytes` then does not apply: disconnected sessions live
   * in the store, each within `maxQueue` and `maxQueueBytes`.
   * @example
   * ```ts
   * const client = await createClient({ url: process.env.REDIS_URL }).connect()
   * const server = await createTetherServer({ port: 8080, store: redisStore(client) })
   * ```
   */
  store?: SessionStore
  /**
   * What each topic's log keeps for members that are behind (away, or with a full outbox):
   * `maxMessages` and `maxBytes` of payload per topic. A member that falls further behind gets
   * one `miss` item saying how many it lost (the client's `missed` event), never a silent gap.
   * Default `{ maxMessages: 1000, maxBytes: 1048576 }`.
   */
  topics?: Partial<TopicRetention>
}

/**
 * Events of a {@link TetherServer}.
 * @typeParam In - messages clients send
 * @typeParam Out - messages the server sends
 */
export interface TetherServerEvents<In = unknown, Out = unknown> {
  /** A new session (not a resumed one). */
  session: (session: Session<Out>) => void
  /** A session's client reconnected and resumed it. */
  resume: (session: Session<Out>) => void
  /**
   * A session's connection closed; the session waits `sessionTtl` for a resume. Not emitted for
   * a connection replaced by a newer one of the same session (a resume from elsewhere: `resume`
   * says so, and the session stays connected); when a session ends while connected (`server.close()`,
   * `session.end()`), `disconnect` comes before `expire`.
   */
  disconnect: (session: Session<Out>, code: number) => void
  /**
   * A session ended and was freed: its `sessionTtl` ran out (`'ttl'`), it was evicted to keep
   * disconnected sessions within `maxDisconnectedBytes` (`'evicted'`), `session.end()` was called
   * (`'ended'`), or the server closed (`'shutdown'`).
   */
  expire: (session: Session<Out>, reason: ExpireReason) => void
  /**
   * A client's `send()`: exactly once per message, in order per session. `info.id` names the
   * item across resends and nodes; `info.redelivered` is true when a node may have handled it
   * before and died (with a shared store): make outside side effects idempotent by `info.id`.
   * With a shared store, a promise the listener returns holds the item's acknowledgement, and
   * what the listener sends to the session meanwhile, until it settles (docs/SCALING.md).
   */
  message: (data: In, session: Session<Out>, info: MessageInfo) => void
  /** A handler threw, or a connection failed in a way worth logging. The server goes on. */
  error: (error: Error) => void
  /** A session joined a topic (`session.join`). */
  join: (session: Session<Out>, topic: string) => void
  /** A session left a topic: `session.leave` (`'left'`), or it ended as a member (`'ended'`). */
  leave: (session: Session<Out>, topic: string, reason: 'left' | 'ended') => void
}

/**
 * Answers a client's `request()`: returns (or resolves with) the reply. Throw `RequestError` to
 * answer with an error the client sees. `info` is the request's place in the session's
 * sequence, as for `message`.
 * @typeParam Requests - the requests clients make and their replies (a union of {@link RequestReply})
 * @typeParam Out - messages the server sends
 */
export type RequestHandler<Requests extends RequestReply = RequestReply, Out = unknown> = (
  data: Requests['request'],
  session: Session<Out>,
  info: MessageInfo,
) => Requests['reply'] | PromiseLike<Requests['reply']>

/**
 * A running tether.v1 server. Create it with {@link createTetherServer}.
 * @typeParam In - messages clients send (the client's `Out`)
 * @typeParam Out - messages the server sends (the client's `In`)
 * @typeParam Requests - the requests clients make and their replies (the client's `Requests`)
 */
export class TetherServer<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply> extends EventEmitter<
  TetherServerEvents<In, Out>
> {
  /** Sessions by id: connected or waiting for a resume; with a shared store, those this node holds. */
  readonly sessions = new Map<string, Session<Out>>()
  private handler: RequestHandler<Requests, Out> | undefined
  private readonly wss: WebSocketServer
  /**
   * The connections served (ws.ts), from their upgrade to their close. Each judges whether its
   * client answered since the last beat (liveness.ts): a pong, or acks that keep up. Frames it
   * merely sends are no sign that it reads. The beats are spread over the interval (heartbeat.ts).
   */
  private readonly sockets: Heartbeat<WebSocket>
  private closing: Promise<void> | undefined
  /** What disconnected sessions hold, against `maxDisconnectedBytes`. */
  private readonly budget: DisconnectedBudget
  /** With a shared store: this node's part in the service, once connected. */
  private shared: SharedService | undefined
  /** With a shared store, until it is connected: hellos wait for it. */
  private sharedReady: Promise<SharedService> | undefined
  /** The topics with members, and their logs (topics.ts). */
  private readonly topics: Topics

  /** @internal use {@link createTetherServer} */
  constructor(
    private readonly http: Server | HttpsServer,
    private readonly owned: boolean,
    private readonly options: Required<
      Pick<
        TetherServerOptions,
        | 'sessionTtl'
        | 'maxPayload'
        | 'maxQueue'
        | 'maxQueueBytes'
        | 'maxDisconnectedBytes'
        | 'heartbeatInterval'
        | 'rateLimit'
        | 'maxPendingRequests'
        | 'helloTimeout'
      >
    > &
      TetherServerOptions,
  ) {
    super()
    this.topics = new Topics({ ...TOPIC_DEFAULTS, ...options.topics })
    this.budget = new DisconnectedBudget(options.maxDisconnectedBytes, (session) =>
      session.endWith(
        new DeliveryError('session evicted: disconnected sessions held maxDisconnectedBytes, and it was disconnected longest'),
        'evicted',
      ),
    )
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxPayload,
      handleProtocols: (offered) => (offered.has('tether.v1') ? 'tether.v1' : false),
      // The server tracks its connections itself (`sockets`): ws's tracking too would cost every
      // connection another set entry and a `close` listener of its own.
      clientTracking: false,
    })
    http.on('upgrade', this.upgrade)
    this.sockets = new Heartbeat(options.heartbeatInterval, beat)
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
   * type Requests = RequestReply<{ a: number; b: number }, number>
   * const server = await createTetherServer<ClientMsg, ServerMsg, Requests>({ port: 8080 })
   * server.onRequest(async ({ a, b }) => a + b)
   * ```
   */
  onRequest(handler: RequestHandler<Requests, Out>): void {
    this.handler = handler
  }

  /**
   * Sends a message to every session (connected or awaiting resume). It is encoded once, and
   * every session holds that one payload, without a promise: a session at `maxQueue` or
   * `maxQueueBytes` (or ended) is skipped. Disconnected sessions may be evicted to stay within
   * `maxDisconnectedBytes`.
   */
  broadcast(data: Out): void {
    let payload: string
    try {
      payload = encodePayload(data)
    } catch (cause) {
      throw new EncodeError(`broadcast: message cannot be encoded as JSON: ${(cause as Error).message}`, { cause, data })
    }
    if (this.shared) this.shared.broadcast(payload)
    else this.broadcastHere(payload)
  }

  /**
   * Publishes a message to a topic: every session that is a member now gets it, exactly once and
   * in order within its stream, whether connected or away (then on resume, within the topic's
   * retention). It is encoded once and held once, by the topic's log; members keep their place
   * in it, not a copy. Returns how many sessions are members (0: nobody gets it, nothing is kept).
   * With a shared store (`tethersocket/redis`) the log is the service's and the members are on any
   * node: the message is published through the store, a failure is an `error` event, and it
   * returns -1 (the members are not known here without asking the store: `presence()` tells).
   * @example
   * ```ts
   * session.join('room:42')
   * server.publish('room:42', { from: 'ada', text: 'hi' }) // the client: info.topic === 'room:42'
   * ```
   * @throws `EncodeError` when the message cannot be encoded as JSON; `OptionError` for a bad topic
   * name; `QueueFullError` for a message bigger than `maxQueueBytes` allows (no member could hold it)
   */
  publish(topic: string, data: Out): number {
    checkTopic('publish', topic)
    let payload: string
    try {
      payload = encodePayload(data)
    } catch (cause) {
      throw new EncodeError(`publish: message cannot be encoded as JSON: ${(cause as Error).message}`, { cause, data })
    }
    // One no member's outbox could ever hold would stall every member's topic stream until the
    // retention dropped it: refused here, where the caller can see it.
    const size = Buffer.byteLength(payload)
    if (size + SHARED_ENTRY_BYTES > this.options.maxQueueBytes) {
      throw new QueueFullError(
        `publish: message of ${size} bytes exceeds maxQueueBytes (${this.options.maxQueueBytes}) with its ${SHARED_ENTRY_BYTES} bytes of overhead: no member could hold it; send smaller messages or raise maxQueueBytes`,
        { data },
      )
    }
    if (this.shared) {
      this.shared.topics.publish(topic, payload)
      return -1
    }
    if (this.sharedReady) {
      // Published once the store is connected (a failure is the server's `error`).
      void this.sharedReady.then((shared) => shared.topics.publish(topic, payload)).catch(() => {}) // the connect's failure is reported by it
      return -1
    }
    return this.topics.publish(topic, payload)
  }

  /**
   * The members of a topic: each session's id, principal, and whether its client is connected
   * now (an away member still gets what is published, on resume). A promise: across nodes
   * sharing a store, presence is the service's, read from the store.
   * @example
   * ```ts
   * const online = (await server.presence('room:42')).filter((m) => m.connected).map((m) => m.principal)
   * ```
   * @throws `OptionError` (at once, not as a rejection) for a bad topic name
   */
  presence(topic: string): Promise<PresenceEntry[]> {
    checkTopic('presence', topic)
    if (this.shared) return this.shared.topics.presence(topic)
    if (this.sharedReady) return this.sharedReady.then((shared) => shared.topics.presence(topic))
    return Promise.resolve(this.topics.presence(topic))
  }

  /** Queues a broadcast to every session this node holds (from the log: those not behind `readFrom`). */
  private broadcastHere(payload: string | SharedMessage, readFrom?: string): void {
    const message = typeof payload === 'string' ? sharedMessage(payload) : payload
    for (const session of this.sessions.values()) session.sendShared(message, readFrom)
  }

  /**
   * Sends a message to the session `sessionId`, with the meaning of `session.send()`: resolves
   * when its client acknowledged it. With a shared store the session may be held by any node,
   * or by none while its client is away; without one, only sessions of this server are found.
   * Rejects with `ClosedError` when there is no such session.
   * @example
   * ```ts
   * await server.sendTo(order.sessionId, { type: 'shipped', order: order.id })
   * ```
   */
  sendTo(sessionId: string, data: Out): Promise<void> {
    const here = this.sessions.get(sessionId)
    if (here) return here.send(data)
    let payload: string
    try {
      payload = encodePayload(data)
    } catch (cause) {
      return Promise.reject(new EncodeError(`message cannot be encoded as JSON: ${(cause as Error).message}`, { cause, data }))
    }
    if (!this.shared) return Promise.reject(new ClosedError(`session ${sessionId} does not exist (it ended, or expired)`))
    return this.shared.forward(sessionId, payload)
  }

  /**
   * Closes every connection (1001 Going Away) and stops listening. Without a store it ends every
   * session; with a shared store it hands them back to the store, for the other nodes (or this
   * one, restarted) to resume.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    this.sockets.stop()
    this.http.off('upgrade', this.upgrade)
    const shared = this.shared ?? (await this.sharedReady?.catch(() => undefined))
    if (shared) {
      await shared.releaseAll({ code: 1001, reason: 'server shutting down' })
      await shared.close()
    }
    await new Promise<void>((resolve) => {
      // Sessions first: each acknowledges what it delivered before its connection closes.
      for (const session of [...this.sessions.values()]) {
        session.endWith(new ClosedError('the server shut down'), 'shutdown', { code: 1001, reason: 'server shutting down' })
      }
      for (const ws of this.sockets) ws.close(1001, 'server shutting down') // those before their hello
      // Clients that do not complete the close handshake within a second are cut.
      const deadline = setTimeout(() => {
        for (const ws of this.sockets) ws.terminate()
      }, 1000)
      this.wss.close()
      this.whenClosed(() => {
        clearTimeout(deadline)
        if (!this.owned) return resolve()
        this.http.closeAllConnections()
        this.http.close(() => resolve())
      })
    })
  }

  /** Connects the server to a shared store; hellos wait until it is. @internal */
  async connectStore(store: SessionStore): Promise<void> {
    this.sharedReady = SharedService.open(store, {
      sessions: this.sessions,
      sessionTtl: this.options.sessionTtl,
      maxQueue: this.options.maxQueue,
      maxQueueBytes: this.options.maxQueueBytes,
      create: (principal, shared) => this.newSession(principal, shared),
      handle: (id, principal) => this.newSession(principal, { id }),
      retention: { ...TOPIC_DEFAULTS, ...this.options.topics },
      opened: (session, resumed) => {
        // Its topics say it is connected again (presence).
        if (resumed) this.shared?.topics.connected(session, true)
        this.notify(resumed ? 'resume' : 'session', session)
      },
      expired: (session, reason, topics) => {
        for (const topic of topics ?? []) this.notify('leave', session, topic, 'ended')
        this.notify('expire', session, reason)
      },
      broadcastHere: (message, readFrom) => this.broadcastHere(message, readFrom),
      error: (error) => this.emit('error', error),
    })
    this.shared = await this.sharedReady
  }

  private readonly upgrade = tetherListener(
    () => this.options.path,
    (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
      const { path, allowedOrigins, authenticate } = this.options
      // The request target is the client's text: split it, never parse it with URL (which throws).
      const target = (request.url ?? '/').split('?')[0]
      if (path !== undefined && target !== path) {
        // Attached to a user's server, another path may belong to the user's own upgrade handler:
        // leave it alone then. With no other handler nobody would answer, and the client would hang.
        if (this.owned || unclaimed(this.http, this.upgrade, target)) refuse(socket, 404, 'Not Found')
        return
      }
      // Node's HTTP server removes its own listeners from an upgraded socket: from here on this
      // server owns it, and an 'error' without a listener (a client's reset) would end the process.
      guard(socket)
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
            this.emit('error', asError(error))
            return 'retry' as const
          },
        )
        .then((who) => {
          // The client may have gone while authenticate ran: there is nothing left to upgrade.
          if (socket.destroyed || !socket.writable) {
            socket.destroy()
            return
          }
          this.wss.handleUpgrade(request, socket, head, (ws) => {
            // ws has an 'error' listener of its own on the socket now: ours, beside it, would make
            // the socket's listeners an array for as long as the connection lives.
            socket.off('error', ignoreError)
            this.accept(ws, who)
          })
        })
        .catch((error: unknown) => {
          // Not expected; but a rejection nobody handles would end the process (Node's default).
          socket.destroy()
          this.emit('error', asError(error))
        })
    },
  )

  /**
   * Serves an upgraded connection, or closes it as `who` (authenticate's answer) says. A method,
   * not a closure in the upgrade listener: what the connection keeps must not hold the upgrade's
   * request and its headers (about 1.5 KiB) for as long as the connection lives.
   */
  private accept(ws: WebSocket, who: string | boolean | undefined | 'retry'): void {
    // ws reports a client's broken frame as an 'error' on the WebSocket, and closes it
    // itself: a listener must exist from the start, on connections refused below too.
    ws.on('error', ignoreError)
    // Refused ones too: a shutdown waits for their close as for the others'.
    this.sockets.add(ws)
    if (who === 'retry' || !who) {
      ws.on('close', this.forget)
      ws.close(who === 'retry' ? 1013 : 4401, who === 'retry' ? 'authentication unavailable' : 'unauthorized')
      return
    }
    // Its close is reported by the connection (hooks.closed): one `close` listener, not two.
    attachConnection(ws, typeof who === 'string' ? who : undefined, this.hooks)
  }

  /** A connection closed: forgotten (a shutdown waits for the last). */
  private socketClosed(ws: WebSocket): void {
    this.sockets.delete(ws)
    if (this.sockets.size > 0) return
    const then = this.allClosed
    this.allClosed = undefined
    then?.()
  }

  /** The `close` listener of refused connections, shared (`this` is the WebSocket). */
  private readonly forget = withEmitter((ws) => this.socketClosed(ws))

  /** During a shutdown: what runs once every connection has closed. */
  private allClosed: (() => void) | undefined

  /** Runs `then` once every connection has closed (at once if none is open). */
  private whenClosed(then: () => void): void {
    if (this.sockets.size === 0) then()
    else this.allClosed = then
  }

  /**
   * Emits an event to the app's listeners. They run inside connection handling: one that throws
   * is reported as `error`, and the server goes on (an uncaught throw there would end the process).
   */
  private notify<E extends Exclude<EventEmitter.EventNames<TetherServerEvents>, 'error'>>(
    event: E,
    ...args: EventEmitter.EventArgs<TetherServerEvents, E>
  ): void {
    try {
      this.emit(event, ...args)
    } catch (error) {
      this.emit('error', asError(error))
    }
  }

  /** A hello without a shared store: the session is found here, or made. */
  private helloHere(frame: HelloFrame, principal: string | undefined, connection: SessionConnection): Session {
    const asked = frame.sid === null ? undefined : this.sessions.get(frame.sid)
    // Someone else's session id resumes nothing: the same answer as for an unknown id.
    const found = asked && asked.principal === principal ? asked : undefined
    // A client that knows more of the session than this server (it cannot, unless it is confused)
    // gets a new session, told why: resuming would skip or repeat items.
    const lost = found?.knowsLessThan(frame.ack, frame.acked) === true
    if (found && !lost) {
      found.attach(connection, { ack: frame.ack, resumed: true, pa: frame.pa })
      this.notify('resume', found)
      return found
    }
    const session = this.newSession(principal)
    // A client whose session is gone acknowledges sequence numbers of the old one: they mean nothing here.
    session.attach(
      connection,
      frame.sid === null
        ? { ack: 0, resumed: false, pa: frame.pa }
        : { ack: 0, resumed: false, reason: lost ? 'lost' : 'unknown', pa: frame.pa },
    )
    this.notify('session', session)
    return session
  }

  /** Makes a session with this server's limits and events, and registers it (a handle for `expire` is not). */
  private newSession(principal: string | undefined, shared?: SharedSession | { readonly id: string }): Session {
    const session = new Session(principal, this.options, this.sessionEvents, shared)
    if (!shared || 'link' in shared) this.sessions.set(session.id, session)
    return session
  }

  /** Dispatches a client message to the `message` listeners; with a shared store, returns the promises they returned. */
  private deliver(data: unknown, session: Session, info: MessageInfo): unknown {
    if (!this.shared) {
      // What the client sent is what the app declared it sends (In): the protocol carries JSON as given.
      this.notify('message', data as In, session, info)
      return undefined
    }
    let pending: Promise<unknown>[] | undefined
    for (const listener of this.listeners('message')) {
      // A once-listener is removed before it runs, as emit() does.
      this.removeListener('message', listener, undefined, true)
      try {
        const result: unknown = listener(data as In, session, info)
        if (result instanceof Promise) {
          pending ??= []
          pending.push(result.catch((error: unknown) => this.emit('error', asError(error))))
        }
      } catch (error) {
        this.emit('error', asError(error))
      }
    }
    return pending && Promise.all(pending)
  }

  private readonly sessionEvents: SessionEvents = {
    message: (data, s, info) => this.deliver(data, s, info),
    request: async (data, s, info) => {
      try {
        if (!this.handler) throw new Error('a client sent a request, but no handler is set (server.onRequest)')
        return await this.handler(data, s, info)
      } catch (error) {
        // The client only learns ERR_INTERNAL; the details belong in the server's logs.
        if (!(error instanceof RequestError)) this.emit('error', asError(error))
        throw error
      }
    },
    expire: (s, reason) => {
      if (this.sessions.get(s.id) === s) this.sessions.delete(s.id)
      this.budget.remove(s)
      // With a shared store, session.end() ends it for the whole service.
      if (reason === 'ended') this.shared?.end(s)
      this.notify('expire', s, reason)
    },
    memory: (s, parked, sharedBytes) => this.budget.update(s, parked, sharedBytes),
    disconnect: (s, code) => {
      this.shared?.topics.connected(s, false)
      this.notify('disconnect', s, code)
    },
    release: (s) => this.shared?.release(s),
    acknowledged: (s, seq) => this.shared?.acknowledged(s, seq),
    lost: (s, reason) => this.shared?.lost(s, reason),
    forward: (s, payload) => (this.shared ? this.shared.forward(s.id, payload) : Promise.reject(new ClosedError('session has ended'))),
    join: (s, name, place) => {
      const { log, joined } = this.topics.join(name, s)
      place(log)
      if (joined) this.notify('join', s, name)
    },
    joinShared: (s, name) => {
      const shared = this.shared as SharedService // sessions with a journal exist once the store is connected
      this.notify('join', s, name)
      const joined = shared.topics.join(s, name)
      joined.catch((error: unknown) => this.emit('error', asError(error)))
      return joined
    },
    leave: (s, name, reason) => {
      if (this.shared) {
        this.shared.topics.left(s, [name])
        this.notify('leave', s, name, reason)
      } else if (this.topics.leave(name, s)) this.notify('leave', s, name, reason)
    },
  }

  private readonly hooks: ConnectionHooks = {
    hello: (frame, principal, connection) => {
      if (this.shared) return this.shared.hello(frame, principal, connection)
      if (this.sharedReady) return this.sharedReady.then((shared) => shared.hello(frame, principal, connection))
      return this.helloHere(frame, principal, connection)
    },
    helloTimeout: this.options.helloTimeout,
    closed: (ws) => this.socketClosed(ws),
  }
}

type UpgradeListener = (request: IncomingMessage, socket: Duplex, head: Buffer) => void

/** The upgrade listeners of tether servers, with the path each serves: servers attached to one HTTP server know each other's. */
const tetherPaths = new WeakMap<UpgradeListener, () => string | undefined>()

function tetherListener(path: () => string | undefined, listener: UpgradeListener): UpgradeListener {
  tetherPaths.set(listener, path)
  return listener
}

/**
 * Whether an upgrade for `target` is left unanswered by every upgrade listener of `http`: they
 * are all tether servers, none serving `target`. Only the last of them (`self`) answers it.
 */
function unclaimed(http: Server | HttpsServer, self: UpgradeListener, target: string): boolean {
  const listeners = http.listeners('upgrade') as UpgradeListener[]
  return (
    listeners.at(-1) === self &&
    listeners.every((listener) => {
      const path = tetherPaths.get(listener)?.()
      return path !== undefined && path !== target
    })
  )
}

/** A listener that hands the WebSocket that emitted (`this`) to `handle`: one function for every connection. */
const withEmitter = (handle: (ws: WebSocket) => void) =>
  function (this: WebSocket): void {
    handle(this)
  }

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)))

/** An origin check that cannot crash the server: a throwing predicate refuses. */
function originAllowed(allowed: string[] | ((origin: string | undefined) => boolean), origin: string | undefined): boolean {
  try {
    return typeof allowed === 'function' ? allowed(origin) === true : origin !== undefined && allowed.includes(origin)
  } catch {
    return false
  }
}

/**
 * `maxQueue` when none is given: every message the rate limit lets a client have delivered
 * within MAX_HOLD (its burst, then 10 s at its rate) may be answered with one message before the
 * client's acks of the answers come back.
 */
function defaultMaxQueue(rateLimit: RateLimit | false): number {
  return rateLimit ? Math.ceil(rateLimit.burst + (rateLimit.rate * MAX_HOLD) / 1000) : 20000
}

/**
 * Gives a socket taken over from the HTTP server an 'error' listener. A failing socket (a reset,
 * a write after the peer left) is destroyed by Node itself; there is nothing worth reporting.
 */
function guard(socket: Duplex): void {
  if (!socket.listeners('error').includes(ignoreError)) socket.on('error', ignoreError)
}

/** Answers an upgrade with an HTTP error and closes the connection once the answer is written. */
function refuse(socket: Duplex, status: number, text: string): void {
  guard(socket)
  // Destroyed once written: a client that never closes its side cannot keep the socket open.
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy())
}

/**
 * Connects a new server to its store; if that fails, the server is closed (its upgrade listener
 * and heartbeat gone, so a retry with a new server is not disturbed) and the error thrown.
 */
async function connectOrClose(
  server: { connectStore(store: SessionStore): Promise<void>; close(): Promise<void> },
  store: SessionStore,
): Promise<void> {
  try {
    await server.connectStore(store)
  } catch (error) {
    await server.close().catch(() => {})
    throw error
  }
}

/** The options of {@link createTetherServer}, by name (a misspelt one would be ignored: `{ prot: 1 }` would listen on 8080). */
const KNOWN: readonly (keyof TetherServerOptions)[] = [
  'port',
  'host',
  'server',
  'path',
  'sessionTtl',
  'maxPayload',
  'maxQueue',
  'maxQueueBytes',
  'maxDisconnectedBytes',
  'allowedOrigins',
  'authenticate',
  'rateLimit',
  'maxPendingRequests',
  'helloTimeout',
  'heartbeatInterval',
  'static',
  'store',
  'topics',
]

/**
 * The options that are not limits: unknown names (with the closest known one), and the types
 * of where to listen, what to attach to and the hooks, so that a bad one is an OptionError
 * naming it, not an error from `net` or a crash at the first connection.
 */
function checkShape(options: TetherServerOptions): void {
  if (options === null || typeof options !== 'object') throw optionError('', 'an object', options)
  const unknown = unknownKey('options', options, KNOWN)
  if (unknown) throw new OptionError(`createTetherServer: ${unknown}`)
  const { port, host, server, path, allowedOrigins, authenticate, store, static: folder } = options
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw optionError('port', 'an integer from 0 to 65535 (0: any free port)', port)
  }
  if (host !== undefined && (typeof host !== 'string' || host === '')) throw optionError('host', 'a host name or IP address', host)
  if (server !== undefined && typeof (server as { on?: unknown } | null)?.on !== 'function') {
    throw optionError('server', 'an http.Server or https.Server to attach to', server)
  }
  if (server !== undefined && port !== undefined) {
    throw optionError('port', 'left out with options.server (the server you attach to listens where it listens)', port)
  }
  if (path !== undefined && (typeof path !== 'string' || !path.startsWith('/'))) throw optionError('path', 'a path starting with "/"', path)
  if (folder !== undefined && typeof folder !== 'string') throw optionError('static', 'a folder path', folder)
  if (allowedOrigins !== undefined && typeof allowedOrigins !== 'function' && !isStrings(allowedOrigins)) {
    throw optionError('allowedOrigins', 'an array of origins (strings) or a function', allowedOrigins)
  }
  if (authenticate !== undefined && typeof authenticate !== 'function') throw optionError('authenticate', 'a function', authenticate)
  if (store !== undefined && typeof (store as { open?: unknown } | null)?.open !== 'function') {
    throw optionError('store', 'a session store, such as redisStore(client) from tethersocket/redis', store)
  }
  const { topics } = options
  if (topics !== undefined) {
    if (topics === null || typeof topics !== 'object') throw optionError('topics', 'an object such as { maxMessages: 1000 }', topics)
    const unknownRetention = unknownKey('options.topics', topics, ['maxMessages', 'maxBytes'])
    if (unknownRetention) throw new OptionError(`createTetherServer: ${unknownRetention}`)
    for (const key of ['maxMessages', 'maxBytes'] as const) {
      const value = topics[key]
      if (
        value !== undefined &&
        !(typeof value === 'number' && value >= 1 && (Number.isInteger(value) || value === Number.POSITIVE_INFINITY))
      ) {
        throw optionError(`topics.${key}`, 'a positive integer (or Infinity)', value)
      }
    }
  }
}

const isStrings = (value: unknown): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string')

/** The longest delay a Node timer honours. */
const MAX_TIMER = 2 ** 31 - 1
/** Options that are timer delays, in ms. */
const TIMED: readonly string[] = ['sessionTtl', 'heartbeatInterval', 'helloTimeout']

/**
 * Starts a tether.v1 server: standalone on `port`/`host`, or attached to `server`.
 * Resolves once it is listening.
 * @throws `OptionError` (as a rejection) naming the first bad option and the value given
 */
export async function createTetherServer<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply>(
  options: TetherServerOptions = {},
): Promise<TetherServer<In, Out, Requests>> {
  checkShape(options)
  const maxPayload = options.maxPayload ?? 1024 * 1024
  const rateLimit = resolveRateLimit(options.rateLimit, maxPayload)
  const settings = {
    ...options,
    sessionTtl: options.sessionTtl ?? 120000,
    maxPayload,
    maxQueue: options.maxQueue ?? defaultMaxQueue(rateLimit),
    maxQueueBytes: options.maxQueueBytes ?? 16 * 1024 * 1024,
    maxDisconnectedBytes: options.maxDisconnectedBytes ?? 64 * 1024 * 1024,
    heartbeatInterval: options.heartbeatInterval ?? 30000,
    rateLimit,
    maxPendingRequests: options.maxPendingRequests ?? 100,
    helloTimeout: options.helloTimeout ?? 5000,
  }
  for (const key of [
    'sessionTtl',
    'maxPayload',
    'maxQueue',
    'maxQueueBytes',
    'maxDisconnectedBytes',
    'heartbeatInterval',
    'maxPendingRequests',
    'helloTimeout',
  ] as const) {
    const value = settings[key]
    if (typeof value !== 'number' || !(value >= 0) || (key !== 'heartbeatInterval' && value === 0)) {
      throw optionError(key, 'a positive number', value)
    }
    // Announced to clients in welcome, where only an integer is valid (PROTOCOL.md §3.8).
    if (key === 'maxPendingRequests' && !Number.isInteger(value) && value !== Number.POSITIVE_INFINITY) {
      throw optionError(key, 'a positive integer (or Infinity for no limit)', value)
    }
    // Timers fire at once beyond their 32-bit limit: a session kept "forever" would expire at once.
    if (TIMED.includes(key) && value > MAX_TIMER) {
      throw optionError(key, `at most ${MAX_TIMER} ms (about 24.8 days)`, value)
    }
  }
  if (options.server) {
    const attached = new TetherServer<In, Out, Requests>(options.server, false, settings)
    if (options.store) await connectOrClose(attached, options.store)
    return attached
  }
  const staticDir = options.static
  const http = createServer((request, response) => {
    if (staticDir) serveStatic(staticDir, request, response)
    else response.writeHead(426, { 'Content-Type': 'text/plain' }).end('This is a tethersocket (tether.v1) WebSocket endpoint.\n')
  })
  const server = new TetherServer<In, Out, Requests>(http, true, settings)
  if (options.store) await connectOrClose(server, options.store)
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => {
      http.off('error', reject)
      resolve()
    })
  })
  return server
}
