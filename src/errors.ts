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

/** Options shared by the error constructors. */
export interface TetherErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown
  /** The message (as passed to `send()` or `request()`) this error is about, if any. */
  data?: unknown
}

/** Base class of every error raised or emitted by tethersocket. */
export class TetherError extends Error {
  /** A stable machine-readable code, such as `ERR_QUEUE_FULL`. */
  readonly code: string
  /** The message this error is about (for send/request failures). */
  readonly data?: unknown

  /**
   * @param name - set explicitly rather than read from the constructor, which minifiers rename
   */
  constructor(message: string, options?: TetherErrorOptions, name = 'TetherError', code = 'ERR_TETHER') {
    super(message, options && 'cause' in options ? { cause: options.cause } : undefined)
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
  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'DeliveryError', 'ERR_DELIVERY')
  }
}

/** A deadline passed: a message's `timeout` or `ttl`, a request, or a connection attempt. */
export class TimeoutError extends TetherError {
  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'TimeoutError', 'ERR_TIMEOUT')
  }
}

/** The outgoing queue was full (`queue.maxMessages` or `queue.maxBytes`), or a message was dropped to make room. */
export class QueueFullError extends TetherError {
  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'QueueFullError', 'ERR_QUEUE_FULL')
  }
}

/** The peer broke the wire protocol: a malformed frame, or a server that does not speak `tether.v1`. */
export class ProtocolError extends TetherError {
  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'ProtocolError', 'ERR_PROTOCOL')
  }
}

/** The socket was closed by the user (`close()`) before the message was delivered. */
export class ClosedError extends TetherError {
  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'ClosedError', 'ERR_CLOSED')
  }
}

/** A message's `signal` was aborted. Named `AbortError` like the platform's, so `err.name === 'AbortError'` checks keep working. */
export class AbortError extends TetherError {
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
  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'ConnectionError', 'ERR_CONNECTION')
  }
}

/** An option, URL or argument is invalid. Thrown synchronously, naming the option and what is accepted. */
export class OptionError extends TetherError {
  constructor(message: string, options?: TetherErrorOptions) {
    super(message, options, 'OptionError', 'ERR_INVALID_OPTION')
  }
}

/** The server's request handler answered with an error; `code` is the code the server gave. */
export class ReplyError extends TetherError {
  constructor(message: string, code: string, options?: TetherErrorOptions) {
    super(message, options, 'ReplyError', code)
  }
}
