/**
 * The session's seams: the connection it reads from and writes to (ws.ts implements it for
 * `ws`; tests with plain objects), the events it reports to the server that owns it (index.ts),
 * and its limits.
 * @module
 */
import type { RateLimit } from './limits.js'
import type { Session } from './sessions.js'
import type { TopicLog } from './topics.js'

/** One connection as the session sees it. */
export interface SessionConnection {
  /**
   * Writes a frame. `written`, when given, is called once the frame was handed to the network,
   * or with an error when it never will be (the connection closed).
   */
  send(frame: string, written?: (error?: Error) => void): void
  /** Closes the connection; the reason is cut here to the WebSocket limit (123 UTF-8 bytes). */
  close(code: number, reason: string): void
  /** Stops reading from the connection (rate-limit backpressure: admission.ts says when). */
  pause?(): void
  /** Reads again after `pause()`. Must be harmless on a closed connection. */
  resume?(): void
  /**
   * Whether the connection is still open: false once it is closing (the peer's close frame was
   * read, or the server is closing it). Held work is not delivered on a connection that is not
   * open. Without this method, an attached connection counts as open until it is detached.
   */
  isOpen?(): boolean
  /**
   * Bytes written to the connection and not yet handed to the network (`ws`'s `bufferedAmount`).
   * With it, the session stops writing messages once `WRITE_BUFFER_BYTES` are buffered (a client
   * that does not read), keeps the rest in its outbox, and writes again when the frames it wrote
   * were handed on (`send()`'s `written`). Without it, every message is written at once.
   */
  bufferedAmount?(): number
}

/** Why a session ended: its `sessionTtl` ran out, the server evicted it to stay within `maxDisconnectedBytes`, `end()` was called, or the server shut down. */
export type ExpireReason = 'ttl' | 'evicted' | 'ended' | 'shutdown'

/**
 * Where a client item stands in its session's sequence: the third argument of the `message`
 * listener and of the request handler.
 * @example
 * ```ts
 * server.on('message', async (order, session, info) => {
 *   // Side effects keyed by info.id happen once, even when a node died mid-way and the item came again.
 *   await db.query('INSERT INTO orders (id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING', [info.id, order])
 * })
 * ```
 */
export interface MessageInfo {
  /** Identifies the item across resends and nodes: the session id and the item's sequence number. */
  readonly id: string
  /** The item's sequence number in its session (the client numbers its items from 1). */
  readonly seq: number
  /**
   * True when a node may already have handled this item and died (or let the session go)
   * before recording it: its side effects may have happened once already.
   */
  readonly redelivered: boolean
}

/** What sessions report to the server that owns them. */
export interface SessionEvents {
  /** A client item, in order; what it returns, if a promise, holds the item's record in a shared store until it settles. */
  message(data: unknown, session: Session, info: MessageInfo): unknown
  request(data: unknown, session: Session, info: MessageInfo): Promise<unknown>
  expire(session: Session, reason: ExpireReason): void
  /**
   * The session let go of its connection (closed, lost, or closed by the server), `code` being
   * the close code; not when a newer connection of the session replaced it (the session is still
   * connected then). Before `expire` when the session ends while connected.
   */
  disconnect?(session: Session, code: number): void
  /**
   * What the session holds, as the server-wide budget sees it, changed: it disconnected, it
   * reconnected or ended, or, while disconnected, it queued more. `parked`: it is disconnected
   * and counts against the budget (`ownBytes`). `sharedBytes`: payload bytes of broadcasts that
   * this change made held (positive) or no longer held (negative) by any disconnected session,
   * since the budget counts each broadcast's payload once.
   */
  memory?(session: Session, parked: boolean, sharedBytes: number): void
  /** With a shared store: the session's connection is gone; the server records it as waiting for a resume, and lets it go. */
  release?(session: Session): void
  /** With a shared store: the store recorded messages the client acknowledged, up to `seq`, that promises on other nodes wait on. */
  acknowledged?(session: Session, seq: number): void
  /**
   * With a shared store: the store refused this node's write (`'fenced'`: a newer connection
   * claimed the session, here or on another node; `'gone'`: it ended elsewhere) or failed.
   */
  lost?(session: Session, reason: 'fenced' | 'gone' | Error): void
  /** A `send()` on a session this node let go: the server sends it through the store, wherever the session is. */
  forward?(session: Session, payload: string): Promise<void>
  /**
   * `session.join(name)`: the server adds it to the topic, has the session take its place in the
   * topic's log (`place`), and only then says so (a `join` listener that publishes reaches it).
   */
  join?(session: Session, name: string, place: (log: TopicLog) => void): void
  /**
   * With a shared store, `session.join(name)`: the server records the membership in the store
   * (and says so), and resolves with this node's copy of the topic's log and the session's place
   * in it (the number of the next message published).
   */
  joinShared?(session: Session, name: string): Promise<{ log: TopicLog; cursor: number }>
  /** The session left the topic (`'left'`), or ended as a member (`'ended'`). */
  leave?(session: Session, name: string, reason: 'left' | 'ended'): void
}

/** Limits of one session. */
export interface SessionLimits {
  /** Most messages (sent, not yet acknowledged by the client) held per session. */
  maxQueue: number
  /** Most bytes of such messages held per session: their UTF-8 payloads plus a fixed overhead each (memory.ts). */
  maxQueueBytes: number
  /** Largest frame written to the client, in bytes. */
  maxPayload: number
  /** How long a disconnected session is kept for resume, in ms. */
  sessionTtl: number
  /** The rate limit (admission.ts has the rule), or false for none. */
  rateLimit: RateLimit | false
  /** Most requests awaiting the handler's reply at once. */
  maxPendingRequests: number
}
