/**
 * Every error this library creates is a {@link TetherError}, with a stable `code`
 * to branch on and a message that says what went wrong and what to do.
 *
 * @example
 * ```ts
 * try { await sock.send(msg) } catch (err) {
 *   if (err instanceof QueueFullError) showOfflineBanner() // import { QueueFullError } from 'tethersocket'
 * }
 * ```
 * @module
 */
import { DEV } from './dev.js'

/** Options shared by the error constructors. */
export interface TetherErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown
  /** The message (as passed to `send()` or `request()`) this error is about, if any. */
  data?: unknown
}

/**
 * The codes of the errors tethersocket itself creates: one per error class, plus the few a plain
 * {@link TetherError} carries. A {@link ReplyError}'s code is not among them: it is whatever the
 * server's handler gave (see {@link ReplyErrorCode}).
 */
export type TetherErrorCode =
  /** A plain {@link TetherError} built without a code of its own (the default). */
  | 'ERR_TETHER'
  /** {@link DeliveryError}: a message was given up on (retries exhausted, session ended, message too big for the server). */
  | 'ERR_DELIVERY'
  /** {@link TimeoutError}: a message's `timeout` or `ttl`, a request, a connection attempt or the heartbeat ran out. */
  | 'ERR_TIMEOUT'
  /** {@link QueueFullError}: the outgoing queue was full, or a queued message was dropped to make room. */
  | 'ERR_QUEUE_FULL'
  /** {@link ProtocolError}: the peer sent a malformed frame, or does not speak `tether.v1`. */
  | 'ERR_PROTOCOL'
  /** {@link ClosedError}: the socket (or the server session) was closed before the message was delivered. */
  | 'ERR_CLOSED'
  /** {@link AbortError}: a message's `signal` aborted. */
  | 'ERR_ABORTED'
  /** {@link ConnectionError}: a connection attempt failed before the socket opened. */
  | 'ERR_CONNECTION'
  /** {@link OptionError}: an option, URL, close code or reason, or a per-call option is invalid. */
  | 'ERR_INVALID_OPTION'
  /** {@link EncodeError}: `send()`/`request()` got a message that cannot be encoded for the wire. */
  | 'ERR_ENCODE'
  /** A plain {@link TetherError}: `request()` was called in raw mode, which has no replies. */
  | 'ERR_UNSUPPORTED'
  /** A plain {@link TetherError} from the React or Vue binding: creating the socket threw something that was not a TetherError. */
  | 'ERR_CREATE'
  /** {@link PersistError}: the durable outbox (`tethersocket/persist`) cannot keep what it was given; its `reason` says why. */
  | 'ERR_PERSIST'

/**
 * The code of a {@link ReplyError}: what the server's request handler gave. The reference server
 * answers `ERR_INTERNAL` when a handler failed with anything but a `RequestError`, and
 * `ERR_REPLY_ENCODING` when its reply was not JSON; any other string is the handler's own.
 */
// `string & {}` keeps the known codes in editors' completion while admitting any server code.
export type ReplyErrorCode = 'ERR_INTERNAL' | 'ERR_REPLY_ENCODING' | (string & {})

/**
 * Where docs/ERRORS.md documents `code`: `'ERR_QUEUE_FULL: see docs/ERRORS.md#err_queue_full'`.
 * Each code has a section there whose anchor is the code in lower case. The message of every
 * error a production build creates (it leaves out the explanations: see src/dev.ts); the path is
 * relative to the package, which ships the page.
 */
export const documented = (code: string): string => `${code}: see docs/ERRORS.md#${code.toLowerCase()}`

/** Base class of every error raised or emitted by tethersocket. */
export class TetherError extends Error {
  /**
   * A stable machine-readable code to branch on: a {@link TetherErrorCode}, or on a
   * {@link ReplyError} the code the server gave.
   */
  readonly code: TetherErrorCode | ReplyErrorCode
  /** The message this error is about (for send/request failures). */
  readonly data?: unknown

  /**
   * @param message - what went wrong and what to do; in a production build, where the library
   *   gives none, the code and where docs/ERRORS.md documents it
   * @param name - set explicitly rather than read from the constructor, which minifiers rename
   */
  constructor(message: string, options?: TetherErrorOptions, name = 'TetherError', code: TetherErrorCode | ReplyErrorCode = 'ERR_TETHER') {
    super(DEV ? message : message || documented(code), options && 'cause' in options ? { cause: options.cause } : undefined)
    this.name = name
    this.code = code
    if (options && 'data' in options) this.data = options.data
  }
}

