/**
 * Every option of `TetherSocket`, documented where it is declared, with its default and
 * the validation that turns a bad value into an {@link OptionError} naming the option.
 * @module
 */

import { DEV } from '../dev.js'
import { OptionError } from '../errors.js'
import { unknownKey } from '../suggest.js'
import type { Payload } from './outbox.js'
import type { PersistStore } from './persist.js'

/** Where to connect: a URL, or a function called before every attempt (for fresh auth tokens). */
export type UrlProvider = string | URL | (() => string | URL | Promise<string | URL>)

/** WebSocket subprotocols to offer, or a function called before every attempt. */
export type ProtocolsProvider = string | string[] | (() => string | string[] | Promise<string | string[]>)

/**
 * Any constructor compatible with the WHATWG `WebSocket`: the browser's, or `WebSocket` from
 * the `ws` package in Node.
 */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
) => {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number
  /** Writes a frame. */
  send(data: never): void
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void
}

/** How a connection ended, as passed to `shouldReconnect` and the `close` event. */
export interface CloseInfo {
  /** The WebSocket close code; 1006 when the connection failed without a close frame (also for a failed or timed-out attempt). */
  code: number
  /** The close reason the server gave ('' when none). */
  reason: string
  /** Whether the close handshake completed. */
  wasClean: boolean
}

/** Reconnection policy. The delay formula is documented in the README and in `backoff.ts`. */
export interface ReconnectOptions {
  /** Upper bound of the first retry's delay, in ms. Default `1000` (`DEFAULTS.reconnect.minDelay`). */
  minDelay?: number
  /** Largest delay between attempts, in ms. Default `30000` (or `minDelay`, if that is larger; `DEFAULTS.reconnect.maxDelay`). */
  maxDelay?: number
  /** Growth of the delay bound per failed attempt. Default `2` (`DEFAULTS.reconnect.factor`). */
  factor?: number
  /** Share of the delay that is randomized, 0..1, so clients that lost one server do not return in waves. Default `1` (full jitter: uniform in `(0, bound]`; `DEFAULTS.reconnect.jitter`). */
  jitter?: number
  /**
   * Retries after the first failure before reconnection is given up: `3` allows 4 failed
   * attempts in a row (1 + 3 retries); `0` never retries. A connection that drops before
   * `resetAfter` counts as a failed attempt. Default `Infinity` (`DEFAULTS.reconnect.maxRetries`).
   */
  maxRetries?: number
  /** An attempt (URL provider, handshake and `onOpen` hook) not open after this many ms is abandoned. Default `10000` (`DEFAULTS.reconnect.connectTimeout`). */
  connectTimeout?: number
  /** The attempt counter resets only once a connection stayed open this long, in ms, so a server that accepts and drops at once causes no tight loop. Default `5000` (`DEFAULTS.reconnect.resetAfter`). */
  resetAfter?: number
  /** After close code 1012 or 1013 the delay is at least `busyDelay * (1 + random())` ms. Default `5000` (`DEFAULTS.reconnect.busyDelay`). */
  busyDelay?: number
  /**
   * Decides, per close, whether to try again. Not consulted after `close()`.
   * Default: no retry on 1008 (Policy Violation) and on 4400–4499 (client errors such as 4401
   * Unauthorized and 4403 Forbidden, where retrying cannot help); retry on everything else.
   */
  shouldReconnect?: (close: CloseInfo) => boolean
}

/** Bounds of the outgoing queue (messages queued plus, in tether mode, sent but not yet acknowledged). */
export interface QueueOptions {
  /** Most messages held at once. Default `10000` (`DEFAULTS.queue.maxMessages`). */
  maxMessages?: number
  /** Most payload bytes held at once. Default `10485760`, 10 MiB (`DEFAULTS.queue.maxBytes`). */
  maxBytes?: number
  /** What a full queue does with a new message: `'reject'` it (default) or `'drop-oldest'` queued one to make room. Both reject the message concerned with `QueueFullError`. (`DEFAULTS.queue.overflow`) */
  overflow?: 'reject' | 'drop-oldest'
  /** Default `ttl` of every message, in ms: a message still unsent after this long is dropped with `TimeoutError`. Default `Infinity` (`DEFAULTS.queue.ttl`). */
  ttl?: number
}

