/**
 * `TetherSocket`: the connection's life as one state machine, and the wiring of the
 * parts that do the rest (options.ts, backoff.ts, outbox.ts, environment.ts and a wire
 * protocol from wire/).
 *
 * ```
 *              connect()              open + handshake + onOpen hook
 *   idle ────────────────► connecting ──────────────────────────────► open
 *                           │   ▲   ▲            reconnect()            │ │
 *            attempt failed │   │   └───────────────────────────────────┘ │ connection lost
 *                (retrying) ▼   │ delay passed, online, reconnect()       ▼ (retrying)
 *                         reconnecting ◄──────────────────────────────────┘
 *
 *   idle, reconnecting ─── close() ──► closed ◄── close() ─── connecting (no WebSocket yet)
 *   connecting, open ─── close() ──► closing ── close event, its timeout, connect() ──► closed
 *   connecting, open ─── retrying given up or declined ──► closed ── connect() ──► connecting
 * ```
 * These transitions are the table `TRANSITIONS` (lifecycle.ts), which `setState` enforces.
 * Every connection or attempt ends through `end()`, the one place that records the close
 * code, emits `close` and decides between retrying and stopping; `closed` is entered only by
 * `enterClosed()`. One timer serves the lifecycle: the backoff wait while `reconnecting`, the
 * connect timeout while `connecting`, the close handshake's bound while `closing`, and the
 * short grace after an `error` that no `close` may follow (undici).
 * @module
 */
