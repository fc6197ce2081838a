/**
 * Admission: when a session takes in what its client sends, under the rate limit (limits.ts
 * has the buckets and the option). This is the one full statement of the rule; the other
 * modules refer to it, and docs/SECURITY.md describes it for users.
 *
 * - Cost. Every frame costs at least one token of the bucket (`rate`, `burst`): a message, a
 *   request and a ping one each (a `msg` frame one per item), a frame of an unknown type, a
 *   resend and an ack that moves nothing one. The one exception: an ack that moves the client's
 *   acknowledged sequence forward is free (when decoded on arrival: an ack padded beyond
 *   {@link DECODE_AT_ONCE} bytes is charged before it is decoded, like any such frame), since such acks are bounded by what the server wrote
 *   (a client that receives much must not spend its own rate acknowledging it). A frame over {@link DECODE_AT_ONCE} bytes also costs its bytes of
 *   the decoding budget (`bytesPerSecond`, `burstBytes`), since parsing costs about what a frame
 *   weighs, while a frame of one message costs one token whatever its size.
 * - Charged before decoding. A frame is decoded only when its turn comes and its token (and its
 *   bytes) are there: a flood costs no parsing beyond the rates. Frames of at most
 *   {@link DECODE_AT_ONCE} bytes are decoded on arrival, so that acks among them are applied at
 *   once (their token is owed, and taken in their turn).
 * - Held in order. What the budgets allow is done at once; the rest of the frame, and every
 *   later frame of the connection, waits in one queue, as received (it weighs what it weighed on
 *   the wire), and is decoded and delivered in order as the buckets refill, released by one timer
 *   in steps of about {@link RELEASE_STEP} ms (so the burst in effect is at least `rate / 100`).
 *   While work waits, the tokens accruing are owed to it and not capped at the burst
 *   (TokenBucket), so it goes at `rate` however late the timer. Held work is acknowledged only
 *   once delivered.
 * - Reading goes on. The connection is read meanwhile, so the client's acks and its close are
 *   handled at once; reading stops only while {@link maxHeldBytes} of frames are held, and
 *   resumes once less than half of that is (`pause()` may still let a chunk already read through:
 *   it is held too).
 * - What may be held: the work the bucket delivers within {@link MAX_HOLD} (10 s; a frame not
 *   yet decoded counts one token), and the frames whose bytes the decoding budget provides
 *   within it. Work beyond is refused: it is never acknowledged, later work on the connection
 *   is ignored, and once the held work is delivered (at once if none is held) the connection is
 *   closed with 1013 (Try Again Later); the client resends the rest when it resumes, after
 *   backing off, so nothing is lost. So a frame carrying more than `rate × 10 s` messages
 *   beyond what the bucket holds is delivered in part, at the rate, before the close; and below
 *   a `rate` of 0.1/s, where a drained bucket's next token is more than 10 s away, work over a
 *   drained bucket is refused at once. A frame that would bring the held bytes beyond
 *   {@link HELD_BYTES_CEILING} times `maxHeldBytes` (only a connection that cannot stop reading
 *   gets there) is refused too; and once `maxHeldBytes` of frames were ignored after a refusal,
 *   reading stops until the 1013.
 * - Let go. Held work is discarded, unacknowledged, when the connection closes or is closing (the
 *   client's close frame was read: nothing more is delivered on it), when a newer connection
 *   replaces it, or when the session ends; the client resends it. A held frame that breaks the
 *   protocol closes the connection when its turn comes, after the work before it.
 * @module
 */
import { type ClientFrame, CloseCode, decodeFrame, FrameError } from '../protocol/frames.js'
import { DEFAULT_BURST_BYTES, MAX_HOLD, maxHeldBytes, type RateLimit, TokenBucket } from './limits.js'
import type { SessionConnection } from './seams.js'

/** A `req` frame. */
export type RequestFrame = Extract<ClientFrame, { t: 'req' }>

/**
 * The work a frame carries once the session has sequenced it: the items of a `msg` frame still
 * to deliver (`s` is the sequence number of `items[0]`), a request, or a ping.
 */
export type Work = { t: 'msg'; s: number; items: unknown[] } | { t: 'req'; frame: RequestFrame } | { t: 'ping' }