/** Heartbeat settings (tether mode). */
export interface HeartbeatOptions {
  /** Send a ping after this many ms without traffic. Default `25000` (`DEFAULTS.heartbeat.interval`). */
  interval?: number
  /** Replace the connection when nothing arrived for `interval + timeout` ms. Default `10000` (`DEFAULTS.heartbeat.timeout`). */
  timeout?: number
}

/** What the `onOpen` hook receives. */
export interface OpenContext<Out> {
  /** Sends ahead of everything queued; in tether mode resolves when acknowledged. */
  send(data: Out): Promise<void>
  /** 1 for the first connection, then counts every connection opened. */
  connection: number
}

/** Options of `new TetherSocket(url, options)`. All optional. */
export interface TetherSocketOptions<In = unknown, Out = unknown> {
  /** The WebSocket implementation. Default `globalThis.WebSocket`; in Node pass `WebSocket` from `ws`. */
  WebSocket?: WebSocketConstructor
  /**
   * Subprotocols to offer (in tether mode `tether.v1` is offered first, before these). What a
   * function returns is checked like the option; anything but a string or an array of strings
   * fails that attempt with a `ConnectionError` naming `options.protocols`.
   */
  protocols?: ProtocolsProvider
  /** `'tether'` (default, `DEFAULTS.mode`): acknowledged exactly-once delivery. `'raw'`: plain WebSocket messages to any server. */
  mode?: 'tether' | 'raw'
  /** Reconnection policy, or `false` to never reconnect. */
  reconnect?: false | ReconnectOptions
  /** Bounds of the outgoing queue. */
  queue?: QueueOptions
  /** Default `timeout` of `send()` in ms (tether mode: until acknowledged). Default `Infinity` (`DEFAULTS.ackTimeout`). */
  ackTimeout?: number
  /** Default `timeout` of `request()` in ms. Default `30000` (`DEFAULTS.requestTimeout`). */
  requestTimeout?: number
  /** Liveness checks (tether mode), or `false`. */
  heartbeat?: false | HeartbeatOptions
  /** Connect at construction. Default `true` (`DEFAULTS.autoConnect`); when `false`, call `connect()`. */
  autoConnect?: boolean
  /**
   * Runs on every open before the queued backlog is written, for a hello or auth message that
   * must go first. Messages it sends go ahead of the queue; a returned promise holds the backlog
   * (and the `open` state) until it settles. A throw or rejection fails the attempt.
   */
  onOpen?: (context: OpenContext<Out>) => void | Promise<void>
  /** Raw mode: turns a message into what the socket sends. Default: strings and binary as they are, anything else `JSON.stringify`. */
  serialize?: (data: Out) => Payload
  /** Raw mode: turns what arrived into the `message` event's value. Default: as received (string, or `ArrayBuffer` for binary). */
  deserialize?: (data: string | ArrayBuffer | Blob) => In
  /**
   * The durable outbox: a store from `tethersocket/persist` (`indexedDBStore(name)`). The
   * session, the sequence numbers and every message not yet acknowledged are written to it
   * before they go on the wire, so a reload resumes where the page was, and a closed tab's
   * messages are delivered by the next page with the same store name (see the `restored`
   * event). Where the store cannot work the socket says so (`error`, a `PersistError`) and
   * keeps its outbox in memory only.
   *
   * Per-message options across a reload: `timeout` and `ttl` keep their absolute deadlines (a
   * message whose ttl passed while no page ran is dropped, reported as failed); `key` still
   * lets a newer message replace a restored one still queued; a `signal` cannot cross a reload
   * (the restored message is delivered unless its deadline passes). Raw mode keeps what is
   * queued, binary included (an `ArrayBuffer` or a view); a `Blob` is kept in memory only.
   * `close()` ends the stored outbox with the socket: what is pending fails with `ClosedError`.
   * @example
   * ```ts
   * import { indexedDBStore } from 'tethersocket/persist'
   * const sock = new TetherSocket(url, { persist: indexedDBStore('chat') })
   * ```
   */
  persist?: PersistStore
  /**
   * One connection for all tabs: `true`, or a name for one of several independent shared sockets.
   * The sockets of one origin with the same URL and name share one WebSocket and one server
   * session: one tab holds the connection (elected with a Web Lock) and the others talk to it over
   * a BroadcastChannel. Every tab keeps the whole API: `send()` resolves when the server
   * acknowledged that tab's message, `request()` gets that tab's reply, server messages reach
   * every tab's `message` listeners once each. When the holding tab closes, crashes, is frozen
   * or enters the back-forward cache, another takes over, continuing the shared durable outbox:
   * nothing is lost or duplicated. Needs `persist` (the outbox the next holder continues) and
   * tether mode. Tabs whose URL or protocols differ (another user's token) are not joined: such a
   * tab gets a connection of its own. Where Web Locks or BroadcastChannel are missing each tab has
   * its own connection, and the `shared` event says so. See the `shared` event.
   * @example
   * ```ts
   * import { indexedDBStore } from 'tethersocket/persist'
   * const sock = new TetherSocket(url, { shared: true, persist: indexedDBStore('chat') })
   * sock.on('shared', ({ role }) => badge.textContent = role === 'holder' ? 'this tab holds the connection' : role)
   * ```
   */
  shared?: true | string
}

