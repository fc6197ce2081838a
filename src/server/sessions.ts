/**
 * The server half of tether.v1, independent of any WebSocket library: sessions that outlive
 * connections, their sequence numbers and acks, the bounded per-session outbox, and the rate
 * limit's backpressure (limits.ts has the rule). ws.ts feeds it the frames of real connections
 * as received; the session decodes each when the rate limit lets it in.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { ClosedError, DeliveryError, EncodeError, QueueFullError, type TetherError } from '../errors.js'
import {
  type ClientFrame,
  CloseCode,
  decodeFrame,
  encodeFrame,
  encodePayload,
  FrameError,
  msgBatcher,
  perTick,
  type ReplyErrorBody,
  resFrame,
} from '../protocol/frames.js'
import { MAX_HOLD, maxHeldBytes, type RateLimit, TokenBucket } from './limits.js'
import type { AckProgress } from './liveness.js'
import { REPLY_ENTRY_BYTES, SENT_ENTRY_BYTES, SHARED_ENTRY_BYTES, WRITE_BUFFER_BYTES } from './memory.js'

/** One connection as the session sees it. */
export interface SessionConnection {
  /**
   * Writes a frame. `written`, when given, is called once the frame was handed to the network,
   * or with an error when it never will be (the connection closed).
   */
  send(frame: string, written?: (error?: Error) => void): void
  close(code: number, reason: string): void
  /**
   * Stops reading from the connection (backpressure, once `maxHeldBytes` of frames are held).
   * Frames already read may still arrive, and are held too; a frame that would bring the held
   * bytes beyond twice `maxHeldBytes` is refused (1013), which only a connection without
   * `pause()` reaches.
   */
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

/** What sessions report to the server that owns them. */
export interface SessionEvents {
  message(data: unknown, session: Session): void
  request(data: unknown, session: Session): Promise<unknown>
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
  /** Incoming messages, requests and pings (every frame at least one) per second (sustained and burst), or false for no limit. */
  rateLimit: RateLimit | false
  /** Most requests awaiting the handler's reply at once. */
  maxPendingRequests: number
}

/**
 * A message held for the client. Its sequence number is its place in the outbox (they are
 * consecutive), so a broadcast's entry carries nothing per session and is shared by all of them.
 */
interface Outgoing {
  /** A `msg` payload (JSON), or a complete `res` frame. */
  readonly payload: string
  /** UTF-8 bytes of `payload`. */
  readonly size: number
  readonly reply?: true
  /** Only for `session.send()`: its promise, and what settles it. */
  readonly promise?: Promise<void>
  readonly resolve?: () => void
  readonly reject?: (error: TetherError) => void
  /** Only for a shared message: how many disconnected (parked) sessions hold it. */
  holdersAway?: number
}

/** A message encoded once for many sessions (a broadcast): each queues this same object, without a promise. @internal */
export interface SharedMessage extends Outgoing {
  holdersAway: number
  readonly reply?: undefined
  readonly promise?: undefined
  readonly resolve?: undefined
  readonly reject?: undefined
}

/** Makes a {@link SharedMessage} of a payload already JSON-encoded. @internal */
export const sharedMessage = (payload: string): SharedMessage => ({ payload, size: Buffer.byteLength(payload), holdersAway: 0 })

/** Bytes an outbox entry counts against `maxQueueBytes` (memory.ts has the figures). */
const cost = (entry: Outgoing): number =>
  entry.size + (entry.resolve ? SENT_ENTRY_BYTES : entry.reply ? REPLY_ENTRY_BYTES : SHARED_ENTRY_BYTES)

/** Client frames that are work for the server, and cost a token of the rate limit each item. */
type Work = Extract<ClientFrame, { t: 'msg' | 'req' | 'ping' }>

/**
 * An entry of the held queue, in arrival order. `size` is the bytes of the frame as received.
 *
 * Frames wait there as they came (`raw`: the text, not decoded; `frame`: a small frame, decoded
 * on arrival) until their turn comes and a token is there for them; only then are they taken in
 * (decoded, sequenced) and become work: a `msg` frame (or the rest of one) with only what is
 * still to deliver, the items from `next` on (`s` is the sequence number of `items[0]`;
 * delivered ones are let go at once), a `req` or a `ping`. A frame that carries no work (an
 * ack, a frame of an unknown type, a resend of what was delivered) becomes `owed`: the token it
 * costs, taken in its turn.
 */
type Held =
  | { t: 'raw'; text: string | Buffer; size: number }
  | { t: 'frame'; frame: ClientFrame | undefined; size: number }
  | { t: 'owed'; size: number }
  | { t: 'msg'; s: number; items: unknown[]; next: number; size: number }
  | { t: 'req'; frame: Extract<Work, { t: 'req' }>; size: number }
  | { t: 'ping'; size: number }

/** Tokens a held entry still needs: its items, for work; one (the least a frame costs) for the rest. */
const remaining = (entry: Held): number => (entry.t === 'msg' ? entry.items.length - entry.next : 1)

/**
 * Frames up to this many bytes are decoded as they arrive, held or not: parsing them costs about
 * what reading them does, and the acks among them (32 bytes at most from the reference client)
 * are applied at once. Bigger frames are decoded only when the rate limit lets them in.
 */
export const DECODE_AT_ONCE = 64

/** Held work is released in steps of about this many ms' worth of the rate: no timer per message. */
const RELEASE_STEP = 10

/**
 * A frame that would bring the held bytes beyond this many times `maxHeldBytes` is refused.
 * Reading stops at `maxHeldBytes`, and what was already read is far less than as much again:
 * only a connection that cannot stop reading gets here.
 */
const HELD_BYTES_CEILING = 2

const noop = () => {}

/** Takes the place of an acknowledged entry until the outbox is compacted. */
const RELEASED: Outgoing = { payload: '', size: 0 }

/**
 * A client's session: stable across its reconnects until it stays disconnected longer than
 * `sessionTtl`. Delivery to the server's handlers is exactly once and in order; `send()`
 * resolves when the client has acknowledged.
 */
export class Session {
  /** 128 random bits, base64url: unguessable, and the only key to resume the session. */
  readonly id = randomBytes(16).toString('base64url')
  /** Last client sequence number delivered to the handlers (and acknowledged). */
  private rxSeq = 0
  /** Last client sequence number accepted on this connection: delivered, or held over the rate limit. */
  private rxAccepted = 0
  /** Something was received since the last ack written: an ack is due (at the end of the tick, or before a close). */
  private ackDue = false
  private txSeq = 0
  /** The client's last cumulative ack. */
  private txAcked = 0
  /**
   * Unacknowledged outgoing messages from `head`, numbered consecutively up to `txSeq`; `written`
   * of them went on the current connection.
   */
  private outbox: Outgoing[] = []
  private head = 0
  private written = 0
  /** What the unacknowledged messages count against `maxQueueBytes`. */
  private outboxBytes = 0
  /** Of those, the payload bytes of shared messages (broadcasts), which the server-wide budget counts once for all sessions. */
  private sharedBytes = 0
  /** Disconnected and counted by the server-wide budget: the shared messages in the outbox count this session among their holders. */
  private parked = false
  /** The connection the session stopped writing to (WRITE_BUFFER_BYTES were buffered), until what it buffered was handed on. */
  private writeBlocked: SessionConnection | undefined
  private connection: SessionConnection | undefined
  private expiry: ReturnType<typeof setTimeout> | undefined
  private ended = false
  private readonly bucket: TokenBucket | undefined
  /** Requests handed to the handler and not yet answered. */
  private pendingRequests = 0
  /**
   * Work of the current connection over the rate limit, in arrival order from `heldHead`. Reading
   * from the connection goes on (acks are handled at once) until `maxHeldBytes` of frames are
   * held (limits.ts has the rule).
   */
  private held: Held[] = []
  private heldHead = 0
  /** Messages, requests and pings held (each costs a token). */
  private heldItems = 0
  private heldBytes = 0
  /** Changes whenever held work is discarded, so a release in progress knows it is void. */
  private holdEpoch = 0
  private releaseTimer: ReturnType<typeof setTimeout> | undefined
  /** Reading from the connection is paused: `maxHeldBytes` were held, and not yet under half of it again. */
  private paused = false
  /**
   * Set when work beyond what may be held arrived: the close reason. Later work on the connection
   * is ignored (never acknowledged), and it is closed with 1013 once what is held is delivered.
   */
  private refusal: string | undefined
  /**
   * Bytes of frames ignored since the refusal: once `maxHeldBytes` of them were, reading stops until
   * the 1013 (a client flooding on would otherwise be read, for nothing, as fast as it sends).
   */
  private refusedBytes = 0
  /** Tokens a release waits for: about RELEASE_STEP ms of the rate (the burst does not cap it: held work is owed what accrues). */
  private readonly releaseBatch: number