/**
 * What admission asks of the session: the protocol's side of each frame, in order. One host
 * serves every session (`owner` says which): a closure per function per session would cost
 * about 600 bytes a session.
 */
export interface AdmissionHost<O> {
  /** The connection frames are read from: paused, resumed, and asked whether it is open. */
  connection(owner: O): SessionConnection | undefined
  /**
   * Takes in a decoded frame (`undefined`: of an unknown type): sequences it, applies an ack, and
   * returns the work it carries, if any. Throws FrameError for a protocol violation.
   */
  take(owner: O, frame: ClientFrame | undefined): Work | undefined
  /** The client's last cumulative ack: an ack that moves it is not charged (see `receive`). */
  acked(owner: O): number
  /** Delivers the message numbered `seq`. */
  message(owner: O, seq: number, data: unknown): void
  /** Hands a request to the handler; throws FrameError beyond the limits on replies. */
  request(owner: O, frame: RequestFrame): void
  /** Answers a ping. */
  ping(owner: O): void
  /** Items from `seq` on were refused: they are no longer accepted (the client resends them). */
  refused(owner: O, seq: number): void
  /** Everything held was let go: nothing beyond what was delivered is accepted any more. */
  discarded(owner: O): void
  /** Closes the connection with the error's code: held work, in its turn, broke the protocol or a limit. */
  close(owner: O, error: FrameError): void
}

/**
 * Frames up to this many bytes are decoded as they arrive, held or not: parsing them costs about
 * what reading them does, and the acks among them (32 bytes at most from the reference client)
 * are applied at once. Bigger frames are decoded only when the rate limit lets them in.
 */
export const DECODE_AT_ONCE = 64

/** Held work is released in steps of about this many ms' worth of the rate: no timer per message. */
const RELEASE_STEP = 10

/** A frame that would bring the held bytes beyond this many times `maxHeldBytes` is refused. */
const HELD_BYTES_CEILING = 2

const REFUSAL = 'rate limit exceeded; slow down and resume'

/**
 * An entry of the held queue, in arrival order; `size` is the bytes of the frame as received.
 * A frame waits as it came (`raw`: the text; `frame`: a small frame, decoded on arrival) until it
 * is taken in; then it becomes its work (a `msg` entry keeps only the items from `next` on;
 * delivered ones are let go at once), or `owed`: the token a frame without work costs.
 */
type Held =
  | { t: 'raw'; text: string | Buffer; size: number }
  | { t: 'frame'; frame: ClientFrame | undefined; size: number }
  | { t: 'owed'; size: number }
  | { t: 'msg'; s: number; items: unknown[]; next: number; size: number }
  | { t: 'req'; frame: RequestFrame; size: number }
  | { t: 'ping'; size: number }

/** The decoding budget's limits, per `rateLimit` and `maxPayload` (a server's): made once, not once per session. */
const byteLimits = new WeakMap<RateLimit, { maxPayload: number; limit: RateLimit | undefined }>()

/** The decoding budget of a rate limit (`bytesPerSecond`, `burstBytes`) as a bucket's limit; undefined for none. */
function byteLimit(rateLimit: RateLimit, maxPayload: number): RateLimit | undefined {
  const known = byteLimits.get(rateLimit)
  if (known?.maxPayload === maxPayload) return known.limit
  const bytes = rateLimit.bytesPerSecond ?? Number.POSITIVE_INFINITY
  const limit = Number.isFinite(bytes)
    ? { rate: bytes, burst: rateLimit.burstBytes ?? Math.max(DEFAULT_BURST_BYTES, maxPayload) }
    : undefined
  byteLimits.set(rateLimit, { maxPayload, limit })
  return limit
}

/** Tokens a held entry still needs: its items, for a `msg`; one (the least a frame costs) for the rest. */
const remaining = (entry: Held): number => (entry.t === 'msg' ? entry.items.length - entry.next : 1)

