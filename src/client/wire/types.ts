/**
 * The seam between the connection (socket.ts) and what flows over it. A wire protocol
 * encodes messages, writes the outbox to the connection, and turns incoming frames into
 * messages, acknowledgements and errors. `raw.ts` and `tether.ts` implement it.
 *
 * Life of a protocol: created once per socket, it outlives connections. For each
 * connection it is `attach`ed when the WebSocket opens, receives frames, writes the onOpen
 * hook's messages (`writeAheadOfQueue`) and then everything (`flush`) when the socket asks,
 * and is `detach`ed when the connection is gone.
 * @module
 */
import type { TetherError } from '../../errors.js'
import type { Entry, Outbox, Payload } from '../outbox.js'

/** What arrives from a WebSocket (binaryType is set to `'arraybuffer'`). */
export type WireData = string | ArrayBuffer | Blob

/** What a protocol may do with the socket it serves. */
export interface ProtocolHost<In> {
  /** The socket's outbox: entries to write, acknowledge and fail. */
  readonly outbox: Outbox
  /** Writes a frame to the current connection; false (nothing written) when it is not open. */
  write(frame: Payload): boolean
  /**
   * The handshake is done and everything that was in flight on an earlier connection has
   * been written again: the socket may run its `onOpen` hook, enter `open` and flush.
   */
  ready(): void
  /** Hands an incoming application message to the `message` listeners. */
  deliver(message: In): void
  /** Reports an error as an `error` event; the connection goes on. */
  report(error: TetherError): void
  /**
   * Ends the current connection with `code` and `reason` (nothing happens without one, or while
   * closing). `error` is reported first; reconnection then follows the policy, unless `final`.
   */
  drop(code: number, reason: string, options?: DropOptions): void
}

/** How {@link ProtocolHost.drop} ends a connection. */
export interface DropOptions {
  /** What went wrong, emitted as `error` (and, when final, the cause of what fails). */
  error?: TetherError
  /** No reconnect: everything undelivered fails and the socket is `closed`. Default false. */
  final?: boolean
}

/** A wire protocol, as the socket drives it. */
export interface Protocol<Out> {
  /** The WebSocket subprotocol this protocol needs the server to select, if any. */
  readonly subprotocol: string | undefined
  /** Whether `request()` is possible. */
  readonly requests: boolean
  /** Encodes a message when `send()` is called, so errors surface there. Throws a TetherError. */
  encode(data: Out): Payload
  /** A connection opened and the server selected `selected` (empty string for none). */
  attach(selected: string): void
  /** A frame arrived on the current connection. */
  receive(data: WireData): void
  /**
   * The socket is open: writes every queued entry of the outbox to the current connection (a
   * protocol may gather what is sent in one tick), now and whenever the socket calls again.
   */
  flush(): void
  /**
   * Writes the entry the onOpen hook just put ahead of the queue, and nothing else: before the
   * socket is open the backlog waits for `flush`.
   */
  writeAheadOfQueue(): void
  /** The current connection is gone. */
  detach(): void
  /** Writes a message at once, bypassing the outbox, when the protocol has nothing to wait for (raw mode). */
  writeNow?(payload: Payload): boolean
  /** An id for a new request (protocols with requests). */
  nextId?(): number
  /** Checks at once that the connection is alive (the page became visible, the network came back). */
  probe?(): void
  /**
   * The socket stops for good (closed, or given up): fails what the protocol holds outside the
   * outbox (tether: requests acknowledged and awaiting their reply).
   */
  failAwaiting?(makeError: (entry: Entry) => TetherError): void
}