  /**
   * @param principal - who authenticated this session (`undefined` when no `authenticate` hook); only the same principal may resume it
   */
  constructor(
    readonly principal: string | undefined,
    private readonly limits: SessionLimits,
    private readonly events: SessionEvents,
  ) {
    const { rateLimit } = limits
    this.bucket = rateLimit ? new TokenBucket(rateLimit) : undefined
    this.releaseBatch = rateLimit ? Math.max(1, Math.ceil((rateLimit.rate * RELEASE_STEP) / 1000)) : 1
  }

  /** Whether a connection is attached now. */
  get connected(): boolean {
    return this.connection !== undefined
  }

  /** Messages sent to the client and not yet acknowledged. */
  get pending(): number {
    return this.outbox.length - this.head
  }

  /** What the messages not yet acknowledged count against `maxQueueBytes`: UTF-8 payload bytes plus a fixed overhead each. */
  get queuedBytes(): number {
    return this.outboxBytes
  }

  /** What the session counts against `maxDisconnectedBytes` besides its fixed overhead: `queuedBytes` without the shared payloads. @internal */
  get ownBytes(): number {
    return this.outboxBytes - this.sharedBytes
  }

  /**
   * How far the client acknowledged what was written to it on `connection` (the heartbeat's
   * evidence that it reads); undefined if that connection is not the attached one. @internal
   */
  ackProgress(connection: SessionConnection): AckProgress | undefined {
    if (this.connection !== connection) return undefined
    // Entries are numbered by their place: the last written is `written` after the last acknowledged.
    return { acked: this.txAcked, written: this.txSeq - this.pending + this.written }
  }