import { EventEmitter } from 'eventemitter3'
import { DEV } from '../dev.js'
import { ClosedError, ConnectionError, DeliveryError, OptionError, type PersistError, TetherError, TimeoutError } from '../errors.js'
import { cutReason, MAX_REASON_BYTES, utf8Length } from '../protocol/close-reason.js'
import { CloseCode } from '../protocol/frames.js'
import type { ReplyOf, RequestReply } from '../protocol/requests.js'
import { backoffDelay } from './backoff.js'
import { isOnline, watchEnvironment } from './environment.js'
import { describeFailure, type ErrorEventLike } from './failure.js'
import { checkTransition, type SocketState } from './lifecycle.js'
import {
  type CloseInfo,
  checkProtocols,
  checkSendOptions,
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
import type { DurableLog, RestoreContext, RestoredInfo } from './persist.js'
import { reportLater } from './report.js'
import { HANDOVER, REFUSED } from './shared/codes.js'
import type { FollowerProtocol } from './shared/follower.js'
import type { HeldSocket, HolderHooks } from './shared/holder.js'
import type { SharedTab } from './shared/tab.js'
import { timer } from './timers.js'
import { RawProtocol } from './wire/raw.js'
import { type SessionInfo, TetherProtocol } from './wire/tether.js'
import type { Handover, MessageInfo, MissedInfo, Protocol, ProtocolHost, WireData } from './wire/types.js'

export type { SocketState } from './lifecycle.js'

/** The `close` event's argument. */
export interface CloseEventInfo extends CloseInfo {
  /** Whether a reconnect is scheduled. */
  willReconnect: boolean
}

/** The `reconnecting` event's argument. */
export interface ReconnectingInfo {
  /** Failed attempts in a row so far (1 before the first retry). */
  attempt: number
  /** Milliseconds until the next attempt; `Infinity` while waiting for the network. */
  delay: number
  /**
   * What the next attempt waits for: `'delay'`, the backoff `delay` (a UI may count down), or
   * `'network'`, the browser to report itself online again (no attempt is made until then).
   */
  waitingFor: 'delay' | 'network'
}

/** A snapshot of counters, for dashboards and debugging. */
export interface TetherSocketStats {
  /** The connection state. */
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
export interface TetherSocketEvents<In, Out = unknown> {
  /** The socket is open and the backlog is being written. */
  open: () => void
  /**
   * A message from the server (in tether mode: exactly once, in order), and where it stands
   * (`info.id`; `info.topic` for a message published to a topic the session is a member of).
   */
  message: (data: In, info: MessageInfo) => void
  /**
   * Tether mode: messages of a topic this session is a member of were dropped by the server's
   * retention before they reached it (the session was away too long). Comes once, in its place
   * among the messages; the app reloads what it lacks from its own API (see {@link MissedInfo}).
   */
  missed: (info: MissedInfo) => void
  /**
   * A connection (or an attempt) ended. The final one (`willReconnect: false`) fires once the
   * state is `closed`, so a listener may call `connect()`.
   */
  close: (info: CloseEventInfo) => void
  /** A retry is scheduled: after `delay` ms, or once the network is back (`waitingFor: 'network'`). */
  reconnecting: (info: ReconnectingInfo) => void
  /** The state changed. */
  state: (next: SocketState, prev: SocketState) => void
  /**
   * Something went wrong; the socket keeps running where it can. A failed attempt is reported
   * when it is the first since the socket was open, then only when its message changes.
   */
  error: (error: TetherError) => void
  /** Tether mode: a new server session began (the first, or one replacing an expired session). */
  session: (info: SessionInfo) => void
  /**
   * `pending` changed: once per tick in which it did, with the count at the end of the tick
   * (queued, written, acknowledged or failed messages). Changes made before the first listener
   * was added are not reported: read `pending` when subscribing.
   */
  pending: (count: number) => void
  /**
   * With `persist`: what became of the messages a previous page left (this tab's before a
   * reload, or a closed tab's), once every one of them is finished. Their `send()` promises
   * went with that page; this is where the app learns their fate.
   */
  restored: (info: RestoredInfo<Out>) => void
  /**
   * Option `shared`: this tab's part changed: it holds the group's connection, another tab does,
   * or it has a connection of its own (see {@link SharedInfo}).
   */
  shared: (info: SharedInfo) => void
}

/**
 * The `shared` event's argument (option `shared`): which tab holds the connection the tabs share.
 * @example
 * ```ts
 * sock.on('shared', ({ role, reason }) => {
 *   badge.textContent = role === 'holder' ? 'this tab holds the connection' : role === 'follower' ? 'shared' : `own connection: ${reason}`
 * })
 * ```
 */
export interface SharedInfo {
  /**
   * `'holder'`: this tab holds the connection for the group; `'follower'`: another tab does, and
   * this one talks to it; `'alone'`: this tab has a connection of its own (`reason` says why).
   */
  readonly role: 'holder' | 'follower' | 'alone'
  /**
   * With `'alone'`: `'unsupported'` (no Web Locks or no BroadcastChannel here) or `'principal'`
   * (the holder connects with another URL or protocols: another user's credentials).
   */
  readonly reason?: 'unsupported' | 'principal'
}

/** The part of a WebSocket this class uses (the browser's and the `ws` package's agree on it). */
interface Connection {
  readonly readyState: number
  readonly protocol: string
  binaryType: string
  onopen: (() => void) | null
  onmessage: ((event: { data: WireData }) => void) | null
  onclose: ((event: { code: number; reason: string; wasClean: boolean }) => void) | null
  onerror: ((event: ErrorEventLike) => void) | null
  send(data: Payload): void
  close(code?: number, reason?: string): void
  /** `ws` only: ends the connection without a close handshake. */
  terminate?(): void
}

const CONNECTING = 0
const OPEN = 1
/**
 * How long a connection that reported an error while still connecting may take to report its
 * close. undici 6 (the WebSocket of Node 20 and 22) never does, so without this every refused
 * attempt would wait the whole connect timeout. Spec implementations are closed already when
 * they fire the error, and fire close in the same task.
 */
const CLOSE_GRACE = 50
const noop = () => {}
/**
 * What tells one failed attempt from another in production builds, whose messages name only the
 * code (in development the message does, as it names the cause): the code and the platform's error.
 */
const failureKey = (error: TetherError): string => `${error.code} ${String((error.cause as Error | undefined)?.message ?? error.cause)}`
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`

/**
 * Asks a WebSocket to close. An implementation that refuses the code or reason must not keep
 * the connection open behind our back: it is closed without them, or terminated.
 * @returns false when every way failed (the connection is closed already)
 */
function shut(ws: Connection, code: number, reason: string): boolean {
  try {
    ws.close(code, reason)
    return true
  } catch {}
  try {
    ws.close()
    return true
  } catch {}
  try {
    ws.terminate?.()
    return ws.terminate !== undefined
  } catch {
    return false
  }
}
const { CLIENT_DROP } = CloseCode

/**
 * What follows the end of a connection or attempt (see `end()`): a retry as the reconnect
 * policy says (or giving up when it says no), a new attempt at once (`reconnect()`), giving up
 * (`why` goes into the DeliveryError of everything undelivered), or the completion of the
 * close `close()` asked for.
 */
type Sequel =
  | { next: 'retry'; delay?: number }
  | { next: 'reconnect' }
  | { next: 'give up'; why: string; cause: TetherError | undefined }
  | { next: 'close' }
const RETRY: Sequel = { next: 'retry' }
const RECONNECT: Sequel = { next: 'reconnect' }
const CLOSE: Sequel = { next: 'close' }

/** How `enqueue` treats a message: a request awaits a reply; the onOpen hook's go ahead of the queue. */
interface EnqueueAs {
  request?: boolean
  aheadOfQueue?: boolean
}
/**
 * The reply type of `request<R>(data: Q)`: `R` when given, else the reply `Requests` gives `Q`.
 * `R` is never inferred from where the reply goes (`const n: string = await sock.request(…)` must
 * not make the reply a string): hence `NoInfer` where it is used.
 */
export type ReplyType<R, Requests extends RequestReply, Q> = [R] extends [never] ? ReplyOf<Requests, Q> : R

/** A plain `send()`. */
const AS_SEND: EnqueueAs = {}

/** What a stepping-down holder's socket fails its entries with: nobody hears it (the next holder delivers them). */
const noopError = () => new ClosedError('')

/** The error of a message left undelivered by `close()` (module-level: a static would show on `window.TetherSocket`). */
const closedError = (entry: Entry) =>
  new ClosedError(DEV ? 'the socket was closed before this message was delivered' : '', { data: entry.data })

/**
 * A WebSocket that reconnects with backoff, queues while disconnected and, in tether mode,
 * delivers every message exactly once in both directions.
 *
 * @typeParam In - messages the server sends
 * @typeParam Out - messages this client sends
 * @typeParam Requests - the requests this client makes and their replies (a union of
 *   {@link RequestReply}); by default any request, with an `unknown` reply
 * @example
 * ```ts
 * const sock = new TetherSocket<ServerMsg, ClientMsg, Requests>('wss://example.com/live')
 * sock.on('message', (msg) => render(msg))
 * await sock.send({ type: 'chat', text: 'hi' }) // resolves once the server has it
 * const user = await sock.request({ get: 'user', id: 7 }) // typed by Requests
 * ```
 */
export class TetherSocket<In = unknown, Out = unknown, Requests extends RequestReply = RequestReply> extends EventEmitter<
  TetherSocketEvents<In, Out>
> {
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
  /** While `closing`: the close `close()` asked for, reported if `connect()` overtakes the handshake. */
  private requestedClose: CloseInfo = { code: 1000, reason: '', wasClean: false }
  /** The last failed attempt of the current run of failures (reset by an open), the cause a give-up names. */
  private lastFailure: TetherError | undefined
  private counters = { attempts: 0, opened: 0, connectedTime: 0, lastCloseCode: undefined as number | undefined }
  /** Option `shared`: this socket's membership in its group (undefined without the option, or where it cannot share). */
  private readonly sharing: SharedTab | undefined
  /** The holder's own socket (made by a shared socket of the page elected): where its events go. */
  private holding: HolderHooks | undefined
  /** Option `shared`: this tab's part, as the `shared` event last said. */
  private part: SharedInfo | undefined
  private partSaid = false
  /**
   * With `persist`: the store as this socket uses it. `opening` until restored (the first attempt
   * waits for it), then `open` with the journal; `memory` once it failed (for the socket's life).
   */
  private durable:
    | { state: 'closed' }
    | { state: 'opening'; done: Promise<void> }
    | { state: 'open'; journal: DurableLog }
    | { state: 'memory' } = {
    state: 'closed',
  }

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
    this.outbox = new Outbox(this.options.queue, (error) => this.notify('error', error), this)
    const host = this.host()
    const { shared, persist } = this.options
    // The parts of sharing come with the store (tethersocket/persist), which `shared` needs.
    const parts =
      shared === undefined
        ? undefined
        : persist?.share?.<In, Out>(shared, typeof url === 'function' ? '' : normalizeUrl(url), host, {
            hold: (hooks) => this.hold(hooks),
            wake: () => {
              if (this.current === 'reconnecting') this.attempt()
            },
            role: (role) => this.setPart({ role }),
            session: (info) => this.notify('session', info),
            restored: (info) => this.notify('restored', info as RestoredInfo<Out>),
          })
    if (shared !== undefined) {
      this.part = parts ? { role: 'follower' } : { role: 'alone', reason: 'unsupported' }
      // Said once listeners added after the constructor can hear it; changes from then on at once.
      queueMicrotask(() => {
        this.partSaid = true
        this.notify('shared', this.part as SharedInfo)
      })
    }
    if (parts) {
      this.protocol = parts.protocol
      this.sharing = parts.tab
    } else if (this.options.mode === 'raw') {
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

  /** The server session's id (tether mode), once the server welcomed this client (with `shared`: the holder's). */
  get sessionId(): string | undefined {
    return (this.tether ?? (this.protocol as FollowerProtocol<In, Out>)).sessionId
  }

  /** Option `shared`: this tab's part (see the `shared` event); undefined without the option. */
  get shared(): SharedInfo | undefined {
    return this.part
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
   * Sends a request and resolves with the server's reply (tether mode only). The reply's type
   * comes from the socket's `Requests` (the kind whose request type `data` fits), or from `R`
   * when given.
   * @example
   * ```ts
   * const user = await sock.request({ get: 'user', id: 7 }, { timeout: 5000 }) // typed by Requests
   * const time = await sock.request<number>({ get: 'time' }) // or say the reply's type
   * ```
   */
  request<R = never, Q extends Requests['request'] = Requests['request']>(
    data: Q,
    options?: RequestOptions,
  ): Promise<ReplyType<NoInfer<R>, Requests, Q>> {
    if (!this.protocol.requests) {
      return this.rejectNow(
        new TetherError(
          DEV ? "request() needs mode 'tether' (replies are matched by id); in raw mode use send() and match replies yourself" : '',
          { data },
          'TetherError',
          'ERR_UNSUPPORTED',
        ),
      )
    }
    return this.enqueue(data as unknown as Out, options, { request: true }) as Promise<ReplyType<NoInfer<R>, Requests, Q>>
  }

  /**
   * Opens the connection when the socket is `idle` (autoConnect: false), `closed`, or `closing`
   * (the close then completes at once, without waiting for the server's close frame; the old
   * connection still closes). Otherwise does nothing.
   */
  connect(): void {
    if (this.current === 'closing' && this.ws) this.end(this.requestedClose, CLOSE)
    if (this.current !== 'idle' && this.current !== 'closed') return
    this.failures = 0
    this.lastFailure = undefined
    this.unwatch ??= watchEnvironment({
      online: () => this.wake(),
      offline: () => this.offline(),
      visible: () => this.wake(),
    })
    this.sharing?.start()
    this.attempt()
  }

  /**
   * Drops the current connection (or the backoff wait) and connects again right away, with the
   * backoff reset. When `idle`, `closing` or `closed` it does what `connect()` does.
   */
  reconnect(): void {
    if (this.current === 'idle' || this.current === 'closed' || this.current === 'closing') {
      this.connect()
      return
    }
    this.lastFailure = undefined
    this.failures = 0
    this.sharing?.retry() // the holder's connection, waiting to try again, tries now
    if (this.ws) this.end({ code: CLIENT_DROP, reason: 'reconnect requested', wasClean: false }, RECONNECT, { closeWith: CLIENT_DROP })
    else this.attempt() // no connection to end: the backoff wait, or an attempt still resolving its URL
  }

  /**
   * Closes the socket and stops reconnecting. Messages not yet delivered reject with
   * {@link ClosedError}.
   * @param code - 1000 (default) or 3000–4999
   * @returns resolves once the connection is closed
   */
  close(code = 1000, reason = ''): Promise<void> {
    if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new OptionError(DEV ? `close code must be 1000 or in 3000-4999; got ${code}` : '')
    }
    if (typeof reason !== 'string') throw new OptionError(DEV ? `close reason must be a string; got ${typeof reason}` : '')
    const bytes = utf8Length(reason)
    if (bytes > MAX_REASON_BYTES) {
      throw new OptionError(
        DEV
          ? `close reason must be at most ${MAX_REASON_BYTES} UTF-8 bytes (the WebSocket limit); got ${bytes}. Shorten it, or send the details as a message before closing`
          : '',
      )
    }
    if (this.current === 'closed' || this.current === 'idle') {
      this.enterClosed()
      return Promise.resolve()
    }
    const done = new Promise<void>((resolve) => this.closeWaiters.push(resolve))
    if (this.current === 'closing') return done
    const id = this.supersede()
    this.clearTimer()
    this.failEverything(closedError)
    if (this.superseded(id)) return done // an error listener closed (or reconnected) the socket meanwhile
    const ws = this.ws
    if (ws) {
      this.requestedClose = { code, reason, wasClean: false }
      // A dead network may never deliver the close event: closing is bounded like connecting.
      this.timer = timer(() => {
        if (this.ws === ws) this.end({ code: 1006, reason: 'close handshake timed out', wasClean: false }, CLOSE)
      }, this.connectTimeout)
      // undici fires `error` from within close() on a connection still connecting, and no close
      // event after it: its handler then shortens this wait to CLOSE_GRACE.
      const asked = shut(ws, code, reason)
      this.setState('closing')
      if ((this.current as SocketState) !== 'closing') return done // a state listener called connect(): the close is complete
      if (!asked) this.end(this.requestedClose, CLOSE) // it was closed already
    } else {
      this.enterClosed()
    }
    return done
  }

  // ── the connection's life ────────────────────────────────────────────────

  /**
   * Emits an event. A listener that throws is reported (as uncaught, later) instead of breaking
   * the state machine or the sequencing halfway through a transition.
   */
  private notify<E extends EventEmitter.EventNames<TetherSocketEvents<In, Out>>>(
    event: E,
    ...args: EventEmitter.EventArgs<TetherSocketEvents<In, Out>, E>
  ): void {
    try {
      this.emit(event, ...args)
    } catch (error) {
      reportLater(error)
    }
  }

  /** Every state change goes through here and must be one of `TRANSITIONS` (lifecycle.ts). */
  private setState(next: SocketState): void {
    const prev = this.current
    if (prev === next) return
    checkTransition(prev, next)
    this.current = next
    this.notify('state', next, prev)
  }

  private clearTimer(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  /**
   * Starts a new attempt id: late results of the attempt that was current (its timers,
   * providers, hook and WebSocket events) are then recognized by {@link superseded}.
   */
  private supersede(): number {
    return ++this.attemptId
  }

  /**
   * Whether the attempt `id` was taken is over: a new attempt began, or the socket was closed
   * or reconnected (often by a listener of an event just emitted).
   */
  private superseded(id: number): boolean {
    return id !== this.attemptId
  }

  /** One connection attempt: resolve URL and protocols, create the WebSocket, wait for open. */
  private attempt(): void {
    const id = this.supersede()
    this.clearTimer()
    this.setState('connecting')
    if (this.superseded(id)) return // a state listener closed or reconnected the socket
    this.counters.attempts++
    const timeout = this.connectTimeout
    this.timer = timer(
      () => this.attemptFailed(new TimeoutError(DEV ? `connection attempt not open after ${timeout} ms (reconnect.connectTimeout)` : '')),
      timeout,
    )
    const { url } = this
    const { protocols } = this.options
    // Providers run inside the promise chain, so a sync throw is a failed attempt like a rejection.
    // With `persist`, the first attempt waits until what previous pages left is back in the outbox.
    Promise.resolve(this.openStore())
      .then(() => Promise.all([typeof url === 'function' ? url() : url, typeof protocols === 'function' ? protocols() : protocols]))
      .then(([target, offered]) => {
        if (!this.superseded(id)) this.open(normalizeUrl(target), typeof protocols === 'function' ? checkProtocols(offered) : offered)
      })
      .catch((cause: unknown) => {
        if (!this.superseded(id)) {
          this.attemptFailed(
            new ConnectionError(
              DEV ? `the url or protocols provider failed: ${cause instanceof Error ? cause.message : String(cause)}` : '',
              {
                cause,
              },
            ),
          )
        }
      })
  }

  private open(url: string, offered: string | string[] | undefined): void {
    const required = this.protocol.subprotocol
    const list = offered === undefined ? [] : typeof offered === 'string' ? [offered] : offered
    const protocols = required ? [required, ...list.filter((p) => p !== required)] : list
    let ws: Connection
    // The principal tabs compare (option `shared`): the URL and the protocols the app offers.
    this.holding?.resolved(url, list)
    try {
      ws = (this.sharing ? this.sharing.link(url, list) : new this.options.WebSocket(url, protocols)) as unknown as Connection
    } catch (cause) {
      this.attemptFailed(
        new ConnectionError(
          DEV ? `could not create a WebSocket for ${redactUrl(url)}: ${cause instanceof Error ? cause.message : String(cause)}` : '',
          {
            cause,
          },
        ),
      )
      return
    }
    this.ws = ws
    ws.binaryType = 'arraybuffer'
    /** The last error event: what the platform says about a failure, if anything. */
    let failure: ErrorEventLike | undefined
    const ended = (info: CloseInfo, retryIn?: number) => {
      if (this.ws !== ws) return
      // Node's ws says when the server selected no subprotocol (browsers only report a failed
      // handshake): then it is no tether server, and retrying cannot help.
      if (this.tether && /subprotocol/i.test(String(failure?.message))) {
        this.tether.notTether(DEV ? 'the handshake selected no subprotocol' : '')
        return
      }
      if (this.sharing && (info.code === HANDOVER || info.code === REFUSED)) {
        // Not a failure: the link goes to another holder at once, or (refused: another principal)
        // to a group of this tab's own.
        if (info.code === REFUSED) {
          this.sharing.alone()
          this.setPart({ role: 'alone', reason: 'principal' })
        }
        this.end(info, this.current === 'closing' ? CLOSE : RECONNECT)
        return
      }
      if (this.current === 'connecting') {
        const cause = failure?.error
        const error = new ConnectionError(
          DEV ? `could not connect to ${redactUrl(url)}: ${describeFailure(failure, info)}` : '',
          cause === undefined ? undefined : { cause },
        )
        const id = this.attemptId
        this.reportFailure(error)
        if (this.superseded(id)) {
          // An error listener closed the socket: this WebSocket has ended already, so the close is complete.
          if ((this.current as SocketState) === 'closing' && this.ws === ws) this.end(info, CLOSE)
          return // or it reconnected: the new attempt goes on
        }
      }
      // A shared socket's link says when the holder tries again: this tab's next attempt follows it.
      this.end(info, this.current === 'closing' ? CLOSE : retryIn === undefined ? RETRY : { next: 'retry', delay: retryIn })
    }
    ws.onerror = (event) => {
      failure = event ?? {}
      // A close event follows every error, except in undici 6 (Node's built-in WebSocket in
      // Node 20 and 22): a failed handshake fires error only, and the socket stays CONNECTING.
      if (this.ws === ws && ws.readyState === CONNECTING) {
        this.clearTimer()
        this.timer = timer(() => {
          ended({ code: 1006, reason: '', wasClean: false })
          shut(ws, CLIENT_DROP, '')
        }, CLOSE_GRACE)
      }
    }
    ws.onopen = () => {
      this.protocol.attach(ws.protocol ?? '')
    }
    ws.onmessage = (event) => this.protocol.receive(event.data)
    ws.onclose = (event) =>
      ended({ code: event.code, reason: event.reason, wasClean: event.wasClean }, (event as { retryIn?: number }).retryIn)
  }

  /** The protocol's handshake is done: run the hook, then become `open` and write the backlog. */
  private ready(): void {
    const ws = this.ws
    // Only an attempt still connecting can open (a listener may have closed or reconnected it).
    if (!ws || this.current !== 'connecting') return
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
          (!this.superseded(id) && this.ws === ws
            ? this.enqueue(data, undefined, { aheadOfQueue: true })
            : this.rejectNow(
                new ConnectionError(DEV ? 'onOpen send(): the connection this hook ran for is gone' : '', { data }),
              )) as Promise<void>,
        connection: this.counters.opened + 1,
      })
    } catch (cause) {
      // The hook may have closed or reconnected the socket before it threw: then its failure is moot.
      if (!this.superseded(id) && this.ws === ws) this.hookFailed(cause)
      return
    }
    Promise.resolve(result).then(
      () => {
        if (!this.superseded(id) && this.ws === ws) this.becomeOpen()
      },
      (cause: unknown) => {
        if (!this.superseded(id) && this.ws === ws) this.hookFailed(cause)
      },
    )
  }

  private hookFailed(cause: unknown): void {
    this.attemptFailed(
      new ConnectionError(DEV ? `options.onOpen failed: ${cause instanceof Error ? cause.message : String(cause)}` : '', { cause }),
    )
  }

  private becomeOpen(): void {
    this.clearTimer()
    this.lastFailure = undefined
    this.openedAt = Date.now()
    this.counters.opened++
    this.setState('open')
    if (this.current !== 'open') return // a state listener closed or reconnected the socket
    this.notify('open')
    if (this.current === 'open') this.protocol.flush()
  }

  /** An attempt failed before the WebSocket was created or while it was opening (timeout, provider, constructor, hook). */
  private attemptFailed(error: TetherError): void {
    const id = this.attemptId
    this.reportFailure(error)
    if (this.superseded(id)) return // an error listener closed or reconnected the socket
    this.end({ code: 1006, reason: cutReason(error.message), wasClean: false }, RETRY, { closeWith: CLIENT_DROP })
  }

  /**
   * Reports a failed attempt as `error`, without flooding while a server stays down: the first
   * failure after an open (or `connect()`/`reconnect()`), then each one whose message differs
   * from the previous failure's (in production builds, whose messages name no cause: whose code
   * or platform error differs). Remembered as the cause a give-up names.
   */
  private reportFailure(error: TetherError): void {
    const previous = this.lastFailure
    this.lastFailure = error
    if (DEV ? previous?.message !== error.message : !previous || failureKey(previous) !== failureKey(error)) this.notify('error', error)
  }

  /**
   * The one way a connection or attempt ends, whoever ended it (the WebSocket's close event, a
   * timeout, the protocol, `reconnect()`, the close `close()` asked for). The WebSocket is let
   * go, the close code recorded, and `close` emitted once, with what follows decided here:
   * another attempt (after the backoff, or at once for `reconnect()`), or the end of the run:
   * what waits fails (a give-up's `DeliveryError` names the last failure as its cause), the
   * state becomes `closed`, and only then the final `close` goes out, so that its listeners see
   * the final state and may `connect()` again.
   * @param closeWith - the close code to send when the connection is still up (we end it)
   */
  private end(info: CloseInfo, sequel: Sequel, { closeWith }: { closeWith?: number } = {}): void {
    // While closing, whatever ended the connection completes the close the user asked for.
    if (this.current === 'closing') sequel = CLOSE
    this.release(closeWith, info.reason)
    const id = this.supersede() // late results of the attempt that just ended are ignored
    this.clearTimer()
    this.counters.lastCloseCode = info.code
    let stop: string | undefined
    if (sequel.next === 'retry') {
      stop = this.retryRefusal(info)
      if (this.superseded(id)) return // an error listener closed or reconnected the socket
    } else if (sequel.next === 'give up') {
      stop = sequel.why
    }
    if (stop !== undefined) {
      const cause = (sequel.next === 'give up' ? sequel.cause : undefined) ?? this.lastFailure
      const reason = DEV ? `not delivered: ${stop}; last close code ${info.code}${info.reason ? ` (${info.reason})` : ''}` : ''
      this.failEverything((entry) => new DeliveryError(reason, cause ? { data: entry.data, cause } : { data: entry.data }))
    }
    if (stop !== undefined || sequel.next === 'close') {
      this.enterClosed()
      // Not when a `state` listener connected again meanwhile: this close is no longer the final one.
      if (this.current === 'closed') this.notify('close', { ...info, willReconnect: false })
      return
    }
    this.notify('close', { ...info, willReconnect: true })
    if (this.superseded(id) || this.current === 'closed') return // a listener called close() or reconnect()
    if (sequel.next === 'reconnect') {
      this.attempt()
      return
    }
    this.failures++
    this.setState('reconnecting')
    this.scheduleRetry(info.code, sequel.next === 'retry' ? sequel.delay : undefined)
  }

  /**
   * Lets go of the current WebSocket, if there is one: its events are no longer heard and, given
   * `closeWith`, it is asked to close. What was in flight is queued again, and the time spent
   * open is counted (a connection up for `reconnect.resetAfter` resets the backoff).
   */
  private release(closeWith: number | undefined, reason: string): void {
    const ws = this.ws
    if (!ws) return
    this.ws = undefined
    ws.onopen = ws.onmessage = ws.onclose = null
    // Not null: `ws` reports closing a connection still connecting as an error event, and an
    // error event nobody hears is an uncaught exception.
    ws.onerror = noop
    if (closeWith !== undefined) shut(ws, closeWith, reason)
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

  /** Why the reconnect policy allows no further attempt after `info`; undefined when it allows one. */
  private retryRefusal(info: CloseInfo): string | undefined {
    const { reconnect } = this.options
    // The reasons are for development messages: production builds give '' (still not undefined).
    if (!reconnect) return DEV ? 'reconnect is false' : ''
    if (this.failures >= reconnect.maxRetries) {
      const max = reconnect.maxRetries
      return DEV
        ? `gave up reconnecting after ${plural(max + 1, 'failed attempt')} in a row (1 + ${max} ${max === 1 ? 'retry' : 'retries'}, reconnect.maxRetries)`
        : ''
    }
    try {
      return reconnect.shouldReconnect(info) ? undefined : DEV ? 'reconnect.shouldReconnect declined to retry' : ''
    } catch (cause) {
      this.notify('error', new OptionError(DEV ? 'options.reconnect.shouldReconnect threw; not reconnecting' : '', { cause }))
      return DEV ? 'reconnect.shouldReconnect threw' : ''
    }
  }

  /** @param known - the delay to wait when known (a shared socket's holder said when it tries again); else the backoff's */
  private scheduleRetry(code?: number, known?: number): void {
    const { reconnect } = this.options
    if (!reconnect || this.current !== 'reconnecting') return // a state listener closed or reconnected
    // Offline: no attempt is spent; the `online` event retries at once.
    if (!isOnline()) {
      this.waitForNetwork()
      return
    }
    const delay = known ?? backoffDelay(reconnect, this.failures, code)
    const id = this.attemptId
    this.notify('reconnecting', { attempt: this.failures, delay, waitingFor: 'delay' })
    if (this.superseded(id) || this.current !== 'reconnecting') return // a listener closed or reconnected
    this.timer = timer(() => {
      this.timer = undefined
      if (isOnline()) this.attempt()
      else this.waitForNetwork()
    }, delay)
  }

  /** Says that the next attempt waits for the browser's `online` event (see `wake`). */
  private waitForNetwork(): void {
    this.notify('reconnecting', { attempt: this.failures, delay: Number.POSITIVE_INFINITY, waitingFor: 'network' })
  }

  /** The browser went offline: a backoff wait now waits for the network instead. */
  private offline(): void {
    // The network went away: an open connection may be dead without knowing it (its close may
    // never come, or come late), so it is probed; the heartbeat's timeout then replaces it.
    if (this.current === 'open') this.protocol.probe?.()
    if (this.current !== 'reconnecting' || this.timer === undefined || isOnline()) return
    this.clearTimer()
    this.waitForNetwork()
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

  private failEverything(makeError: (entry: Entry) => TetherError): void {
    this.protocol.failAwaiting?.(makeError)
    this.outbox.failAll(makeError)
  }

  /**
   * Enters `closed` (the only way in) and releases everything that could keep the socket
   * alive: the lifecycle timer, the environment listeners, what waits, and `close()`'s promises.
   */
  private enterClosed(): void {
    this.supersede()
    this.clearTimer()
    this.failEverything(closedError)
    this.unwatch?.()
    this.unwatch = undefined
    this.sharing?.stop()
    this.setState('closed')
    // Sends made by listeners meanwhile, unless one connected again (then they are the new run's).
    if (this.current === 'closed') {
      this.failEverything(closedError)
      this.closeStore()
    }
    const waiters = this.closeWaiters
    this.closeWaiters = []
    for (const resolve of waiters) resolve()
  }

  // ── the durable outbox (`persist`) ──────────────────────────────────────────

  /**
   * Opens the store once per run (the first attempt waits for it): what previous pages left goes
   * back into the outbox, ahead of what was sent since. A store that cannot open is reported and
   * the socket goes on in memory only.
   */
  private openStore(): Promise<void> | undefined {
    const store = this.options.persist
    const { durable } = this
    if (durable.state === 'opening') return durable.done
    // A shared socket's outbox is the holder's: only the holder's own socket opens the store.
    if (!store || durable.state !== 'closed' || this.sharing) return undefined
    const done = store.restore(this.restoreContext()).then(
      (journal) => {
        if (journal) this.durable = { state: 'open', journal }
        else if (this.durable.state === 'opening') this.durable = { state: 'closed' }
      },
      (error: PersistError) => {
        this.durable = { state: 'memory' }
        this.notify('error', error)
      },
    )
    this.durable = { state: 'opening', done }
    return done
  }

  /** What the durable outbox may use of this socket while it restores, and from then on. */
  private restoreContext(): RestoreContext<Out> {
    const { outbox, tether } = this
    return {
      session: tether,
      outbox,
      wanted: () => this.current !== 'closed' && this.durable.state === 'opening',
      start: (journal) => {
        outbox.watch(journal)
        if (tether) tether.journal = journal
      },
      report: (error) => this.notify('error', error),
      failed: (error) => {
        this.durable = { state: 'memory' }
        outbox.watch(undefined)
        if (tether) tether.journal = undefined
        this.notify('error', error)
        // What waited for the store goes now.
        if (this.current === 'open') this.protocol.flush()
      },
      restored: (info: RestoredInfo<Out>) => this.notify('restored', info),
      held: (origin, outcome) => this.holding?.restored(origin, outcome),
    }
  }

  // ── one connection for all tabs (`shared`) ──────────────────────────────────

  private setPart(part: SharedInfo): void {
    const was = this.part
    if (was?.role === part.role && was.reason === part.reason) return
    // A tab alone stays alone (its group is its own): the election of that group changes nothing to say.
    if (was?.role === 'alone' && part.role !== 'alone') return
    this.part = part
    if (this.partSaid) this.notify('shared', part)
  }

  /**
   * This page was elected to hold its group's connection: the socket that holds it, with this
   * socket's options and store. It finishes nothing by itself (the tabs' own sockets keep the
   * deadlines), and its events go to the holder (`hooks`).
   */
  private hold(hooks: HolderHooks): HeldSocket {
    const { queue } = this.options
    const inner = new TetherSocket<In, Out>(this.url, {
      ...this.options,
      shared: undefined,
      ackTimeout: Number.POSITIVE_INFINITY,
      requestTimeout: Number.POSITIVE_INFINITY,
      queue: { ...queue, maxMessages: Number.POSITIVE_INFINITY, maxBytes: Number.POSITIVE_INFINITY, ttl: Number.POSITIVE_INFINITY },
      autoConnect: false,
    } as TetherSocketOptions<In, Out>)
    inner.holding = hooks
    const tether = inner.tether as TetherProtocol<In, Out>
    inner.on('message', (data, info) => hooks.message(data, info))
    inner.on('missed', (info) => hooks.missed(info))
    inner.on('open', () => hooks.opened())
    inner.on('close', ({ code, reason, willReconnect }) => hooks.closed(code, reason, willReconnect))
    inner.on('reconnecting', ({ delay }) => hooks.reconnecting(delay))
    inner.on('restored', (info) => hooks.restoredAll(info))
    inner.on('error', (error) => this.notify('error', error))
    inner.connect()
    const { durable } = inner
    return {
      ready: durable.state === 'opening' ? durable.done : Promise.resolve(),
      get sessionId() {
        return tether.sessionId
      },
      get delivered() {
        return tether.rxSeq
      },
      get open() {
        return inner.current === 'open'
      },
      forward: (payload, origin, request) => tether.queueEncoded(payload, { ...inner.handover(undefined, { request }), origin }),
      afterDurable: (then) => {
        const { durable } = inner
        if (durable.state === 'open') durable.journal.afterDurable(then)
        else queueMicrotask(then) // memory only (the store failed, and said so): nothing outlives this page
      },
      leave: () => inner.leave(),
      retry: () => {
        if (inner.current === 'reconnecting') inner.reconnect()
      },
    }
  }

  /** The holder steps down: the connection ends and nothing fails; the stored outbox stays for the next holder. */
  private leave(): void {
    this.holding = undefined
    const { durable } = this
    if (durable.state === 'open') {
      this.outbox.watch(undefined)
      if (this.tether) this.tether.journal = undefined
      durable.journal.leave()
    }
    this.durable = { state: 'closed' }
    this.removeAllListeners()
    this.outbox.failAll(noopError)
    void this.close(CLIENT_DROP, 'the holding tab stepped down')
  }

  /**
   * The run ended (closed): nothing pending is left, so the stored outbox is deleted once the
   * last changes are written; the next `connect()` opens the store again.
   */
  private closeStore(): void {
    const { durable } = this
    if (durable.state === 'opening') this.durable = { state: 'closed' } // restore() sees it is no longer wanted
    if (durable.state !== 'open') return
    this.durable = { state: 'closed' }
    this.outbox.watch(undefined)
    if (this.tether) this.tether.journal = undefined
    void durable.journal.end()
  }

  // ── messages ──────────────────────────────────────────────────────────────

  /**
   * What `send()`, `request()` and the onOpen hook share: the socket's checks (closed, per-call
   * options), then the message goes to the wire protocol in one call (`queue`: encoded, added
   * to the outbox, written or scheduled). Failures reject at once and are emitted as `error`.
   */
  private enqueue(data: Out, options: SendOptions | undefined, as: EnqueueAs = AS_SEND): Promise<unknown> {
    if (this.current === 'closed') {
      return this.rejectNow(new ClosedError(DEV ? 'the socket is closed; call connect() to open it again before sending' : '', { data }))
    }
    const invalid = checkSendOptions(options, data, as.request ? 'request' : 'send')
    try {
      // A message that cannot be encoded says so even when its options are invalid too.
      if (invalid) this.protocol.encode(data)
      else return this.protocol.queue(data, this.handover(options, as))
    } catch (error) {
      if (!(error instanceof TetherError)) throw error
      return this.rejectNow(error)
    }
    return this.rejectNow(invalid)
  }

  /** A message's deadlines (the per-call options over the defaults) and what the protocol needs to know. */
  private handover(options: SendOptions | undefined, { request = false, aheadOfQueue = false }: EnqueueAs): Handover {
    const timeout = options?.timeout === undefined ? (request ? this.options.requestTimeout : this.options.ackTimeout) : options.timeout
    const ttl = options?.ttl === undefined ? this.options.queue.ttl : options.ttl
    const now = timeout === Number.POSITIVE_INFINITY && ttl === Number.POSITIVE_INFINITY ? 0 : Date.now()
    return {
      deadline: now + timeout,
      staleAt: now + ttl,
      timeout,
      ttl,
      signal: options?.signal,
      key: options?.key,
      request,
      aheadOfQueue,
      plain: !options && !request && !aheadOfQueue,
      open: this.current === 'open',
    }
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
      deliver: (message, info) => this.notify('message', message, info),
      missed: (info) => this.notify('missed', info),
      report: (error) => this.notify('error', error),
      drop: (code, text, { error, final = false } = {}) => {
        if (error) this.notify('error', error)
        if (!this.ws || this.current === 'closing') return
        const reason = cutReason(text)
        const sequel: Sequel = final ? { next: 'give up', why: error ? error.message : reason, cause: error } : RETRY
        this.end({ code, reason, wasClean: false }, sequel, { closeWith: code })
      },
    }
  }
}