/** One session's admission of client frames (the module doc has the rule). @internal */
export class Admission<O> {
  private readonly bucket: TokenBucket | undefined
  /** The decoding budget (`rateLimit.bytesPerSecond`): a frame held raw is decoded only once its bytes are there too. */
  private readonly byteBucket: TokenBucket | undefined
  /** Tokens a release waits for: about RELEASE_STEP ms of the rate (the burst does not cap it: held work is owed what accrues). */
  private readonly releaseBatch: number
  private readonly maxHeldBytes: number
  /** Held work of the current connection, in arrival order from `heldHead`. */
  private held: Held[] = []
  private heldHead = 0
  /** Messages, requests and pings held (each costs a token; a frame not yet taken in counts one). */
  private heldItems = 0
  private heldBytes = 0
  /** Of those, the bytes of frames held raw: what they will cost the byte budget when decoded. */
  private heldRawBytes = 0
  /** Changes whenever held work is discarded, so a release in progress knows it is void. */
  private epoch = 0
  private releaseTimer: ReturnType<typeof setTimeout> | undefined
  /** Reading from the connection is paused. */
  private paused = false
  /** Set when work was refused: the close reason (1013, once what is held is delivered). */
  private refusal: string | undefined
  /** Bytes of frames ignored since the refusal. */
  private refusedBytes = 0

  constructor(
    rateLimit: RateLimit | false,
    maxPayload: number,
    private readonly host: AdmissionHost<O>,
    private readonly owner: O,
  ) {
    this.maxHeldBytes = maxHeldBytes(maxPayload)
    this.bucket = rateLimit ? new TokenBucket(rateLimit) : undefined
    const bytes = rateLimit ? byteLimit(rateLimit, maxPayload) : undefined
    this.byteBucket = bytes ? new TokenBucket(bytes) : undefined
    this.releaseBatch = rateLimit ? Math.max(1, Math.ceil((rateLimit.rate * RELEASE_STEP) / 1000)) : 1
  }

  /**
   * One frame from the connection, as received: its UTF-8 JSON text and its size in bytes
   * (decoded here at once when small). Throws FrameError for protocol violations and refusals.
   */
  receiveText(text: string | Buffer, size: number): void {
    if (size > DECODE_AT_ONCE) this.receive(text, size)
    else this.receive(decodeFrame(typeof text === 'string' ? text : text.toString(), 'client'), size)
  }

  /** One frame, in arrival order, as text or decoded (`undefined`: a frame of an unknown type). */
  receive(data: string | Buffer | ClientFrame | undefined, size: number): void {
    const decoded = data === undefined || (typeof data !== 'string' && !Buffer.isBuffer(data))
    if (decoded && (data?.t === 'ack' || data?.t === 'hello')) {
      // An ack is not work (it concerns the other direction): applied at once, even while work is
      // held, so a client that acknowledges what it receives never finds the outbox full. One that
      // moves the acknowledged sequence forward costs no token: such acks are bounded by what the
      // server wrote (a client that receives much must not lose its own rate to acknowledging it).
      // One that does not (a repeat, a flood) costs a token like any frame.
      const before = this.host.acked(this.owner)
      this.host.take(this.owner, data)
      if (this.refusal === undefined && this.host.acked(this.owner) === before) this.admit({ t: 'owed', size })
      return
    }
    if (this.refusal !== undefined) {
      this.refusedBytes += size
      this.updateReading()
      return
    }
    this.admit(decoded ? { t: 'frame', frame: data, size } : { t: 'raw', text: data, size })
  }

  /**
   * Forgets held work (the connection is gone, replaced, or being closed; the session ended),
   * and reads again if reading was paused (harmless on a closed connection).
   */
  discard(): void {
    const wasPaused = this.paused
    this.epoch++
    this.held = []
    this.heldHead = 0
    this.heldItems = 0
    this.heldBytes = 0
    this.heldRawBytes = 0
    this.paused = false
    this.refusal = undefined
    this.refusedBytes = 0
    clearTimeout(this.releaseTimer)
    this.releaseTimer = undefined
    this.host.discarded(this.owner)
    if (wasPaused) this.host.connection(this.owner)?.resume?.()
  }