  /**
   * Sends a message to the client. Resolves when the client acknowledged it; while the client
   * is away it waits (bounded by `maxQueue` and `maxQueueBytes`) and goes out on resume.
   * @example
   * ```ts
   * await session.send({ type: 'welcome', motd })
   * ```
   */
  send(data: unknown): Promise<void> {
    let payload: string
    try {
      payload = encodePayload(data)
    } catch (cause) {
      return handledRejection(new EncodeError(`message cannot be encoded as JSON: ${(cause as Error).message}`, { cause, data }))
    }
    return this.sendEncoded(payload)
  }

  /** `send()` for a payload already JSON-encoded. @internal */
  sendEncoded(payload: string): Promise<void> {
    if (this.ended) return handledRejection(new ClosedError('session has ended'))
    const size = Buffer.byteLength(payload)
    const full = this.fullFor(size + SENT_ENTRY_BYTES)
    if (full) return handledRejection(full)
    let resolve = noop
    let reject: (error: TetherError) => void = noop
    const promise = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    this.enqueue({ payload, size, promise, resolve, reject })
    return promise
  }

  /**
   * Queues a message shared with other sessions (a broadcast): no promise, and the entry is the
   * one object every session holds. Returns false, queuing nothing, when the session has ended
   * or is at `maxQueue` or `maxQueueBytes`. @internal
   */
  sendShared(message: SharedMessage): boolean {
    if (this.ended || this.fullFor(message.size + SHARED_ENTRY_BYTES)) return false
    this.enqueue(message)
    return true
  }

  /**
   * Counts this session among the holders of the shared messages in its outbox (`by` 1), or no
   * longer (-1). Returns the payload bytes of those it was the first, or the last, disconnected
   * holder of (negative when they are let go).
   */
  private holdShared(by: 1 | -1): number {
    let bytes = 0
    const { outbox } = this
    for (let i = this.head; i < outbox.length; i++) {
      const entry = outbox[i]
      if (entry.holdersAway === undefined) continue
      entry.holdersAway += by
      if (entry.holdersAway === (by > 0 ? 1 : 0)) bytes += by * entry.size
    }
    return bytes
  }

  /** Leaves the server-wide budget (connected again, or ended); returns the shared payload bytes let go (negative). */
  private unpark(): number {
    if (!this.parked) return 0
    this.parked = false
    return this.holdShared(-1)
  }

  /** Why a message counting `bytes` cannot be queued now, or undefined if it can. */
  private fullFor(bytes: number): QueueFullError | undefined {
    const { maxQueue, maxQueueBytes } = this.limits
    if (this.pending >= maxQueue) {
      return new QueueFullError(
        `session ${this.id} has ${this.pending} unacknowledged messages (maxQueue ${maxQueue}); the client is not keeping up or is away`,
      )
    }
    if (this.outboxBytes + bytes > maxQueueBytes) {
      return new QueueFullError(
        `session ${this.id} holds ${this.outboxBytes} bytes of unacknowledged messages and this one counts ${bytes} (maxQueueBytes ${maxQueueBytes}); the client is not keeping up or is away`,
      )
    }
    return undefined
  }