/** Per-call options of `send()`. */
export interface SendOptions {
  /** Reject with `TimeoutError` when not done within this many ms (tether mode: acknowledged; raw mode: written). Default `ackTimeout`. */
  timeout?: number
  /** Abort: a queued message leaves the queue; the promise rejects with `AbortError`. */
  signal?: AbortSignal
  /** Drop the message with `TimeoutError` if it could not be written within this many ms. Default `queue.ttl`. */
  ttl?: number
  /** "Latest value wins": a newer queued message with the same key replaces this one; this promise then settles with the newer one's. */
  key?: string
}

/** Per-call options of `request()`. */
export interface RequestOptions {
  /** Reject with `TimeoutError` when no reply came within this many ms. Default `requestTimeout`. */
  timeout?: number
  /** Abort waiting for the reply; the promise rejects with `AbortError`. */
  signal?: AbortSignal
}

/** Options with defaults applied and values checked. */
export interface ResolvedOptions<In, Out> {
  WebSocket: WebSocketConstructor
  protocols: ProtocolsProvider | undefined
  mode: 'tether' | 'raw'
  reconnect: Required<ReconnectOptions> | false
  queue: Required<QueueOptions>
  ackTimeout: number
  requestTimeout: number
  heartbeat: Required<HeartbeatOptions> | false
  autoConnect: boolean
  onOpen: TetherSocketOptions<In, Out>['onOpen']
  serialize: ((data: Out) => Payload) | undefined
  deserialize: ((data: string | ArrayBuffer | Blob) => In) | undefined
  persist: PersistStore | undefined
  shared: true | string | undefined
}

const NEVER_RETRY = 1008

/**
 * The default of every `TetherSocket` option that has one, in one place: `resolveOptions`
 * applies these, and each option's documentation names its entry. `reconnect.maxDelay` is
 * at least `reconnect.minDelay`; `reconnect.shouldReconnect` defaults to {@link defaultShouldReconnect}.
 */
export const DEFAULTS = {
  mode: 'tether',
  reconnect: {
    minDelay: 1000,
    maxDelay: 30000,
    factor: 2,
    jitter: 1,
    maxRetries: Number.POSITIVE_INFINITY,
    connectTimeout: 10000,
    resetAfter: 5000,
    busyDelay: 5000,
  },
  queue: { maxMessages: 10000, maxBytes: 10 * 1024 * 1024, overflow: 'reject', ttl: Number.POSITIVE_INFINITY },
  ackTimeout: Number.POSITIVE_INFINITY,
  requestTimeout: 30000,
  heartbeat: { interval: 25000, timeout: 10000 },
  autoConnect: true,
} as const

/** `reconnect.connectTimeout`'s default, also in force with `reconnect: false` (it bounds every attempt and close). */
export const DEFAULT_CONNECT_TIMEOUT = DEFAULTS.reconnect.connectTimeout