  /** Queues a new frame (or an ack's owed token) if it may be held, and does what the budgets allow now. */
  private admit(entry: Extract<Held, { t: 'raw' | 'frame' | 'owed' }>): void {
    // Work is waiting: the tokens accruing now are owed to it.
    const backlogged = this.heldItems > 0
    // A backlog may start here: the bytes owed to it accrue from now, not from the last frame decoded.
    if (!backlogged) this.byteBucket?.take(0)
    const room =
      this.heldBytes + entry.size > HELD_BYTES_CEILING * this.maxHeldBytes || !this.bytesWithinHold(entry, backlogged)
        ? 0
        : this.bucket
          ? Math.max(0, this.bucket.tokensWithin(MAX_HOLD, backlogged) - this.heldItems)
          : Number.POSITIVE_INFINITY
    if (room < 1) {
      // This frame was not sequenced: the client resends it after the 1013.
      this.refusal = REFUSAL
      this.refusedBytes += entry.size
    } else {
      this.held.push(entry)
      this.heldItems += 1
      this.heldBytes += entry.size
      if (entry.t === 'raw') this.heldRawBytes += entry.size
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
      if (this.refusal !== undefined) throw new FrameError(this.refusal, CloseCode.TRY_AGAIN_LATER)
      return
    }
    this.updateReading()
    this.armRelease()
  }