  /** Appends to the outbox (numbered `++txSeq`), counts it, and writes it at the end of the tick. */
  private enqueue(entry: Outgoing): void {
    this.txSeq++
    this.outbox.push(entry)
    this.outboxBytes += cost(entry)
    if (entry.holdersAway !== undefined) this.sharedBytes += entry.size
    this.queueFlush()
    // Disconnected: what it holds counts against the server-wide budget (which may end this session).
    if (this.parked) this.events.memory?.(this, true, entry.holdersAway !== undefined && entry.holdersAway++ === 0 ? entry.size : 0)
  }

  /** Attaches a connection after a `hello`: drops what the client has, writes `welcome`, resends the rest. @internal */
  attach(connection: SessionConnection, clientAck: number, resumed: boolean): void {
    if (clientAck > this.txSeq)
      throw new FrameError(`hello acknowledges ${clientAck} but only ${this.txSeq} were sent`, CloseCode.PROTOCOL_ERROR)
    clearTimeout(this.expiry)
    this.expiry = undefined
    // Held work belonged to the old connection: never acknowledged, so the client resends it.
    this.discardHeld()
    this.connection?.close(1000, 'replaced by a newer connection of the same session')
    this.connection = connection
    this.acknowledge(clientAck)
    connection.send(
      encodeFrame({
        t: 'welcome',
        sid: this.id,
        resumed,
        ack: this.rxSeq,
        max: this.limits.maxPayload,
        reqs: this.limits.maxPendingRequests,
      }),
    )
    this.written = 0
    this.events.memory?.(this, false, this.unpark())
    this.flush()
  }

  /**
   * The connection is gone, or about to be closed: the ack of what was delivered is written now
   * (a closed connection ignores it), held work is discarded, and the session waits `sessionTtl`
   * for the client to resume it. Nothing happens if `connection` is not the attached one (a newer
   * connection replaced it). @internal
   * @param code - the close code, for the `disconnect` event: 1006 (lost, no close frame) unless given
   */
  detach(connection: SessionConnection, code = 1006): void {
    if (this.connection !== connection) return
    this.writeAck()
    this.discardHeld()
    this.connection = undefined
    this.written = 0
    this.writeBlocked = undefined
    // Presence tracking hears of the connection first: before anything the budget does (an eviction's expire).
    this.events.disconnect?.(this, code)
    if (this.ended) return // a disconnect listener ended the session
    this.expiry = setTimeout(
      () => this.endWith(new DeliveryError('session expired before the client acknowledged'), 'ttl'),
      this.limits.sessionTtl,
    )
    this.parked = true
    this.events.memory?.(this, true, this.holdShared(1))
  }

  /**
   * Handles one frame from the attached connection (after the hello), as received: its UTF-8
   * JSON text, and `size`, its length in bytes (what it costs against `maxHeldBytes` while it
   * waits). Every frame costs at least one token of the rate limit, and is decoded only once the
   * limit lets it in (small ones, see DECODE_AT_ONCE, at once). Throws FrameError for protocol
   * violations and limits: the ack of what was delivered is written first, whatever the
   * connection had held is discarded, and the caller closes the connection. @internal
   */
  receiveText(text: string | Buffer, size: number): void {
    this.guard(() => {
      if (size > DECODE_AT_ONCE) this.arrive(text, size)
      else this.arrive(decodeFrame(typeof text === 'string' ? text : text.toString(), 'client'), size)
    })
  }

  /** `receiveText()` for a frame already decoded (`undefined`: a frame of an unknown type). @internal */
  receive(frame: ClientFrame | undefined, size: number): void {
    this.guard(() => this.arrive(frame, size))
  }

  private guard(handle: () => void): void {
    try {
      handle()
    } catch (error) {
      if (error instanceof FrameError) this.writeAck()
      this.discardHeld()
      throw error
    }
  }

  /** One frame, in arrival order: an ack is applied at once (its token owed); anything else waits its turn. */
  private arrive(data: string | Buffer | ClientFrame | undefined, size: number): void {
    const decoded = data === undefined || (typeof data !== 'string' && !Buffer.isBuffer(data))
    if (decoded && data?.t === 'ack') {
      // Not work (it concerns the other direction): applied at once, even while work is held, so
      // a client that acknowledges what it receives never finds the outbox full.
      this.applyAck(data)
      if (this.refusal === undefined) this.admit({ t: 'owed', size })
      return
    }
    if (decoded && data?.t === 'hello') throw new FrameError('second "hello" on one connection', CloseCode.PROTOCOL_ERROR)
    // Refusing: the client resends this work when it resumes, after the 1013 that is coming.
    if (this.refusal !== undefined) {
      this.refusedBytes += size
      this.updateReading()
      return
    }
    this.admit(decoded ? { t: 'frame', frame: data, size } : { t: 'raw', text: data, size })
  }

