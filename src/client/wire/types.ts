/**
 * Where a server message stands: the `message` event's second argument.
 * @example
 * ```ts
 * sock.on('message', (msg, info) => {
 *   if (info.redelivered && seen.has(info.id)) return // shown before a reload
 *   if (info.topic) renderInRoom(info.topic, msg) // published to a topic the session is a member of
 *   else render(msg)
 * })
 * ```
 */
export interface MessageInfo {
  /** Tether mode: the session id and the message's sequence number, stable across resends. Raw mode: undefined. */
  readonly id: string | undefined
  /** Tether mode: the message's sequence number in its session. */
  readonly seq: number | undefined
  /** True when the page may have seen this message before (across a reload, with `persist`). */
  readonly redelivered: boolean
  /**
   * Tether mode: the topic the server published this message to (the session is a member of
   * it); undefined for a message sent to this session directly, and always in raw mode.
   */
  readonly topic: string | undefined
}

/**
 * The `missed` event's argument: the server's retention dropped `count` messages of `topic`,
 * published while this session was a member, before they could reach it (the session was away
 * longer than the topic keeps its messages). It comes once, in stream order: every message of
 * the topic before it and after it is delivered as usual, so what the app lacks is exactly the
 * gap it reports. The server has no copy of those messages any more: reload the topic's state
 * from your own API.
 * @example
 * ```ts
 * sock.on('missed', async ({ topic, count }) => {
 *   console.warn(`${count} messages of ${topic} were missed: reloading its history`)
 *   const history = await fetch(`/api/rooms/${encodeURIComponent(topic)}/messages`).then((r) => r.json())
 *   replaceRoom(topic, history)
 * })
 * ```
 */
export interface MissedInfo {
  /** The topic whose messages were missed. */
  readonly topic: string
  /** How many of its messages were dropped before they reached this session (at least 1). */
  readonly count: number
  /** The report's id, as `MessageInfo.id`: the session id and its sequence number, stable across resends. */
  readonly id: string
  /** The report's sequence number in its session: it takes its place in the stream like a message. */
  readonly seq: number
  /** True when the page may have had this report before (across a reload, with `persist`), as for a message. */
  readonly redelivered: boolean
}

/**
 * The seam between the connection (socket.ts) and what flows over it. A wire protocol
 * encodes messages, keeps them in the outbox until they are finished, writes them to the
 * connection, and turns incoming frames into messages, acknowledgements and errors. `raw.ts`
 * and `tether.ts` implement it.
 *
 * Life of a protocol: created once per socket, it outlives connections. For each
 * connection it is `attach`ed when the WebSocket opens, receives frames, writes what the
 * onOpen hook sends at once and everything else once the socket is open (`flush`), and is
 * `detach`ed when the connection is gone.
 *
 * One message crosses the seam once on its way out: `send()` checks what only the socket can
 * (closed, per-call options) and hands it to `queue`, which encodes it, adds it to the outbox
 * and writes it or schedules the write; the frames come back through `ProtocolHost.write`.
 * @module
 */
import type { TetherError } from '../../errors.js'
import type { Entry, EntryOptions, Outbox, Payload } from '../outbox.js'

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
  /** Hands an incoming application message to the `message` listeners, with where it stands. */
  deliver(message: In, info: MessageInfo): void
  /** Hands a report of missed topic messages to the `missed` listeners (tether mode). */
  missed(info: MissedInfo): void
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

/**
 * A message as `send()`, `request()` or the onOpen hook hands it to {@link Protocol.queue}:
 * its deadlines and per-call options as the outbox keeps them, and what the socket knows.
 */
export interface Handover extends Omit<EntryOptions, 'requestId'> {
  /** A `request()`: the protocol gives it an id, and it finishes with the reply, not the ack. */
  request?: boolean
  /**
   * A `send()` without per-call options: nothing about it needs keeping, so a protocol with
   * nothing to wait for (raw mode) may write it at once, bypassing the outbox.
   */
  plain?: boolean
  /** The socket is `open`: the message may be written now (behind the backlog). */
  open: boolean
}

/** A wire protocol, as the socket drives it. */
export interface Protocol<Out> {
  /** The WebSocket subprotocol this protocol needs the server to select, if any. */
  readonly subprotocol: string | undefined
  /** Whether `request()` is possible. */
  readonly requests: boolean
  /**
   * Takes a message from `send()`, `request()` or the onOpen hook, in one call: encodes it,
   * adds it to the outbox and writes it as `handover` allows (the onOpen hook's at once, ahead
   * of the backlog; while open, with the next flush; otherwise on the next open).
   * @returns the promise the caller gets
   * @throws a TetherError (an `EncodeError` unless the serializer threw a TetherError of its
   * own) when the message cannot be encoded; nothing is queued then
   */
  queue(data: Out, handover: Handover): Promise<unknown>
  /**
   * Encodes a message without queuing it, throwing what `queue` would. The socket calls it only
   * for a message whose options are invalid: an encoding failure is reported ahead of those.
   */
  encode(data: Out): Payload
  /** A connection opened and the server selected `selected` (empty string for none). */
  attach(selected: string): void
  /** A frame arrived on the current connection. */
  receive(data: WireData): void
  /**
   * The socket is open: writes every queued entry of the outbox to the current connection, and
   * from then on what `queue` adds (a protocol may gather what is sent in one tick).
   */
  flush(): void
  /** The current connection is gone. */
  detach(): void
  /** Checks at once that the connection is alive (the page became visible, the network came back). */
  probe?(): void
  /**
   * The socket stops for good (closed, or given up): fails what the protocol holds outside the
   * outbox (tether: requests acknowledged and awaiting their reply).
   */
  failAwaiting?(makeError: (entry: Entry) => TetherError): void
}