  /**
   * Does held work from the front as far as the budgets allow (`owed`: the work has waited since
   * the last take, see TokenBucket). Throws what the host throws.
   */
  private drain(owed: boolean): void {
    const epoch = this.epoch
    const { held, host } = this
    if (this.heldHead === held.length) return
    // Taken in before the tokens are taken, so that all of a frame's items count.
    if (this.bucket && this.bucket.tokensWithin(0, owed) < 1) return
    if (!this.takeIn(0, owed)) return
    // The tokens for this round, taken at once: what is left over is capped at the burst only
    // when every held item got one (the backlog is over). None for work behind a frame the byte
    // budget cannot decode yet: they would be lost.
    let budget = this.allowance(Math.min(this.heldItems, this.decodable(owed)), owed)
    while (budget > 0 && this.heldHead < held.length) {
      const entry = held[this.heldHead]
      if (entry.t === 'raw' || entry.t === 'frame') {
        // decodable() counted only the frames whose bytes are there: this one's are.
        if (!this.takeIn(budget, owed)) break
        continue
      }
      if (entry.t === 'msg') {
        const { items } = entry
        const end = Math.min(items.length, entry.next + budget)
        budget -= end - entry.next
        while (entry.next < end) {
          const i = entry.next++
          const data = items[i]
          items[i] = undefined // delivered: not kept for the rest of the hold
          this.heldItems--
          host.message(this.owner, entry.s + i, data)
          if (this.epoch !== epoch) return // a handler ended the session: the rest is void
        }
        if (entry.next < items.length) return
      } else {
        budget--
        this.heldItems--
        if (entry.t === 'ping') host.ping(this.owner)
        else if (entry.t === 'req') {
          host.request(this.owner, entry.frame)
          if (this.epoch !== epoch) return // the handler ended the session
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
   * Takes in the frame at the front, its turn come and a token there for it: decodes it (a raw
   * one only once the byte budget has its bytes, which it takes: false when they are not there
   * yet, and nothing changes), has the host sequence it, and puts in its place the work it
   * carries or the token it owes. A `msg` frame carrying more than the bucket delivers within
   * MAX_HOLD (`inHand`: tokens already taken for this round) is cut there, and work is refused
   * from there on: what was held after it is let go.
   */
  private takeIn(inHand: number, owed: boolean): boolean {
    const { held } = this
    const entry = held[this.heldHead]
    if (entry.t !== 'raw' && entry.t !== 'frame') return true
    if (entry.t === 'raw') {
      if (this.byteBucket) {
        if (this.byteBucket.tokensWithin(0, owed) < entry.size) return false
        this.byteBucket.take(entry.size, owed)
      }
      this.heldRawBytes -= entry.size
    }
    const frame =
      entry.t === 'raw' ? decodeFrame(typeof entry.text === 'string' ? entry.text : entry.text.toString(), 'client') : entry.frame
    const size = entry.size
    const work = this.host.take(this.owner, frame)
    if (!work) {
      held[this.heldHead] = { t: 'owed', size }
      return true
    }
    if (work.t !== 'msg') {
      held[this.heldHead] = work.t === 'req' ? { t: 'req', frame: work.frame, size } : { t: 'ping', size }
      return true
    }
    const { s, items } = work
    const taken: Extract<Held, { t: 'msg' }> = { t: 'msg', s, items, next: 0, size }
    held[this.heldHead] = taken
    this.heldItems += items.length - 1
    if (!this.bucket) return true
    const room = inHand + this.bucket.tokensWithin(MAX_HOLD, owed)
    if (items.length <= room) return true
    this.refusal = REFUSAL
    this.heldItems -= items.length - room
    taken.items = items.slice(0, room)
    this.host.refused(this.owner, s + room)
    for (let i = this.heldHead + 1; i < held.length; i++) {
      this.heldItems -= remaining(held[i])
      this.heldBytes -= held[i].size
      if (held[i].t === 'raw') this.heldRawBytes -= held[i].size
    }
    held.length = this.heldHead + 1
    return true
  }

  /**
   * Whether the byte budget will have decoded `entry` within MAX_HOLD, after the frames held raw
   * before it (a frame decoded on arrival costs none of it).
   */
  private bytesWithinHold(entry: Held, backlogged: boolean): boolean {
    if (entry.t !== 'raw' || !this.byteBucket) return true
    return this.heldRawBytes + entry.size <= this.byteBucket.tokensWithin(MAX_HOLD, backlogged)
  }

  /**
   * Items held before the first raw frame whose bytes the byte budget does not have now (each
   * raw frame counts one, as in `heldItems`); no more than the tokens there are, which is all a
   * round can take.
   */
  private decodable(owed: boolean): number {
    if (!this.byteBucket || this.heldRawBytes === 0 || !this.bucket) return this.heldItems
    const tokens = this.bucket.tokensWithin(0, owed)
    let bytes = this.byteBucket.tokensWithin(0, owed)
    let items = 0
    const { held } = this
    for (let i = this.heldHead; i < held.length && items < tokens; i++) {
      const entry = held[i]
      if (entry.t === 'raw') {
        if (entry.size > bytes) break
        bytes -= entry.size
      }
      items += remaining(entry)
    }
    return items
  }

  /** How many of `count` items the rate limit lets through now (`owed`: see TokenBucket.take). */
  private allowance(count: number, owed: boolean): number {
    return this.bucket ? this.bucket.take(count, owed) : count
  }

  /** Pauses or resumes reading, as the rule says: with hysteresis, so that it does not flap at every frame released. */
  private updateReading(): void {
    const limit = this.maxHeldBytes
    if (!this.paused && (this.heldBytes >= limit || this.refusedBytes >= limit)) {
      this.paused = true
      this.host.connection(this.owner)?.pause?.()
    } else if (this.paused && this.heldBytes < limit / 2 && this.refusedBytes < limit) {
      this.paused = false
      this.host.connection(this.owner)?.resume?.()
    }
  }

  /** Arms the one release timer, for when the next batch of tokens (and the front frame's bytes) will be there. */
  private armRelease(): void {
    if (this.releaseTimer || !this.bucket) return
    const front = this.held[this.heldHead]
    const bytesWait = front?.t === 'raw' && this.byteBucket ? this.byteBucket.msUntil(front.size, true) : 0
    const wait = Math.max(this.bucket.msUntil(Math.min(this.heldItems, this.releaseBatch), true), bytesWait)
    this.releaseTimer = setTimeout(() => this.release(), Math.ceil(wait))
  }

  /** The release timer: more held work is done, unless the connection is closing (then none is). */
  private release(): void {
    this.releaseTimer = undefined
    if (this.host.connection(this.owner)?.isOpen?.() === false) {
      this.discard()
      return
    }
    const epoch = this.epoch
    try {
      this.drain(true)
      if (this.heldItems === 0 && this.refusal !== undefined) throw new FrameError(this.refusal, CloseCode.TRY_AGAIN_LATER)
    } catch (error) {
      if (!(error instanceof FrameError)) throw error
      this.host.close(this.owner, error)
    } finally {
      if (this.epoch === epoch) {
        this.updateReading()
        if (this.heldItems > 0) this.armRelease()
      }
    }
  }
}