/** The default `shouldReconnect`: no retry on 1008 and 4400–4499, retry otherwise. */
export const defaultShouldReconnect = ({ code }: CloseInfo): boolean => code !== NEVER_RETRY && !(code >= 4400 && code <= 4499)

/** A value as an option error shows it (NaN and Infinity as themselves, not as JSON's null). */
function shown(value: unknown): string {
  try {
    return typeof value === 'function' ? 'a function' : typeof value === 'number' ? String(value) : (JSON.stringify(value) ?? String(value))
  } catch {
    try {
      return String(value)
    } catch {
      return Object.prototype.toString.call(value)
    }
  }
}

function fail(option: string, expected: string, value: unknown): never {
  throw new OptionError(DEV ? `options${option ? `.${option}` : ''} must be ${expected}; got ${shown(value)}` : '')
}

/** What each per-call option must be, for the messages. */
const PER_CALL = { timeout: 'a number > 0', ttl: 'a number > 0', key: 'a string', signal: 'an AbortSignal' }

/**
 * Checks the per-call options of `send()` or `request()` (`timeout`, `ttl`, `key`, `signal`).
 * Returns the {@link OptionError} for the first bad one, naming it and the value given, for the
 * caller to reject that call with (a send never throws), or `undefined` when all are good.
 * Production builds check the same (a call refused in development is refused there too), and
 * leave out only the names of unknown options and the message.
 */
export function checkSendOptions(
  options: SendOptions | undefined,
  data: unknown,
  call: 'send' | 'request' = 'send',
): OptionError | undefined {
  if (options === undefined) return undefined
  if (options === null || typeof options !== 'object') {
    return new OptionError(DEV ? `${call}() options must be an object; got ${shown(options)}` : '', { data })
  }
  const unknown = DEV && unknownKey(`${call} options`, options, KNOWN[call])
  if (unknown) return new OptionError(unknown, { data })
  const { timeout, ttl, key, signal } = options
  const bad =
    timeout !== undefined && !(timeout > 0)
      ? 'timeout'
      : ttl !== undefined && !(ttl > 0)
        ? 'ttl'
        : key !== undefined && typeof key !== 'string'
          ? 'key'
          : signal !== undefined && typeof (signal as AbortSignal | null)?.addEventListener !== 'function'
            ? 'signal'
            : undefined
  return bad && new OptionError(DEV ? `${call} options: ${bad} must be ${PER_CALL[bad]}; got ${shown(options[bad])}` : '', { data })
}

function number(option: string, value: unknown, fallback: number, min: number, integer: boolean): number {
  if (value === undefined) return fallback
  if (
    typeof value !== 'number' ||
    Number.isNaN(value) ||
    value < min ||
    (integer && value !== Number.POSITIVE_INFINITY && !Number.isInteger(value))
  ) {
    fail(option, DEV ? `${integer ? 'an integer' : 'a number'} >= ${min}` : '', value)
  }
  return value
}

/** The numeric options that may be 0; the others must be at least 1 (`maxDelay`: at least `minDelay`). */
const MAY_BE_ZERO = ['minDelay', 'jitter', 'maxRetries', 'resetAfter', 'busyDelay']

/** Widens the literal types of {@link DEFAULTS} to what an option accepts. */
type Widened<T> = { -readonly [K in keyof T]: T[K] extends number ? number : T[K] }

/**
 * The numeric options of one group of {@link DEFAULTS} (`reconnect.`, `queue.`, …), read from
 * `given`: the default where undefined, else checked against its lower bound. Other members are
 * copied from the defaults for the caller to resolve.
 */
function numbers<T extends object>(group: string, given: object, defaults: T): Widened<T> {
  const resolved: Record<string, unknown> = { ...(defaults as Record<string, unknown>) }
  for (const [key, fallback] of Object.entries(defaults)) {
    if (typeof fallback !== 'number') continue
    const min = key === 'maxDelay' ? (resolved.minDelay as number) : MAY_BE_ZERO.includes(key) ? 0 : 1
    resolved[key] = number(
      group + key,
      (given as Record<string, unknown>)[key],
      Math.max(fallback, min), // the default maxDelay is at least minDelay
      min,
      key === 'maxRetries' || key === 'maxMessages',
    )
  }
  return resolved as Widened<T>
}