  private applyAck(frame: Extract<ClientFrame, { t: 'ack' }>): void {
    if (frame.s > this.txSeq)
      throw new FrameError(`ack ${frame.s} for a message never sent (last sent ${this.txSeq})`, CloseCode.PROTOCOL_ERROR)
    this.acknowledge(frame.s)
  }

  /**
   * Takes in the frame at the front of the held queue, its turn come and a token there for it:
   * decodes and sequences it, and puts in its place the work it carries, or the token it owes.
   * A `msg` frame carrying more than the bucket delivers within MAX_HOLD (`inHand`: tokens
   * already taken for this round) is cut there and work is refused from there on: what was held
   * after it is let go, and the connection closed with 1013 once the rest is delivered.
   */
  private takeIn(inHand: number, owed: boolean): void {
    const { held } = this
    const entry = held[this.heldHead]
    if (entry.t !== 'raw' && entry.t !== 'frame') return
    const frame =
      entry.t === 'raw' ? decodeFrame(typeof entry.text === 'string' ? entry.text : entry.text.toString(), 'client') : entry.frame
    const size = entry.size
    let work: Held | undefined
    switch (frame?.t) {
      case 'msg': {
        const first = this.accept(frame.s, frame.d.length)
        // Only the new items are kept (not the frame): a resend overlapping delivered ones holds none of those.
        if (first < frame.d.length)
          work = { t: 'msg', s: frame.s + first, items: first === 0 ? frame.d : frame.d.slice(first), next: 0, size }
        break
      }
      case 'req':
        if (this.accept(frame.s, 1) === 0) work = { t: 'req', frame, size }
        break
      case 'ping':
        work = { t: 'ping', size }
        break
      case 'ack':
        this.applyAck(frame)
        break
      case 'hello':
        throw new FrameError('second "hello" on one connection', CloseCode.PROTOCOL_ERROR)
    }
    if (!work) {
      held[this.heldHead] = { t: 'owed', size }
      return
    }
    held[this.heldHead] = work
    this.heldItems += remaining(work) - 1
    if (work.t !== 'msg' || !this.bucket) return
    const room = inHand + this.bucket.tokensWithin(MAX_HOLD, owed)
    if (work.items.length <= room) return
    this.refusal = 'rate limit exceeded; slow down and resume'
    // Nothing after what is held is accepted: the client resends it after the 1013.
    this.heldItems -= work.items.length - room
    work.items = work.items.slice(0, room)
    this.rxAccepted = work.s + room - 1
    for (let i = this.heldHead + 1; i < held.length; i++) {
      this.heldItems -= remaining(held[i])
      this.heldBytes -= held[i].size
    }
    held.length = this.heldHead + 1
  }

  /** Ends the session now: pending sends reject, the connection closes, the server forgets it (`expire`, reason `'ended'`). */
  end(error: TetherError = new ClosedError('session closed by the server')): void {
    this.endWith(error, 'ended')
  }

  /**
   * `end()` for a reason given to `expire`, closing the connection (if any) with `close` (the
   * server's shutdown says 1001). @internal
   */
  endWith(
    error: TetherError,
    reason: ExpireReason,
    close: { code: number; reason: string } = { code: 1000, reason: 'session ended' },
  ): void {
    if (this.ended) return
    this.ended = true
    clearTimeout(this.expiry)
    this.discardHeld()
    const sharedBytes = this.unpark()
    const { outbox, head } = this
    this.outbox = []
    this.head = 0
    this.outboxBytes = 0
    this.sharedBytes = 0
    this.writeBlocked = undefined
    for (let i = head; i < outbox.length; i++) {
      const entry = outbox[i]
      // An ignored failure must not crash the process as an unhandled rejection. Marked here,
      // not when sent: a second promise per message would cost as much again.
      entry.promise?.catch(noop)
      entry.reject?.(error)
    }
    // What was delivered is acknowledged before the close (a handler may end the session while
    // its message is being delivered): otherwise the client sends it again, to a new session.
    this.writeAck()
    const connection = this.connection
    this.connection = undefined
    if (connection) {
      connection.close(close.code, close.reason)
      // Presence tracking sees the connection go before the session does.
      this.events.disconnect?.(this, close.code)
    }
    this.events.memory?.(this, false, sharedBytes)
    this.events.expire(this, reason)
  }

