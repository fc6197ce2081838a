/**
 * The server half of tether.v1, independent of any WebSocket library: sessions that outlive
 * connections, their sequence numbers and acks, the bounded per-session outbox, and the rate
 * limit's backpressure (limits.ts has the rule). ws.ts feeds it decoded frames from real
 * connections.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { ClosedError, DeliveryError, QueueFullError, TetherError } from '../errors.js'
import {
  type ClientFrame,
  CloseCode,
  encodeFrame,
  encodePayload,
  FrameError,
  msgBatcher,
  perTick,
  type ReplyError,
  resFrame,
} from '../protocol/frames.js'
import { MAX_HOLD, maxHeldBytes, type RateLimit, TokenBucket } from './limits.js'

/** One connection as the session sees it. */
export interface SessionConnection {
  send(frame: string): void
  close(code: number, reason: string): void
  /** Stops reading from the connection (backpressure). Frames already read may still arrive. */
  pause?(): void
  /** Reads again after `pause()`. */
  resume?(): void
}

/** What sessions report to the server that owns them. */
export interface SessionEvents {
  message(data: unknown, session: Session): void
  request(data: unknown, session: Session): Promise<unknown>
  expire(session: Session): void
}

/** Limits of one session. */
export interface SessionLimits {
  /** Most messages (sent, not yet acknowledged by the client) held per session. */
  maxQueue: number
  /** Largest frame written to the client, in bytes. */
  maxPayload: number
  /** How long a disconnected session is kept for resume, in ms. */
  sessionTtl: number
  /** Incoming messages and requests per second (sustained and burst), or false for no limit. */
  rateLimit: RateLimit | false
  /** Most requests awaiting the handler's reply at once. */
  maxPendingRequests: number
}

interface Outgoing {
  seq: number
  /** A `msg` payload (JSON), or a complete `res` frame. */
  payload: string
  /** UTF-8 bytes of `payload`. */
  size: number
  reply: boolean
  resolve?: () => void
  reject?: (error: TetherError) => void
}

/** Client frames that are work for the server, and cost a token of the rate limit each item. */
type Work = Extract<ClientFrame, { t: 'msg' | 'req' | 'ping' }>

/** A frame (or the rest of one) held over the rate limit. */
interface Held {
  frame: Work
  /** What is still to deliver, from `next` to `end` (indexes into `frame.d`; 0 and 1 for a request or ping). */
  next: number
  end: number
  /** Bytes of the frame as received. */
  size: number
}

/** Held work is released in steps of about this many ms' worth of the rate: no timer per message. */
const RELEASE_STEP = 10

