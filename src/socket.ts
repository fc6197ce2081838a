/**
 * `TetherSocket`: the connection's life as one state machine, and the wiring of the
 * parts that do the rest (options.ts, backoff.ts, outbox.ts, environment.ts and a wire
 * protocol from protocol/).
 *
 * ```
 *            connect()              open + handshake + onOpen hook
 *   idle ───────────────► connecting ─────────────────────────────► open
 *                           ▲   │ attempt failed                     │ connection lost
 *              delay passed │   ▼                                    ▼
 *                         reconnecting ◄──────────────────────────────┘
 *   close() from any state ──► closing ──► closed  (also: retries given up)
 * ```
 * Every state change goes through `setState`, which emits `state`. One timer serves the
 * lifecycle: the backoff wait while `reconnecting`, the connect timeout while `connecting`.
 * @module
 */
import { EventEmitter } from 'eventemitter3'
import { backoffDelay } from './backoff.js'
import { isOnline, watchEnvironment } from './environment.js'
import { ClosedError, ConnectionError, DeliveryError, OptionError, TetherError, TimeoutError } from './errors.js'
import {
  type CloseInfo,
  DEFAULT_CONNECT_TIMEOUT,
  normalizeUrl,
  type RequestOptions,
  type ResolvedOptions,
  redactUrl,
  resolveOptions,
  type SendOptions,
  type TetherSocketOptions,
  type UrlProvider,
} from './options.js'
import { type Entry, Outbox, type Payload } from './outbox.js'
import { RawProtocol } from './protocol/raw.js'
import { type SessionInfo, TetherProtocol } from './protocol/tether.js'
import type { Protocol, ProtocolHost, WireData } from './protocol/types.js'
import { reportLater } from './report.js'
import { timer } from './timers.js'

/** The connection states. `closed` is also where a socket ends when it gives up reconnecting. */
export type SocketState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed'

/** The `close` event's argument. */
export interface CloseEventInfo extends CloseInfo {
  /** Whether a reconnect is scheduled. */
  willReconnect: boolean
}

/** The `reconnecting` event's argument. */
export interface ReconnectingInfo {
  /** Failed attempts in a row so far (1 before the first retry). */
  attempt: number
  /** Milliseconds until the next attempt. */
  delay: number
}

/** A snapshot of counters, for dashboards and debugging. */
export interface TetherSocketStats {
  state: SocketState
  /** Messages waiting to be written. */
  queued: number
  /** Messages queued or written but not yet acknowledged. */
  pending: number
  /** Connection attempts made. */
  attempts: number
  /** Connections opened after the first one. */
  reconnects: number
  /** Milliseconds spent open, the current connection included. */
  connectedTime: number
  /** Close code of the last connection that ended, if any. */
  lastCloseCode: number | undefined
}

/** The events and their listener signatures. */
export interface TetherSocketEvents<In> {
  /** The socket is open and the backlog is being written. */
  open: () => void
  /** A message from the server (in tether mode: exactly once, in order). */
  message: (data: In) => void
  /** A connection (or an attempt) ended. */
  close: (info: CloseEventInfo) => void
  /** A retry is scheduled. */
  reconnecting: (info: ReconnectingInfo) => void
  /** The state changed. */
  state: (next: SocketState, prev: SocketState) => void
  /** Something went wrong; the socket keeps running where it can. */
  error: (error: TetherError) => void
  /** Tether mode: a new server session began (the first, or one replacing an expired session). */
  session: (info: SessionInfo) => void
}

/** The part of a WebSocket this class uses (the browser's and the `ws` package's agree on it). */
interface Connection {
  readonly readyState: number
  readonly protocol: string
  binaryType: string
  onopen: (() => void) | null
  onmessage: ((event: { data: WireData }) => void) | null
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null
  onerror: ((event: { message?: unknown }) => void) | null
  send(data: Payload): void
  close(code?: number, reason?: string): void
}