  /**
   * Takes a new frame (or an ack's owed token) in arrival order: what the rate limit allows now is
   * done at once; the rest waits, and a timer releases it, in order, as tokens come. Reading from
   * the connection goes on (acks are handled at once) until `maxHeldBytes` of frames are held.
   * Only what the bucket can deliver within MAX_HOLD is held (a frame counts one token until it is
   * taken in): beyond that, the work is refused, and the connection closed with 1013 once what is
   * held is delivered.
   */
  private admit(entry: Extract<Held, { t: 'raw' | 'frame' | 'owed' }>): void {
    // Work is waiting: the tokens accruing now are owed to it, not capped at the burst (limits.ts).
    const backlogged = this.heldItems > 0
    const room =
      this.heldBytes + entry.size > HELD_BYTES_CEILING * maxHeldBytes(this.limits.maxPayload)
        ? 0
        : this.bucket
          ? Math.max(0, this.bucket.tokensWithin(MAX_HOLD, backlogged) - this.heldItems)
          : Number.POSITIVE_INFINITY
    if (room < 1) {
      // Nothing after what is held is accepted (this frame was not sequenced): the client resends it after the 1013.
      this.refusal = 'rate limit exceeded; slow down and resume'
      this.refusedBytes += entry.size
    } else {
      this.held.push(entry)
      this.heldItems += 1
      this.heldBytes += entry.size
      // Nothing was waiting before: go as far as the bucket allows now. Otherwise the timer is armed.
      if (!backlogged) {
        this.drain(false)
        // Of a frame delivered in part, only the rest is kept.
        const front = this.held[this.heldHead]
        if (front?.t === 'msg' && front.next > 0 && front.next < front.items.length) {
          front.items = front.items.slice(front.next)
          front.s += front.next
          front.next = 0
        }
      }
    }
    if (this.heldItems === 0) {
      if (this.refusal !== undefined) this.overLimit(this.refusal)
      return
    }
    this.updateReading()
    this.armRelease()
  }

  /**
   * Does held work from the front as far as the rate limit allows (`owed`: the work has waited
   * since the last take, see TokenBucket). Throws FrameError when a request is over `maxQueue`
   * or `maxPendingRequests`.
   */
  private drain(owed: boolean): void {
    const epoch = this.holdEpoch
    const { held } = this
    if (this.heldHead === held.length) return
    // A frame at the front is taken in (decoded) only once a token is there for it: a flood costs
    // no decoding beyond the rate. Taken in before the tokens are, so a frame's items all count.
    if (this.bucket && this.bucket.tokensWithin(0, owed) < 1) return
    this.takeIn(0, owed)
    // The tokens for this round, taken at once: what is left over is capped at the burst only
    // when every held item got one (the backlog is over).
    let budget = this.allowance(this.heldItems, owed)
    while (budget > 0 && this.heldHead < held.length) {
      const entry = held[this.heldHead]
      if (entry.t === 'raw' || entry.t === 'frame') {
        this.takeIn(budget, true)
        continue
      }
      if (entry.t === 'msg') {
        const { items } = entry
        const end = Math.min(items.length, entry.next + budget)
        budget -= end - entry.next
        // Queued before delivering, not after: perTick defers the write to the end of the tick, when
        // rxSeq is what these deliveries left it, so it goes out even if a handler throws halfway.
        this.queueAck()
        while (entry.next < end) {
          const i = entry.next++
          const data = items[i]
          items[i] = undefined // delivered: not kept for the rest of the hold
          this.heldItems--
          this.rxSeq = entry.s + i
          this.events.message(data, this)
          if (this.holdEpoch !== epoch) return // a handler ended the session: the rest is void
        }
        if (entry.next < items.length) return
      } else {
        budget--
        this.heldItems--
        if (entry.t === 'ping') this.connection?.send('{"t":"pong"}')
        else if (entry.t === 'req') {
          this.request(entry.frame)
          if (this.holdEpoch !== epoch) return // the handler ended the session
        }
      }
      this.heldHead++
      this.heldBytes -= entry.size
    }
    if (this.heldHead === held.length) {
      // Emptied in place: every frame passes through here, so no new array per frame.
      held.length = 0
      this.heldHead = 0
    } else if (this.heldHead > 1024 && this.heldHead * 2 > held.length) {
      // A backlog that goes on and on: compact now and then rather than shifting per entry.
      this.held = held.slice(this.heldHead)
      this.heldHead = 0
    }
  }