/**
 * A message was given up on: reconnection stopped (retries exhausted, `shouldReconnect` said no,
 * or the server does not speak tether.v1; `cause` is then the last failed attempt's error), the
 * server session ended before a request's reply, or the message is bigger than the server accepts.
 */
export class DeliveryError extends TetherError {
  declare readonly code: 'ERR_DELIVERY'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'DeliveryError', 'ERR_DELIVERY')
  }
}

/** A deadline passed: a message's `timeout` or `ttl`, a request, or a connection attempt. */
export class TimeoutError extends TetherError {
  declare readonly code: 'ERR_TIMEOUT'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'TimeoutError', 'ERR_TIMEOUT')
  }
}

/** The outgoing queue was full (`queue.maxMessages` or `queue.maxBytes`), or a message was dropped to make room. */
export class QueueFullError extends TetherError {
  declare readonly code: 'ERR_QUEUE_FULL'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'QueueFullError', 'ERR_QUEUE_FULL')
  }
}

/** The peer broke the wire protocol: a malformed frame, or a server that does not speak `tether.v1`. */
export class ProtocolError extends TetherError {
  declare readonly code: 'ERR_PROTOCOL'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'ProtocolError', 'ERR_PROTOCOL')
  }
}

/** The socket was closed by the user (`close()`) before the message was delivered. */
export class ClosedError extends TetherError {
  declare readonly code: 'ERR_CLOSED'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'ClosedError', 'ERR_CLOSED')
  }
}

/** A message's `signal` was aborted. Named `AbortError` like the platform's, so `err.name === 'AbortError'` checks keep working. */
export class AbortError extends TetherError {
  declare readonly code: 'ERR_ABORTED'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'AbortError', 'ERR_ABORTED')
  }
}

/**
 * A connection attempt failed before the socket opened: the connection was refused or closed,
 * the server refused the upgrade (its HTTP status, where the WebSocket implementation tells),
 * the URL or protocols provider threw or returned a bad value, the WebSocket constructor
 * refused the URL, or the `onOpen` hook failed. `cause` is the platform's error, if any.
 */
export class ConnectionError extends TetherError {
  declare readonly code: 'ERR_CONNECTION'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'ConnectionError', 'ERR_CONNECTION')
  }
}

/** An option, URL or argument is invalid. Thrown synchronously, naming the option and what is accepted. */
export class OptionError extends TetherError {
  declare readonly code: 'ERR_INVALID_OPTION'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'OptionError', 'ERR_INVALID_OPTION')
  }
}

/**
 * A message cannot be encoded for the wire, so `send()` or `request()` (or the server's
 * `session.send()`) rejected it at once: in tether mode it is not JSON-encodable (a BigInt, a
 * cycle, `undefined`) or is binary; in raw mode `serialize` returned neither a string nor binary.
 * `data` is the message; `cause` is the encoder's error, if it threw one.
 */
export class EncodeError extends TetherError {
  declare readonly code: 'ERR_ENCODE'

  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'EncodeError', 'ERR_ENCODE')
  }
}

/** The server's request handler answered with an error; `code` is the code the server gave. */
export class ReplyError extends TetherError {
  declare readonly code: ReplyErrorCode

  constructor(message: string, code: ReplyErrorCode, options?: TetherErrorOptions) {
    super(message, options, 'ReplyError', code)
  }
}

/** Why a durable outbox store (`tethersocket/persist`) cannot keep the outbox: a {@link PersistError}'s `reason`. */
export type PersistFailure =
  /** IndexedDB is missing or refused to open (a private window, storage disabled), or a storage operation failed. */
  | 'unavailable'
  /** The browser's storage quota is used up: the change was not written. */
  | 'quota'
  /** The browser deleted the stored outbox under the page (storage cleared or evicted). */
  | 'evicted'
  /** The database was written by a newer version of tethersocket, which this one does not downgrade. */
  | 'version'
  /** Another page holds the outbox (it reopened or adopted it first), or this page no longer does. */
  | 'locked'

/**
 * The durable outbox (`tethersocket/persist`) cannot keep what it was given: `reason` says why
 * ({@link PersistFailure}); `cause` is the browser's error, when there is one. What was not
 * written is still held in memory: only its survival of a reload is lost.
 */
export class PersistError extends TetherError {
  declare readonly code: 'ERR_PERSIST'
  /** Why: `'unavailable'`, `'quota'`, `'evicted'`, `'version'` or `'locked'`. */
  readonly reason: PersistFailure

  constructor(message: string, reason: PersistFailure, options?: TetherErrorOptions) {
    super(message, options, 'PersistError', 'ERR_PERSIST')
    this.reason = reason
  }
}