const noop = () => {}

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
  private txSeq = 0
  /** Unacknowledged outgoing messages from `head`; `written` of them went on the current connection. */
  private outbox: Outgoing[] = []
  private head = 0
  private written = 0
  private connection: SessionConnection | undefined
  private expiry: ReturnType<typeof setTimeout> | undefined
  private ended = false
  private readonly bucket: TokenBucket | undefined
  /** Requests handed to the handler and not yet answered. */
  private pendingRequests = 0
  /**
   * Work of the current connection over the rate limit, in arrival order from `heldHead`; reading
   * from the connection is paused while there is any (limits.ts has the rule).
   */
  private held: Held[] = []
  private heldHead = 0
  /** Messages, requests and pings held (each costs a token). */
  private heldItems = 0
  private heldBytes = 0
  /** Changes whenever held work is discarded, so a release in progress knows it is void. */
  private holdEpoch = 0
  private releaseTimer: ReturnType<typeof setTimeout> | undefined
  private paused = false
  /**
   * Set when work beyond what may be held arrived: the close reason. Later work on the connection
   * is ignored (never acknowledged), and it is closed with 1013 once what is held is delivered.
   */
  private refusing: string | undefined
  /** Tokens a release waits for: about RELEASE_STEP ms of the rate, at most the burst. */
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
    this.releaseBatch = rateLimit
      ? Math.max(1, Math.min(Math.floor(rateLimit.burst), Math.ceil((rateLimit.rate * RELEASE_STEP) / 1000)))
      : 1
  }

  /** Whether a connection is attached now. */
  get connected(): boolean {
    return this.connection !== undefined
  }

  /** Messages sent to the client and not yet acknowledged. */
  get pending(): number {
    return this.outbox.length - this.head
  }

  /**
   * Sends a message to the client. Resolves when the client acknowledged it; while the client
   * is away it waits (bounded by `maxQueue`) and goes out on resume.
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
      return handledRejection(
        new TetherError(`message cannot be encoded as JSON: ${(cause as Error).message}`, { cause, data }, 'TetherError', 'ERR_ENCODE'),
      )
    }
    return this.sendEncoded(payload)
  }

  /** `send()` for a payload already JSON-encoded (broadcast encodes once for all sessions). @internal */
  sendEncoded(payload: string): Promise<void> {
    if (this.ended) return handledRejection(new ClosedError('session has ended'))
    if (this.pending >= this.limits.maxQueue) {
      return handledRejection(
        new QueueFullError(
          `session ${this.id} has ${this.pending} unacknowledged messages (maxQueue); the client is not keeping up or is away`,
        ),
      )
    }
    const promise = new Promise<void>((resolve, reject) => {
      this.outbox.push({ seq: ++this.txSeq, payload, size: Buffer.byteLength(payload), reply: false, resolve, reject })
      this.queueFlush()
    })
    // An ignored failure (the session expired) must not crash the process as an unhandled rejection.
    promise.catch(noop)
    return promise
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
    this.flush()
  }

  /** The connection is gone; the session waits `sessionTtl` for the client to resume it. @internal */
  detach(connection: SessionConnection): void {
    if (this.connection !== connection) return
    this.connection = undefined
    this.written = 0
    this.discardHeld()
    if (!this.ended)
      this.expiry = setTimeout(() => this.end(new DeliveryError('session expired before the client acknowledged')), this.limits.sessionTtl)
  }

  /**
   * Handles one frame from the attached connection (after the hello); `size` is its length in
   * bytes. Throws FrameError for protocol violations and limits (the connection is then closed,
   * and whatever it had held is discarded). @internal
   */
  receive(frame: ClientFrame, size = 0): void {
    try {
      this.receiveFrame(frame, size)
    } catch (error) {
      this.discardHeld()
      throw error
    }
  }

  private receiveFrame(frame: ClientFrame, size: number): void {
    // Refusing: the client resends this work when it resumes, after the 1013 that is coming.
    if (this.refusing !== undefined && (frame.t === 'msg' || frame.t === 'req' || frame.t === 'ping')) return
    switch (frame.t) {
      case 'msg': {
        const first = this.accept(frame.s, frame.d.length)
        if (first < frame.d.length) this.admit({ frame, next: first, end: frame.d.length, size })
        return
      }
      case 'req':
        if (this.accept(frame.s, 1) === 0) this.admit({ frame, next: 0, end: 1, size })
        return
      case 'ping':
        this.admit({ frame, next: 0, end: 1, size })
        return
      case 'ack':
        // Not work (it concerns the other direction): handled at once, even while work is held.
        if (frame.s > this.txSeq)
          throw new FrameError(`ack ${frame.s} for a message never sent (last sent ${this.txSeq})`, CloseCode.PROTOCOL_ERROR)
        this.acknowledge(frame.s)
        return
      case 'hello':
        throw new FrameError('second "hello" on one connection', CloseCode.PROTOCOL_ERROR)
    }
  }

  /** Ends the session now: pending sends reject, the connection closes, the server forgets it. */
  end(error: TetherError = new ClosedError('session closed by the server')): void {
    if (this.ended) return
    this.ended = true
    clearTimeout(this.expiry)
    this.discardHeld()
    for (let i = this.head; i < this.outbox.length; i++) this.outbox[i].reject?.(error)
    this.outbox = []
    this.head = 0
    this.connection?.close(1000, 'session ended')
    this.connection = undefined
    this.events.expire(this)
  }

  /**
   * Takes new work in arrival order: what the rate limit allows now is done at once; the rest
   * waits, reading from the connection is paused, and a timer releases it as tokens come. Only
   * what the bucket can deliver within MAX_HOLD (and up to maxHeldBytes) is held: beyond that,
   * the work is refused, and the connection closed with 1013 once what is held is delivered.
   */
  private admit(entry: Held): void {
    const idle = this.heldItems === 0
    const room =
      this.heldBytes + entry.size > maxHeldBytes(this.limits.maxPayload)
        ? 0
        : this.bucket
          ? Math.max(0, this.bucket.tokensWithin(MAX_HOLD) - this.heldItems)
          : Number.POSITIVE_INFINITY
    if (entry.end - entry.next > room) {
      this.refusing = 'rate limit exceeded; slow down and resume'
      entry.end = entry.next + room
      // Nothing after what is held is accepted: the client resends it after the 1013.
      if (entry.frame.t !== 'ping') this.rxAccepted = entry.frame.s + entry.end - 1
    }
    if (entry.end > entry.next) {
      this.held.push(entry)
      this.heldItems += entry.end - entry.next
      this.heldBytes += entry.size
      // Nothing was waiting before: go as far as the bucket allows now. Otherwise the timer is armed.
      if (idle) this.drain()
    }
    if (this.heldItems === 0) {
      if (this.refusing !== undefined) this.overLimit(this.refusing)
      return
    }
    if (!this.paused) {
      this.paused = true
      this.connection?.pause?.()
    }
    this.armRelease()
  }

  /**
   * Does held work from the front as far as the rate limit allows. Throws FrameError when a
   * request is over `maxQueue` or `maxPendingRequests`.
   */
  private drain(): void {
    const epoch = this.holdEpoch
    const { held } = this
    while (this.heldHead < held.length) {
      const entry = held[this.heldHead]
      const { frame } = entry
      if (frame.t === 'msg') {
        const allowed = this.allowance(entry.end - entry.next)
        if (allowed > 0) this.queueAck()
        for (let n = 0; n < allowed; n++) {
          const i = entry.next++
          this.heldItems--
          this.rxSeq = frame.s + i
          this.events.message(frame.d[i], this)
          if (this.holdEpoch !== epoch) return // a handler ended the session: the rest is void
        }
        if (entry.next < entry.end) return
      } else {
        if (this.allowance(1) < 1) return
        this.heldItems--
        if (frame.t === 'ping') this.connection?.send('{"t":"pong"}')
        else {
          this.request(frame)
          if (this.holdEpoch !== epoch) return // the handler ended the session
        }
      }
      this.heldHead++
      this.heldBytes -= entry.size
    }
    this.held = []
    this.heldHead = 0
  }

  /** Arms the one release timer, for when the next batch of tokens will be there. */
  private armRelease(): void {
    if (this.releaseTimer || !this.bucket) return
    const wait = this.bucket.msUntil(Math.min(this.heldItems, this.releaseBatch))
    this.releaseTimer = setTimeout(this.release, Math.ceil(wait))
  }

  /**
   * The release timer: more held work is done. Once none is left, reading resumes, or the
   * connection is closed with 1013 if work was refused.
   */
  private readonly release = (): void => {
    this.releaseTimer = undefined
    const epoch = this.holdEpoch
    try {
      this.drain()
      if (this.heldItems === 0 && this.refusing !== undefined) this.overLimit(this.refusing)
    } catch (error) {
      if (!(error instanceof FrameError)) throw error
      // As if a frame had just arrived: the connection is closed, what it still held discarded.
      const connection = this.connection
      if (connection) {
        this.detach(connection)
        connection.close(error.closeCode, error.message.slice(0, 120))
      }
    } finally {
      if (this.holdEpoch === epoch) {
        if (this.heldItems > 0) this.armRelease()
        else if (this.paused) {
          this.paused = false
          this.connection?.resume?.()
        }
      }
    }
  }

  /**
   * Forgets held work (the connection is gone or being closed): it was never acknowledged, so the
   * client resends it on resume. The caller closes the connection; it is not resumed.
   */
  private discardHeld(): void {
    this.holdEpoch++
    this.held = []
    this.heldHead = 0
    this.heldItems = 0
    this.heldBytes = 0
    this.rxAccepted = this.rxSeq
    this.paused = false
    this.refusing = undefined
    clearTimeout(this.releaseTimer)
    this.releaseTimer = undefined
  }

  /** Hands a request to the handler, within the limits on replies; throws FrameError (1013) beyond them. */
  private request(frame: Extract<ClientFrame, { t: 'req' }>): void {
    // Replies wait in the outbox like messages, so they count against maxQueue too.
    if (this.pending + this.pendingRequests >= this.limits.maxQueue) this.overLimit('too many unacknowledged replies (maxQueue)')
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

  /** How many of `count` items the rate limit lets through now. */
  private allowance(count: number): number {
    return this.bucket ? this.bucket.take(count) : count
  }

  /** Closes with 1013: come back later (what was refused is not acknowledged, so it is resent). */
  private overLimit(reason: string): never {
    throw new FrameError(reason, CloseCode.TRY_AGAIN_LATER)
  }

  private reply(id: number, value: unknown, error?: ReplyError): void {
    this.pendingRequests--
    if (this.ended) return
    let payload: string | undefined
    try {
      payload = error ? undefined : encodePayload(value ?? null)
    } catch {
      error = { code: 'ERR_REPLY_ENCODING', message: 'the reply could not be encoded as JSON' }
    }
    const seq = ++this.txSeq
    const frame = resFrame(seq, id, payload, error)
    this.outbox.push({ seq, payload: frame, size: Buffer.byteLength(frame), reply: true })
    this.queueFlush()
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
    const { outbox } = this
    while (this.head < outbox.length && outbox[this.head].seq <= seq) {
      const entry = outbox[this.head++]
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

  /** Writes what the current connection has not had yet, batching messages into `msg` frames. */
  private flush(): void {
    const connection = this.connection
    if (!connection) return
    const { outbox } = this
    const batch = msgBatcher(this.limits.maxPayload, (frame) => connection.send(frame))
    for (let i = this.head + this.written; i < outbox.length; i++) {
      const entry = outbox[i]
      this.written++
      if (entry.reply) {
        batch.end()
        connection.send(entry.payload)
        continue
      }
      batch.add(entry.seq, entry.payload, entry.size)
    }
    batch.end()
  }

  /** One cumulative ack for everything received in this tick. */
  private readonly queueAck = perTick(() => this.connection?.send(`{"t":"ack","s":${this.rxSeq}}`))
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
function publicError(error: unknown): ReplyError {
  return error instanceof RequestError
    ? { code: error.code, message: error.message }
    : { code: 'ERR_INTERNAL', message: 'the request handler failed' }
}