  /**
   * Stops reading from the connection once `maxHeldBytes` of frames are held, and reads again
   * once less than half of that is (not at every frame released: no flapping); or, refusing, once
   * `maxHeldBytes` of frames were ignored (until the 1013 closes the connection).
   */
  private updateReading(): void {
    const limit = maxHeldBytes(this.limits.maxPayload)
    if (!this.paused && (this.heldBytes >= limit || this.refusedBytes >= limit)) {
      this.paused = true
      this.connection?.pause?.()
    } else if (this.paused && this.heldBytes < limit / 2 && this.refusedBytes < limit) {
      this.paused = false
      this.connection?.resume?.()
    }
  }

  /** Arms the one release timer, for when the next batch of tokens will be there. */
  private armRelease(): void {
    if (this.releaseTimer || !this.bucket) return
    const wait = this.bucket.msUntil(Math.min(this.heldItems, this.releaseBatch), true)
    this.releaseTimer = setTimeout(this.release, Math.ceil(wait))
  }

  /**
   * The release timer: more held work is done, unless the connection is closing (then none is).
   * Once none is left, the connection is closed with 1013 if work was refused.
   */
  private readonly release = (): void => {
    this.releaseTimer = undefined
    if (this.connection?.isOpen?.() === false) {
      // The client's close frame was read (or the server is closing it): the client will resend
      // what was not acknowledged, so nothing more is delivered on this connection.
      this.discardHeld()
      return
    }
    const epoch = this.holdEpoch
    try {
      this.drain(true)
      if (this.heldItems === 0 && this.refusal !== undefined) this.overLimit(this.refusal)
    } catch (error) {
      if (!(error instanceof FrameError)) throw error
      // As if a frame had just arrived: the connection is closed, what it still held discarded.
      const connection = this.connection
      if (connection) {
        this.detach(connection, error.closeCode)
        connection.close(error.closeCode, error.message.slice(0, 120))
      }
    } finally {
      if (this.holdEpoch === epoch) {
        this.updateReading()
        if (this.heldItems > 0) this.armRelease()
      }
    }
  }

  /**
   * Forgets held work (the connection is gone or being closed): it was never acknowledged, so the
   * client resends it on resume. Reading resumes if it was paused (harmless on a closed
   * connection); the caller closes the connection.
   */
  private discardHeld(): void {
    const wasPaused = this.paused
    this.holdEpoch++
    this.held = []
    this.heldHead = 0
    this.heldItems = 0
    this.heldBytes = 0
    this.rxAccepted = this.rxSeq
    this.paused = false
    this.refusal = undefined
    this.refusedBytes = 0
    clearTimeout(this.releaseTimer)
    this.releaseTimer = undefined
    if (wasPaused) this.connection?.resume?.()
  }

  /** Hands a request to the handler, within the limits on replies; throws FrameError (1013) beyond them. */
  private request(frame: Extract<ClientFrame, { t: 'req' }>): void {
    // Replies wait in the outbox like messages, so they count against maxQueue (and maxQueueBytes) too.
    if (this.pending + this.pendingRequests >= this.limits.maxQueue) this.overLimit('too many unacknowledged replies (maxQueue)')
    if (this.outboxBytes >= this.limits.maxQueueBytes) this.overLimit('too many bytes of unacknowledged replies (maxQueueBytes)')
    if (this.pendingRequests >= this.limits.maxPendingRequests) {
      // The client was told the limit in welcome; one that ignores it is asked to come back later.
      throw new FrameError(
        `more than ${this.limits.maxPendingRequests} requests awaiting replies (maxPendingRequests)`,
        CloseCode.TRY_AGAIN_LATER,
      )
    }
    this.rxSeq = frame.s
    this.queueAck()
    const { id } = frame
    this.pendingRequests++
    this.events.request(frame.d, this).then(
      (value) => this.reply(id, value),
      (error: unknown) => this.reply(id, undefined, publicError(error)),
    )
  }

  /** How many of `count` items the rate limit lets through now (`owed`: see TokenBucket.take). */
  private allowance(count: number, owed: boolean): number {
    return this.bucket ? this.bucket.take(count, owed) : count
  }

  /** Closes with 1013: come back later (what was refused is not acknowledged, so it is resent). */
  private overLimit(reason: string): never {
    throw new FrameError(reason, CloseCode.TRY_AGAIN_LATER)
  }

  private reply(id: number, value: unknown, error?: ReplyErrorBody): void {
    this.pendingRequests--
    if (this.ended) return
    let payload: string | undefined
    try {
      payload = error ? undefined : encodePayload(value ?? null)
    } catch {
      error = { code: 'ERR_REPLY_ENCODING', message: 'the reply could not be encoded as JSON' }
    }
    const frame = resFrame(this.txSeq + 1, id, payload, error)
    this.enqueue({ payload: frame, size: Buffer.byteLength(frame), reply: true })
  }