const OPEN = 1
const noop = () => {}
/** The result of every send() finished at once (a settled promise can be shared). */
const WRITTEN: Promise<unknown> = Promise.resolve()
/** Close code this client uses when it drops a connection on purpose (timeouts, reconnect(), a failed hook). */
export const CLIENT_DROP = 4000

/**
 * A WebSocket that reconnects with backoff, queues while disconnected and, in tether mode,
 * delivers every message exactly once in both directions.
 *
 * @typeParam In - messages the server sends
 * @typeParam Out - messages this client sends
 * @example
 * ```ts
 * const sock = new TetherSocket<ServerMsg, ClientMsg>('wss://example.com/live')
 * sock.on('message', (msg) => render(msg))
 * await sock.send({ type: 'chat', text: 'hi' }) // resolves once the server has it
 * ```
 */
export class TetherSocket<In = unknown, Out = unknown> extends EventEmitter<TetherSocketEvents<In>> {
  private readonly options: ResolvedOptions<In, Out>
  private readonly url: UrlProvider
  private readonly outbox: Outbox
  private readonly protocol: Protocol<Out>
  private readonly tether: TetherProtocol<In, Out> | undefined
  private current: SocketState = 'idle'
  private ws: Connection | undefined
  /** Increments per attempt, so late results of an abandoned attempt are recognized and ignored. */
  private attemptId = 0
  /** Failed attempts in a row, the input of the backoff. */
  private failures = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private openedAt = 0
  private unwatch: (() => void) | undefined
  private closeWaiters: (() => void)[] = []
  private counters = { attempts: 0, opened: 0, connectedTime: 0, lastCloseCode: undefined as number | undefined }

  /**
   * @param url - `ws:`, `wss:`, `http:` or `https:` URL, or a function called before every attempt
   * @param options - see {@link TetherSocketOptions}; every option is optional
   * @throws {@link OptionError} for a bad URL, a bad option, or no WebSocket implementation
   */
  constructor(url: UrlProvider, options?: TetherSocketOptions<In, Out>) {
    super()
    if (typeof url !== 'function') normalizeUrl(url)
    this.url = url
    this.options = resolveOptions(options)
    this.outbox = new Outbox(this.options.queue, (error) => this.notify('error', error))
    const host = this.host()
    if (this.options.mode === 'raw') {
      this.protocol = new RawProtocol<In, Out>(host, this.options.serialize, this.options.deserialize)
    } else {
      this.protocol = this.tether = new TetherProtocol<In, Out>(host, this.options.heartbeat, (info) => this.notify('session', info))
    }
    if (this.options.autoConnect) this.connect()
  }

  private get connectTimeout(): number {
    const { reconnect } = this.options
    return reconnect ? reconnect.connectTimeout : DEFAULT_CONNECT_TIMEOUT
  }

  /** The connection state. */
  get state(): SocketState {
    return this.current
  }

  /** Messages queued or written but not yet acknowledged. */
  get pending(): number {
    return this.outbox.size
  }

  /** The server session's id (tether mode), once the server welcomed this client. */
  get sessionId(): string | undefined {
    return this.tether?.sessionId
  }

  /** A snapshot of counters. */
  get stats(): TetherSocketStats {
    const { attempts, opened, connectedTime, lastCloseCode } = this.counters
    return {
      state: this.current,
      queued: this.outbox.queued,
      pending: this.outbox.size,
      attempts,
      reconnects: Math.max(0, opened - 1),
      connectedTime: connectedTime + (this.openedAt ? Date.now() - this.openedAt : 0),
      lastCloseCode,
    }
  }

  /**
   * Sends a message. While disconnected it waits in the queue and is written, in order, on
   * the next open. Never throws; the promise rejects with a {@link TetherError} (also emitted
   * as `error`), and an ignored rejection is never reported as unhandled.
   *
   * @returns resolves when the server acknowledged the message (tether mode) or when it was
   * handed to an open socket (raw mode)
   */
  send(data: Out, options?: SendOptions): Promise<void> {
    return this.enqueue(data, options) as Promise<void>
  }