/** Checks that an option is a function (or undefined). */
function fn(option: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') fail(option, 'a function', value)
}

/**
 * Checks that an options object (or undefined) is an object that names only the options of
 * the group `option` (a misspelt one would be ignored: `{ reconect: false }` would reconnect).
 */
function object(option: keyof typeof KNOWN | '', value: unknown): void {
  if (value === undefined) return
  if (value === null || typeof value !== 'object') fail(option, 'an object', value)
  const unknown = unknownKey(option ? `options.${option}` : 'options', value, KNOWN[option || 'options'])
  if (unknown) throw new OptionError(unknown)
}

/** The options of `new TetherSocket(url, options)`, and of its groups, by name (read in development only). */
const KNOWN = {
  options: [
    'WebSocket',
    'protocols',
    'mode',
    'reconnect',
    'queue',
    'ackTimeout',
    'requestTimeout',
    'heartbeat',
    'autoConnect',
    'onOpen',
    'serialize',
    'deserialize',
    'persist',
    'shared',
  ],
  // Under DEV, as the spread is not free of side effects to a minifier: this table would stay.
  reconnect: DEV ? [...Object.keys(DEFAULTS.reconnect), 'shouldReconnect'] : [],
  queue: Object.keys(DEFAULTS.queue),
  heartbeat: Object.keys(DEFAULTS.heartbeat),
  send: ['timeout', 'signal', 'ttl', 'key'],
  request: ['timeout', 'signal'],
}

const isProtocolList = (value: unknown): value is string | string[] =>
  typeof value === 'string' || (Array.isArray(value) && value.every((p) => typeof p === 'string'))

/**
 * Checks what a `protocols` function returned, before it reaches the WebSocket constructor
 * (`ws` and undici would read an object there as their own options, headers included).
 * @throws {@link OptionError} naming `options.protocols` and the value
 */
export function checkProtocols(value: unknown): string | string[] {
  if (!isProtocolList(value)) fail('protocols', DEV ? 'a string or an array of strings, also when a function returns it' : '', value)
  return value
}

/**
 * Applies defaults and validates; throws {@link OptionError} naming the first bad option.
 * Production builds keep the checks of values (bounds, a WebSocket to use) and leave out those
 * of types and names, which only help a developer.
 */
