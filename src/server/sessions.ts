/**
 * The server half of tether.v1, independent of any WebSocket library: sessions that outlive
 * connections, their sequence numbers and acks, and the bounded per-session outbox.
 * ws.ts feeds it decoded frames from real connections.
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
import { type RateLimit, TokenBucket } from './limits.js'

/** One connection as the session sees it. */
export interface SessionConnection {
  send(frame: string): void
  close(code: number, reason: string): void
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

const noop = () => {}

/**
 * A client's session: stable across its reconnects until it stays disconnected longer than
 * `sessionTtl`. Delivery to the server's handlers is exactly once and in order; `send()`
 * resolves when the client has acknowledged.
 */
export class Session {
  /** 128 random bits, base64url: unguessable, and the only key to resume the session. */
  readonly id = randomBytes(16).toString('base64url')
  /** Last client sequence number delivered to the handlers. */
  private rxSeq = 0
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
   * @param principal - who authenticated this session (`undefined` when no `authenticate` hook); only the same principal may resume it
   */
  constructor(
    readonly principal: string | undefined,
    private readonly limits: SessionLimits,
    private readonly events: SessionEvents,
  ) {
    this.bucket = limits.rateLimit ? new TokenBucket(limits.rateLimit) : undefined
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
    if (!this.ended)
      this.expiry = setTimeout(() => this.end(new DeliveryError('session expired before the client acknowledged')), this.limits.sessionTtl)
  }

  /** Handles one frame from the attached connection (after the hello). Throws FrameError for protocol violations. @internal */
  receive(frame: ClientFrame): void {
    switch (frame.t) {
      case 'msg': {
        const first = this.accept(frame.s, frame.d.length)
        // Over the rate limit, the messages within it are delivered and the rest refused (1013):
        // each resume makes progress, however big the client's frames.
        const end = first + this.allowance(frame.d.length - first)
        for (let i = first; i < end; i++) {
          this.rxSeq = frame.s + i
          this.events.message(frame.d[i], this)
        }
        if (end < frame.d.length) this.overLimit('rate limit exceeded; slow down and resume')
        return
      }
      case 'req': {
        if (this.accept(frame.s, 1) > 0) return
        if (this.allowance(1) < 1) this.overLimit('rate limit exceeded; slow down and resume')
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
        const { id } = frame
        this.pendingRequests++
        this.events.request(frame.d, this).then(
          (value) => this.reply(id, value),
          (error: unknown) => this.reply(id, undefined, publicError(error)),
        )
        return
      }
      case 'ack':
        if (frame.s > this.txSeq)
          throw new FrameError(`ack ${frame.s} for a message never sent (last sent ${this.txSeq})`, CloseCode.PROTOCOL_ERROR)
        this.acknowledge(frame.s)
        return
      case 'ping':
        if (this.allowance(1) < 1) this.overLimit('rate limit exceeded; slow down and resume')
        this.connection?.send('{"t":"pong"}')
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
    for (let i = this.head; i < this.outbox.length; i++) this.outbox[i].reject?.(error)
    this.outbox = []
    this.head = 0
    this.connection?.close(1000, 'session ended')
    this.connection = undefined
    this.events.expire(this)
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

  /** Sequencing of client frames: index of the first new item; a gap is a protocol error. */
  private accept(seq: number, count: number): number {
    if (seq > this.rxSeq + 1) throw new FrameError(`sequence gap: expected ${this.rxSeq + 1}, got ${seq}`, CloseCode.PROTOCOL_ERROR)
    this.queueAck()
    return Math.min(count, this.rxSeq + 1 - seq)
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