  /**
   * Sends a request and resolves with the server's reply (tether mode only).
   * @example
   * ```ts
   * const user = await sock.request<User>({ get: 'user', id: 7 }, { timeout: 5000 })
   * ```
   */
  request<R = unknown>(data: Out, options?: RequestOptions): Promise<R> {
    if (!this.protocol.requests) {
      return this.rejectNow(
        new TetherError(
          "request() needs mode 'tether' (replies are matched by id); in raw mode use send() and match replies yourself",
          { data },
          'TetherError',
          'ERR_UNSUPPORTED',
        ),
      )
    }
    return this.enqueue(data, options, true) as Promise<R>
  }

  /** Opens the connection when the socket is `idle` (autoConnect: false) or `closed`. Otherwise does nothing. */
  connect(): void {
    if (this.current !== 'idle' && this.current !== 'closed') return
    this.failures = 0
    this.unwatch ??= watchEnvironment({
      online: () => this.wake(),
      offline: noop,
      visible: () => this.wake(),
    })
    this.attempt()
  }

  /** Drops the current connection (or the backoff wait) and connects again right away, with the backoff reset. */
  reconnect(): void {
    if (this.current === 'idle' || this.current === 'closed') {
      this.connect()
      return
    }
    if (this.current === 'closing') return
    const dropped = this.ws !== undefined
    this.discard(CLIENT_DROP, 'reconnect requested')
    this.failures = 0
    if (dropped) {
      const id = ++this.attemptId
      this.counters.lastCloseCode = CLIENT_DROP
      this.notify('close', { code: CLIENT_DROP, reason: 'reconnect requested', wasClean: false, willReconnect: true })
      if (id !== this.attemptId) return // a listener closed the socket
    }
    this.attempt()
  }