export function resolveOptions<In, Out>(options: TetherSocketOptions<In, Out> = {}): ResolvedOptions<In, Out> {
  // The checks of types and names are whole statements under DEV, so a production build has no call of them.
  if (DEV) object('', options)
  // undefined, and only undefined, means "the default" (null is refused like any other wrong value).
  const WebSocketImpl = options.WebSocket === undefined ? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket : options.WebSocket
  if (typeof WebSocketImpl !== 'function') {
    if (DEV && options.WebSocket !== undefined) fail('WebSocket', 'a WebSocket constructor', options.WebSocket)
    throw new OptionError(
      DEV
        ? 'no WebSocket implementation found: this environment has no global WebSocket. In Node, install ws and pass it: new TetherSocket(url, { WebSocket })  (import { WebSocket } from "ws")'
        : '',
    )
  }
  const { protocols } = options
  if (DEV && protocols !== undefined && typeof protocols !== 'function' && !isProtocolList(protocols)) {
    fail('protocols', 'a string, an array of strings or a function returning one', protocols)
  }
  const mode = options.mode === undefined ? DEFAULTS.mode : options.mode
  if (DEV && mode !== 'tether' && mode !== 'raw') fail('mode', "'tether' or 'raw'", mode)

  let reconnect: ResolvedOptions<In, Out>['reconnect'] = false
  if (options.reconnect !== false) {
    if (DEV) object('reconnect', options.reconnect)
    const r = options.reconnect ?? {}
    reconnect = { ...numbers('reconnect.', r, DEFAULTS.reconnect), shouldReconnect: r.shouldReconnect ?? defaultShouldReconnect }
    if (DEV) fn('reconnect.shouldReconnect', r.shouldReconnect)
    if (reconnect.jitter > 1) fail('reconnect.jitter', DEV ? 'a number from 0 to 1' : '', reconnect.jitter)
  }

  if (DEV) object('queue', options.queue)
  const q = options.queue ?? {}
  const overflow = q.overflow === undefined ? DEFAULTS.queue.overflow : q.overflow
  if (DEV && overflow !== 'reject' && overflow !== 'drop-oldest') fail('queue.overflow', "'reject' or 'drop-oldest'", overflow)

  let heartbeat: ResolvedOptions<In, Out>['heartbeat'] = false
  if (options.heartbeat !== false) {
    if (DEV) object('heartbeat', options.heartbeat)
    heartbeat = numbers('heartbeat.', options.heartbeat ?? {}, DEFAULTS.heartbeat)
  }
  const autoConnect = options.autoConnect === undefined ? DEFAULTS.autoConnect : options.autoConnect
  if (DEV && typeof autoConnect !== 'boolean') fail('autoConnect', 'a boolean', autoConnect)
  const { persist, onOpen, serialize, deserialize } = options
  if (DEV && persist !== undefined && (persist === null || typeof persist !== 'object' || typeof persist.open !== 'function')) {
    fail('persist', "a store from tethersocket/persist, such as indexedDBStore('chat')", persist)
  }
  const { shared } = options
  if (shared !== undefined) {
    if (DEV && shared !== true && (typeof shared !== 'string' || shared === '' || shared.length > 200)) {
      fail('shared', 'true or a name (a non-empty string of at most 200 characters)', shared)
    }
    if (mode !== 'tether')
      throw new OptionError(
        DEV ? "options.shared needs mode 'tether': a raw-mode socket has no acknowledgements for the tabs to share" : '',
      )
    if (!persist) {
      throw new OptionError(
        DEV
          ? "options.shared needs options.persist: the tab that takes over the connection continues the shared outbox, so that nothing is lost or sent twice. Pass persist: indexedDBStore('app') (import { indexedDBStore } from 'tethersocket/persist')"
          : '',
      )
    }
  }
  const queue = { ...numbers('queue.', q, DEFAULTS.queue), overflow }
  const timeouts = numbers('', options, { ackTimeout: DEFAULTS.ackTimeout, requestTimeout: DEFAULTS.requestTimeout })
  if (DEV) for (const [name, value] of Object.entries({ onOpen, serialize, deserialize })) fn(name, value)

  return {
    WebSocket: WebSocketImpl,
    protocols,
    mode,
    reconnect,
    queue,
    ...timeouts,
    heartbeat,
    autoConnect,
    onOpen,
    serialize,
    deserialize,
    persist,
    shared,
  }
}

/** A URL as error messages show it: without its query and fragment, where tokens tend to be. */
export const redactUrl = (url: string | URL): string => String(url).replace(/[?#].*$/s, '?…')

/**
 * Checks a URL and normalizes it to a ws: or wss: string. http(s) URLs are mapped to ws(s),
 * and a relative URL resolves against the page's location in a browser.
 */
export function normalizeUrl(url: string | URL): string {
  let parsed: URL
  try {
    const base = (globalThis as { location?: { href: string } }).location?.href
    parsed = new URL(String(url), base)
  } catch (cause) {
    throw new OptionError(
      DEV ? `invalid URL ${JSON.stringify(redactUrl(url))}: expected an absolute ws://, wss://, http:// or https:// URL` : '',
      { cause },
    )
  }
  const scheme = parsed.protocol
  if (scheme === 'http:' || scheme === 'https:') parsed.protocol = scheme === 'http:' ? 'ws:' : 'wss:'
  else if (scheme !== 'ws:' && scheme !== 'wss:') {
    throw new OptionError(
      DEV
        ? `unsupported URL scheme ${JSON.stringify(scheme)} in ${JSON.stringify(redactUrl(url))}: use ws://, wss://, http:// or https://`
        : '',
    )
  }
  parsed.hash = ''
  return parsed.toString()
}