  /**
   * Sequencing of client frames: index of the first new item (after those delivered or held);
   * a gap is a protocol error.
   */
  private accept(seq: number, count: number): number {
    const expected = this.rxAccepted + 1
    if (seq > expected) throw new FrameError(`sequence gap: expected ${expected}, got ${seq}`, CloseCode.PROTOCOL_ERROR)
    this.queueAck()
    this.rxAccepted = Math.max(this.rxAccepted, seq + count - 1)
    return Math.min(count, expected - seq)
  }

  private acknowledge(seq: number): void {
    this.txAcked = Math.max(this.txAcked, seq)
    const { outbox } = this
    // The outbox holds txSeq - pending + 1 … txSeq, in order.
    let count = Math.min(this.pending, seq - (this.txSeq - this.pending))
    while (count-- > 0) {
      const entry = outbox[this.head]
      // Let go now (a broadcast's payload is shared): only a compaction would drop it otherwise.
      outbox[this.head++] = RELEASED
      this.outboxBytes -= cost(entry)
      if (entry.holdersAway !== undefined) this.sharedBytes -= entry.size
      if (this.written > 0) this.written--
      entry.resolve?.()
    }
    // Compact now and then rather than shifting per ack.
    if (this.head > 1024 && this.head * 2 > outbox.length) {
      this.outbox = outbox.slice(this.head)
      this.head = 0
    }
  }

  /** Everything sent in this tick goes out together, batched. */
  private readonly queueFlush = perTick(() => this.flush())

  /**
   * Writes what the current connection has not had yet, batching messages into `msg` frames,
   * until the connection has WRITE_BUFFER_BYTES buffered (a client that does not read): then the
   * rest waits in the outbox, and writing goes on once what was written has been handed on.
   */
  private flush(): void {
    const connection = this.connection
    if (!connection || this.writeBlocked === connection) return
    const { outbox } = this
    const start = this.head + this.written
    if (start >= outbox.length) return
    // Only a connection that reports what it buffers can be waited for.
    const watch = connection.bufferedAmount !== undefined
    let full = false
    const written = watch
      ? (error?: Error) => {
          if (!error) this.onWritten(connection)
        }
      : undefined
    const write = (frame: string) => {
      connection.send(frame, written)
      if (watch && (connection.bufferedAmount?.() ?? 0) >= WRITE_BUFFER_BYTES) full = true
    }
    const batch = msgBatcher(this.limits.maxPayload, write)
    const firstSeq = this.txSeq - this.pending + 1 - this.head
    for (let i = start; i < outbox.length && !full; i++) {
      const entry = outbox[i]
      this.written++
      if (entry.reply) {
        batch.end()
        write(entry.payload)
        continue
      }
      batch.add(firstSeq + i, entry.payload, entry.size)
    }
    batch.end()
    if (full) this.writeBlocked = connection
  }

  /** A frame written by flush() was handed to the network: write on if the connection's buffer has emptied. */
  private onWritten(connection: SessionConnection): void {
    if (this.writeBlocked !== connection || (connection.bufferedAmount?.() ?? 0) >= WRITE_BUFFER_BYTES / 2) return
    this.writeBlocked = undefined
    this.flush()
  }

  /** One cumulative ack for everything received in this tick, written at its end. */
  private queueAck(): void {
    this.ackDue = true
    this.ackAtEndOfTick()
  }

  private readonly ackAtEndOfTick = perTick(() => this.writeAck())

  /**
   * Writes the due ack now: at the end of the tick, or at once before the connection is closed
   * (so that the client learns what was delivered on it before the close, not only on resume).
   */
  private writeAck(): void {
    if (!this.ackDue) return
    this.ackDue = false
    this.connection?.send(`{"t":"ack","s":${this.rxSeq}}`)
  }
}

function handledRejection(error: TetherError): Promise<void> {
  const promise = Promise.reject(error)
  promise.catch(noop)
  return promise
}

/**
 * Thrown by a request handler to answer with an error the client may see.
 * @example
 * ```ts
 * server.onRequest(async (req) => {
 *   if (!req.id) throw new RequestError('BAD_REQUEST', 'id is required')
 * })
 * ```
 */
export class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = 'RequestError'
  }
}

/** A handler's failure as the client sees it: a RequestError passes; anything else is generic, so no internals leak. */
function publicError(error: unknown): ReplyErrorBody {
  return error instanceof RequestError
    ? { code: error.code, message: error.message }
    : { code: 'ERR_INTERNAL', message: 'the request handler failed' }
}