  /**
   * Closes the socket and stops reconnecting. Messages not yet delivered reject with
   * {@link ClosedError}.
   * @param code - 1000 (default) or 3000–4999
   * @returns resolves once the connection is closed
   */
  close(code = 1000, reason = ''): Promise<void> {
    if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new OptionError(`close code must be 1000 or in 3000-4999; got ${code}`)
    }
    if (this.current === 'closed' || this.current === 'idle') {
      this.shutDown()
      return Promise.resolve()
    }
    const done = new Promise<void>((resolve) => this.closeWaiters.push(resolve))
    if (this.current === 'closing') return done
    this.attemptId++
    this.clearTimer()
    this.failEverything(TetherSocket.closedError)
    const ws = this.ws
    if (ws) {
      this.setState('closing')
      // A dead network may never deliver the close event: closing is bounded like connecting.
      this.timer = timer(
        () => this.connectionEnded(ws, { code: 1006, reason: 'close handshake timed out', wasClean: false }),
        this.connectTimeout,
      )
      try {
        ws.close(code, reason)
      } catch {
        this.connectionEnded(ws, { code, reason, wasClean: false })
      }
    } else {
      this.shutDown()
    }
    return done
  }

  // ── the connection's life ────────────────────────────────────────────────

  /**
   * Emits an event. A listener that throws is reported (as uncaught, later) instead of breaking
   * the state machine or the sequencing halfway through a transition.
   */
  private notify<E extends EventEmitter.EventNames<TetherSocketEvents<In>>>(
    event: E,
    ...args: EventEmitter.EventArgs<TetherSocketEvents<In>, E>
  ): void {
    try {
      this.emit(event, ...args)
    } catch (error) {
      reportLater(error)
    }
  }

  private setState(next: SocketState): void {
    const prev = this.current
    if (prev === next) return
    this.current = next
    this.notify('state', next, prev)
  }

  private clearTimer(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /** One connection attempt: resolve URL and protocols, create the WebSocket, wait for open. */
  private attempt(): void {
    const id = ++this.attemptId
    this.clearTimer()
    this.setState('connecting')
    if (id !== this.attemptId) return // a state listener closed or reconnected the socket
    this.counters.attempts++
    const timeout = this.connectTimeout
    this.timer = timer(
      () => this.attemptFailed(new TimeoutError(`connection attempt not open after ${timeout} ms (reconnect.connectTimeout)`)),
      timeout,
    )
    const { url } = this
    const { protocols } = this.options
    // Providers run inside the promise chain, so a sync throw is a failed attempt like a rejection.
    Promise.resolve()
      .then(() => Promise.all([typeof url === 'function' ? url() : url, typeof protocols === 'function' ? protocols() : protocols]))
      .then(([target, offered]) => {
        if (id === this.attemptId) this.open(normalizeUrl(target), offered)
      })
      .catch((cause: unknown) => {
        if (id === this.attemptId) {
          this.attemptFailed(
            new ConnectionError(`the url or protocols provider failed: ${cause instanceof Error ? cause.message : String(cause)}`, {
              cause,
            }),
          )
        }
      })
  }

  private open(url: string, offered: string | string[] | undefined): void {
    const required = this.protocol.subprotocol
    const list = offered === undefined ? [] : typeof offered === 'string' ? [offered] : offered
    const protocols = required ? [required, ...list.filter((p) => p !== required)] : list
    let ws: Connection
    try {
      ws = new this.options.WebSocket(url, protocols) as unknown as Connection
    } catch (cause) {
      this.attemptFailed(
        new ConnectionError(
          `could not create a WebSocket for ${redactUrl(url)}: ${cause instanceof Error ? cause.message : String(cause)}`,
          {
            cause,
          },
        ),
      )
      return
    }
    this.ws = ws
    ws.binaryType = 'arraybuffer'
    let noSubprotocol = false
    // A close event follows every error. Node's ws says when the server selected no
    // subprotocol (browsers only report a failed handshake): then it is no tether server.
    ws.onerror = (event) => {
      noSubprotocol ||= this.tether !== undefined && /subprotocol/i.test(String(event?.message))
    }
    ws.onopen = () => {
      this.protocol.attach(ws.protocol ?? '')
    }
    ws.onmessage = (event) => this.protocol.receive(event.data)
    ws.onclose = (event) => {
      if (noSubprotocol && this.ws === ws) this.tether?.notTether('the handshake selected no subprotocol')
      else this.connectionEnded(ws, { code: event.code, reason: event.reason, wasClean: event.wasClean })
    }
  }

  /** The protocol's handshake is done: run the hook, then become `open` and write the backlog. */
  private ready(): void {
    const ws = this.ws
    const hook = this.options.onOpen
    if (!hook) {
      this.becomeOpen()
      return
    }
    const id = this.attemptId
    let result: void | Promise<void>
    try {
      result = hook({
        send: (data) =>
          (id === this.attemptId && this.ws === ws
            ? this.enqueue(data, undefined, false, true)
            : this.rejectNow(new ConnectionError('onOpen send(): the connection this hook ran for is gone', { data }))) as Promise<void>,
        connection: this.counters.opened + 1,
      })
    } catch (cause) {
      this.hookFailed(cause)
      return
    }
    Promise.resolve(result).then(
      () => {
        if (id === this.attemptId && this.ws === ws) this.becomeOpen()
      },
      (cause: unknown) => {
        if (id === this.attemptId && this.ws === ws) this.hookFailed(cause)
      },
    )
  }

  private hookFailed(cause: unknown): void {
    this.attemptFailed(new ConnectionError(`options.onOpen failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause }))
  }

  private becomeOpen(): void {
    this.clearTimer()
    this.openedAt = Date.now()
    this.counters.opened++
    this.setState('open')
    if (this.current !== 'open') return // a state listener closed or reconnected the socket
    this.notify('open')
    if (this.current === 'open') this.protocol.flush()
  }

  /** An attempt failed before it opened (timeout, provider, constructor, hook). */
  private attemptFailed(error: TetherError): void {
    this.notify('error', error)
    this.discard(CLIENT_DROP, error.message.slice(0, 120))
    this.lost({ code: 1006, reason: error.message, wasClean: false })
  }

  /** Forgets the current WebSocket (closing it) without waiting for its close event. */
  private discard(code: number, reason: string): void {
    const ws = this.ws
    if (!ws) return
    this.ws = undefined
    ws.onopen = ws.onmessage = ws.onclose = null
    try {
      ws.close(code, reason)
    } catch {
      // already closed, or still connecting in an implementation that refuses close then
    }
    this.connectionGone()
  }

  /** Bookkeeping when a connection (open or not) is gone. */
  private connectionGone(): void {
    this.protocol.detach()
    this.outbox.rewind()
    if (this.openedAt) {
      const up = Date.now() - this.openedAt
      this.openedAt = 0
      this.counters.connectedTime += up
      const { reconnect } = this.options
      if (reconnect && up >= reconnect.resetAfter) this.failures = 0
    }
  }

  /** The WebSocket's close event. */
  private connectionEnded(ws: Connection, info: CloseInfo): void {
    if (ws !== this.ws) return
    this.ws = undefined
    ws.onopen = ws.onmessage = ws.onclose = null
    this.connectionGone()
    if (this.current === 'closing') {
      this.counters.lastCloseCode = info.code
      this.notify('close', { ...info, willReconnect: false })
      this.shutDown()
      return
    }
    this.lost(info)
  }

  /** A connection or attempt is over without the user asking: retry or give up. */
  private lost(info: CloseInfo): void {
    const id = ++this.attemptId // late results of the attempt that just ended are ignored
    this.clearTimer()
    this.counters.lastCloseCode = info.code
    const { reconnect } = this.options
    let retry = false
    if (reconnect && this.failures < reconnect.maxRetries) {
      try {
        retry = reconnect.shouldReconnect(info)
      } catch (cause) {
        this.notify('error', new OptionError('options.reconnect.shouldReconnect threw; not reconnecting', { cause }))
      }
    }
    this.notify('close', { ...info, willReconnect: retry })
    if (id !== this.attemptId || this.current === 'closed') return // a listener called close() or reconnect()
    if (!retry) {
      this.giveUp(info)
      return
    }
    this.failures++
    this.setState('reconnecting')
    this.scheduleRetry(info.code)
  }

  private scheduleRetry(code?: number): void {
    // Offline: no attempt is spent; the `online` event retries at once.
    if (!isOnline()) return
    const { reconnect } = this.options
    if (!reconnect) return
    const delay = backoffDelay(reconnect, this.failures, code)
    const id = this.attemptId
    this.notify('reconnecting', { attempt: this.failures, delay })
    if (id !== this.attemptId || this.current !== 'reconnecting') return // a listener closed or reconnected
    this.timer = timer(() => {
      this.timer = undefined
      if (isOnline()) this.attempt()
    }, delay)
  }

  /**
   * The network came back or the page became visible: an open connection may be dead without
   * knowing it, so it is probed; a waiting one retries at once with the backoff reset.
   */
  private wake(): void {
    if (this.current === 'open') this.protocol.probe?.()
    if (this.current !== 'reconnecting' || !isOnline()) return
    this.failures = 0
    this.attempt()
  }

  private giveUp(info: CloseInfo): void {
    const reason = `gave up reconnecting after ${this.failures} failed attempt(s); last close code ${info.code}${info.reason ? ` (${info.reason})` : ''}`
    this.failEverything((entry) => new DeliveryError(`not delivered: ${reason}`, { data: entry.data }))
    this.shutDown()
  }

  private failEverything(makeError: (entry: Entry) => TetherError): void {
    this.protocol.shutdown?.(makeError)
    this.outbox.failAll(makeError)
  }

  private static closedError = (entry: Entry) =>
    new ClosedError('the socket was closed before this message was delivered', { data: entry.data })

  /** Enters `closed` and releases everything that could keep the socket alive. */
  private shutDown(): void {
    this.attemptId++
    this.clearTimer()
    this.failEverything(TetherSocket.closedError)
    this.unwatch?.()
    this.unwatch = undefined
    this.setState('closed')
    this.failEverything(TetherSocket.closedError) // sends made by listeners meanwhile
    const waiters = this.closeWaiters
    this.closeWaiters = []
    for (const resolve of waiters) resolve()
  }

  // ── messages ──────────────────────────────────────────────────────────────

  private enqueue(data: Out, options: SendOptions | undefined, request = false, first = false): Promise<unknown> {
    if (this.current === 'closed') {
      return this.rejectNow(new ClosedError('the socket is closed; call connect() to open it again before sending', { data }))
    }
    let payload: Payload
    try {
      payload = this.protocol.encode(data)
    } catch (cause) {
      return this.rejectNow(
        cause instanceof TetherError
          ? cause
          : new TetherError(
              `could not encode the message: ${cause instanceof Error ? cause.message : String(cause)}`,
              { cause, data },
              'TetherError',
              'ERR_ENCODE',
            ),
      )
    }
    const timeout = options?.timeout === undefined ? (request ? this.options.requestTimeout : this.options.ackTimeout) : options.timeout
    const ttl = options?.ttl === undefined ? this.options.queue.ttl : options.ttl
    const key = options?.key
    const signal = options?.signal
    if (
      !(timeout > 0) ||
      !(ttl > 0) ||
      (key !== undefined && typeof key !== 'string') ||
      (signal !== undefined && typeof (signal as AbortSignal | null)?.addEventListener !== 'function')
    ) {
      return this.rejectNow(
        new OptionError('send options: timeout and ttl must be numbers > 0, key a string, signal an AbortSignal', { data }),
      )
    }
    // Raw mode, open, nothing queued, no per-message options: written at once, as raw ws would.
    if (!options && !request && !first && this.current === 'open' && !this.outbox.cursor && this.protocol.writeNow?.(payload)) {
      return WRITTEN
    }
    const now = timeout === Number.POSITIVE_INFINITY && ttl === Number.POSITIVE_INFINITY ? 0 : Date.now()
    const requestId = request ? this.protocol.nextId?.() : undefined
    const promise = this.outbox.add(data, payload, { deadline: now + timeout, staleAt: now + ttl, signal, key, requestId }, first)
    if (first) this.protocol.flush(1)
    else if (this.current === 'open') this.protocol.flush()
    return promise
  }

  /** A rejected promise that is already marked handled, with the error also emitted. */
  private rejectNow<T>(error: TetherError): Promise<T> {
    const promise = Promise.reject(error)
    promise.catch(noop)
    this.notify('error', error)
    return promise
  }

  /** The capabilities handed to the wire protocol. */
  private host(): ProtocolHost<In> {
    return {
      outbox: this.outbox,
      write: (frame) => {
        const ws = this.ws
        if (!ws || ws.readyState !== OPEN) return false
        ws.send(frame)
        return true
      },
      ready: () => this.ready(),
      deliver: (message) => this.notify('message', message),
      report: (error) => this.notify('error', error),
      drop: (code, reason, error, final) => {
        if (error) this.notify('error', error)
        if (!this.ws || this.current === 'closing') return
        this.discard(code, reason)
        if (final) {
          this.counters.lastCloseCode = code
          this.notify('close', { code, reason, wasClean: false, willReconnect: false })
          this.giveUp({ code, reason, wasClean: false })
        } else this.lost({ code, reason, wasClean: false })
      },
    }
  }
}
