/**
 * The kit's side of a tether.v1 session, as PROTOCOL.md describes a client: it says hello,
 * checks the welcome, numbers what it sends, and takes in what the server sends item by item
 * (§2.4), checking each server frame against the grammar (§3.2, §3.3, §3.6, and §13.6 for the
 * topic additions a server may send) and the sequence rules as it goes. Any breach throws a Violation naming its section. What it delivered is kept
 * in order, so that a check can compare it with what echo mode (§12.2) should have produced.
 * @module
 */
import { type Frame, Peer, type Refusal, shown, Violation } from './peer.js'

/** The subprotocol the kit offers. */
export const SUBPROTOCOL = 'tether.v1'

/** A `welcome` frame, checked (§3.2). */
export interface Welcome {
  readonly sid: string
  readonly resumed: boolean
  readonly ack: number
  readonly max: number
  readonly reqs: number | undefined
  readonly reason: string | undefined
  /** The last number the server had given an item of the session (optional, §4.10). */
  readonly sent: number | undefined
  /** Whether the server takes acks riding on the client's data frames (optional, §2.9). */
  readonly pa: boolean
}

/** A server item delivered to the kit: a message (with its topic, if published to one, §13.2), a reply, or a miss (§13.4). */
export type Item =
  | { readonly kind: 'msg'; readonly seq: number; readonly data: unknown; readonly topic?: string }
  | { readonly kind: 'miss'; readonly seq: number; readonly topic: string; readonly count: number }
  | { readonly kind: 'res'; readonly seq: number; readonly id: number; readonly data?: unknown; readonly err?: { code: string } }

/** A `hello` as the kit writes it: the fields given, or the frame's exact text (§1.7 spells numbers oddly). */
export type Hello = { sid: string | null; ack: number; acked?: number; sent?: number } | string

/** Whether `value` is a topic name: a non-empty string (§13.2). */
const isTopic = (value: unknown): value is string => typeof value === 'string' && value !== ''

/** Whether `value` is an integer in [min, 2^53 − 1], as §1.7 reads numbers. */
export const isInt = (value: unknown, min = 0): value is number => Number.isSafeInteger(value) && (value as number) >= min

/** Opens a connection offering tether.v1; a refused upgrade is a Violation of §1.2. */
export async function connect(url: string, timeout: number, protocols: string[] = [SUBPROTOCOL]): Promise<Peer> {
  const peer = await Peer.open(url, protocols, timeout)
  if (isRefusal(peer)) throw new Violation(`the server refused the upgrade with HTTP ${peer.refused}`, '§1.2')
  if (peer.protocol !== SUBPROTOCOL) {
    await peer.close()
    throw new Violation(
      `offered ${protocols.join(', ')}, the server selected ${peer.protocol ? JSON.stringify(peer.protocol) : 'no subprotocol'}`,
      '§1.2',
    )
  }
  return peer
}

/** Whether `Peer.open` met a refused upgrade rather than a connection. */
export const isRefusal = (value: Peer | Refusal): value is Refusal => 'refused' in value

/** One session, over one connection at a time. */
export class KitSession {
  sid: string | undefined
  /** The last number the kit gave an item it sent. */
  txSeq = 0
  /** The last server item delivered. */
  rxSeq = 0
  /** The highest ack received from the server (welcome.ack included). */
  acked = 0
  /** The server items delivered, in order, over every connection of the session. */
  readonly items: Item[] = []
  /** Pongs received on the current connection. */
  pongs = 0
  welcome: Welcome | undefined
  private peer: Peer | undefined
  /** How far the current connection's messages were taken in. */
  private cursor = 0

  /** @param connectTo - opens a connection offering tether.v1 (see {@link connect}) */
  constructor(private readonly connectTo: () => Promise<Peer>) {}

  /** The current connection. */
  get connection(): Peer {
    if (!this.peer) throw new Error('the session has no connection: call open() first')
    return this.peer
  }

  /**
   * Opens a connection and says hello: a new session by default, or the `hello` given (as
   * fields or as text). Before the hello it sends `before` (frames of unknown types, §4.1).
   * Resolves with the checked welcome; a welcome that resumes resets nothing, one that does not
   * starts the session's numbering again (§4.6). Nothing is resent by itself: each rule sends
   * what it checks.
   */
  async open(hello: Hello = { sid: null, ack: 0 }, before: (object | string)[] = []): Promise<Welcome> {
    const peer = await this.connectOnly()
    // What the hello says the kit has is what it has: the server resends the rest (§4.2).
    if (typeof hello !== 'string' && hello.sid !== null) this.forgetAfter(hello.ack)
    for (const frame of before) peer.send(frame)
    peer.send(typeof hello === 'string' ? hello : { t: 'hello', ...hello })
    const welcome = await peer.until(() => this.firstWelcome(), 'a welcome in answer to the hello')
    if (!welcome.resumed) {
      this.txSeq = 0
      this.rxSeq = 0
      this.acked = 0
      this.items.length = 0
    } else this.acknowledged(welcome.ack, 'welcome.ack', '§4.2')
    this.sid = welcome.sid
    this.welcome = welcome
    return welcome
  }

  /** Opens a connection and says nothing yet (checks of what comes before the hello, §4.1). */
  async connectOnly(): Promise<Peer> {
    this.peer = await this.connectTo()
    this.cursor = 0
    this.pongs = 0
    return this.peer
  }

  /** Sends messages as one `msg` frame with the next numbers (or from `seq`, to resend). */
  send(items: unknown[], seq = this.txSeq + 1): void {
    this.connection.send({ t: 'msg', s: seq, d: items })
    this.txSeq = Math.max(this.txSeq, seq + items.length - 1)
  }

  /** Sends a request as the next item (or as `seq`, to resend). */
  request(id: number, data: unknown, seq = this.txSeq + 1): void {
    this.connection.send({ t: 'req', s: seq, id, d: data })
    this.txSeq = Math.max(this.txSeq, seq)
  }

  /** Acknowledges the server's items up to `seq` (what was delivered by default). */
  ack(seq = this.rxSeq): void {
    this.connection.send({ t: 'ack', s: seq })
  }

  /** The payloads of the messages delivered, in order. */
  echoes(): unknown[] {
    return this.items.flatMap((item) => (item.kind === 'msg' ? [item.data] : []))
  }

  /** The replies delivered for request `id`. */
  replies(id: number): Item[] {
    return this.items.filter((item) => item.kind === 'res' && item.id === id)
  }

  /** Takes in what arrived, then waits until `check` holds (see Peer.until). */
  until<T>(check: () => T | undefined, what: string, timeout?: number): Promise<T> {
    return this.connection.until(
      () => {
        this.takeIn()
        return check()
      },
      what,
      timeout,
    )
  }

  /** Waits until `count` messages were delivered in all. */
  untilEchoes(count: number, timeout?: number): Promise<unknown[]> {
    return this.until(
      () => (this.echoes().length >= count ? this.echoes() : undefined),
      `the echo of message ${count} (echo mode, §12.2; ${this.echoes().length} so far)`,
      timeout,
    )
  }

  /** Waits until the server acknowledged up to `seq`. */
  untilAcked(seq: number, timeout?: number): Promise<number> {
    return this.until(
      () => (this.acked >= seq ? this.acked : undefined),
      `the ack of item ${seq} (§2.5; acked ${this.acked} so far)`,
      timeout,
    )
  }

  /** Waits for a reply to request `id`. */
  untilReply(id: number, timeout?: number): Promise<Item> {
    return this.until(() => this.replies(id)[0], `the reply to request ${id} (§5.1)`, timeout)
  }

  /** Takes in every message received since the last call: the sequence rules, checked (§2, §3). */
  takeIn(): void {
    const { received } = this.connection
    while (this.cursor < received.length) {
      const message = received[this.cursor++]
      if (message.binary) throw new Violation(`the server sent a binary message: ${shown(message.text)}`, '§1.5')
      const frame = message.frame
      if (!frame) throw new Violation(`the server sent a message that is not a tether frame: ${shown(message.text)}`, '§1.5')
      this.take(frame, message.text)
    }
  }

  /** Lets `ms` pass, then takes in what arrived meanwhile (to see that nothing more comes). */
  async settle(ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms))
    this.takeIn()
  }

  private take(frame: Frame, text: string): void {
    const bad = (field: string, section = '§3.3') => new Violation(`"${frame.t}" frame with an invalid "${field}": ${shown(text)}`, section)
    switch (frame.t) {
      case 'welcome':
        throw new Violation(`a second welcome on one connection: ${shown(text)}`, '§4.8')
      case 'ack': {
        if (!isInt(frame.s)) throw bad('s')
        this.acknowledged(frame.s, 'ack')
        return
      }
      case 'pong':
        this.pongs++
        return
      case 'msg': {
        if (!isInt(frame.s, 1)) throw bad('s')
        this.noRidingAck(frame, text)
        if (!Array.isArray(frame.d) || frame.d.length === 0) throw bad('d')
        const { tp } = frame
        if (tp !== undefined && !isTopic(tp)) throw bad('tp', '§13.6')
        const items = frame.d
        this.sequence(frame.s, items.length, (seq, i) =>
          this.items.push(tp === undefined ? { kind: 'msg', seq, data: items[i] } : { kind: 'msg', seq, data: items[i], topic: tp }),
        )
        return
      }
      case 'miss': {
        // Echo mode publishes nothing, but a server may have topics of its own: a miss must still be well-formed and in sequence.
        if (!isInt(frame.s, 1)) throw bad('s', '§13.6')
        if (!isTopic(frame.tp)) throw bad('tp', '§13.6')
        if (!isInt(frame.n, 1)) throw bad('n', '§13.6')
        const topic = frame.tp
        const count = frame.n
        this.sequence(frame.s, 1, (seq) => this.items.push({ kind: 'miss', seq, topic, count }))
        return
      }
      case 'res': {
        if (!isInt(frame.s, 1)) throw bad('s')
        this.noRidingAck(frame, text)
        if (!isInt(frame.id)) throw bad('id')
        const err = frame.err as { code?: unknown; message?: unknown } | undefined
        if (
          err !== undefined &&
          (typeof err !== 'object' || err === null || typeof err.code !== 'string' || typeof err.message !== 'string')
        ) {
          throw bad('err')
        }
        if ('d' in frame === (err !== undefined)) {
          throw new Violation(`a res frame must carry exactly one of "d" and "err": ${shown(text)}`, '§3.6')
        }
        const id = frame.id
        this.sequence(frame.s, 1, (seq) =>
          this.items.push(err ? { kind: 'res', seq, id, err: { code: err.code as string } } : { kind: 'res', seq, id, data: frame.d }),
        )
        return
      }
      default:
        return // unknown types, and the client's own, are ignored (§3.4)
    }
  }

  /** The kit's hello never says `pa`: an ack riding on a server frame is one it was not to be sent (§2.9). */
  private noRidingAck(frame: Frame, text: string): void {
    if (frame.a !== undefined) {
      throw new Violation(`an ack riding on a "${frame.t}" frame, to a client whose hello did not say pa: ${shown(text)}`, '§2.9')
    }
  }

  /** §2.4 from the receiving side: duplicates dropped, the next delivered, a gap refused. */
  private sequence(first: number, count: number, deliver: (seq: number, index: number) => void): void {
    if (first > this.rxSeq + 1) {
      throw new Violation(`the server skipped sequence numbers: item ${first} came after ${this.rxSeq}`, '§2.3')
    }
    for (let i = this.rxSeq + 1 - first; i < count; i++) {
      this.rxSeq = first + i
      deliver(first + i, i)
    }
  }

  /** An ack from the server (§2.5): it covers only what was delivered, so never beyond what the kit sent. */
  private acknowledged(seq: number, what: string, section = '§2.5'): void {
    if (seq > this.txSeq) throw new Violation(`the server's ${what} ${seq} acknowledges more than the kit sent (${this.txSeq})`, section)
    this.acked = Math.max(this.acked, seq)
  }

  /** The kit keeps only the server items up to `seq`, as a client whose hello says `ack: seq` (a test of resending). */
  private forgetAfter(seq: number): void {
    if (seq >= this.rxSeq) return
    this.rxSeq = seq
    const kept = this.items.filter((item) => item.seq <= seq)
    this.items.length = 0
    this.items.push(...kept)
  }

  /** The welcome, once it came: it must be the first frame of a known type (§4.5), and valid (§3.2). */
  private firstWelcome(): Welcome | undefined {
    const { received } = this.connection
    while (this.cursor < received.length) {
      const message = received[this.cursor++]
      const frame = message.frame
      if (message.binary || !frame) throw new Violation(`before its welcome, the server sent ${shown(message.text)}`, '§1.5')
      if (frame.t === 'welcome') return checkWelcome(frame, message.text)
      if (isFrameType(frame.t)) throw new Violation(`the server's first frame is not a welcome: ${shown(message.text)}`, '§4.5')
    }
    return undefined
  }
}

/** The nine frame types of tether.v1 (§3.1, §3.2). */
export const isFrameType = (t: string): boolean => ['hello', 'welcome', 'msg', 'miss', 'req', 'res', 'ack', 'ping', 'pong'].includes(t)

/** Checks every field of a welcome (§3.2, §3.5, §3.7, §3.8). */
export function checkWelcome(frame: Frame, text: string): Welcome {
  const bad = (field: string, rule = '§3.2') => new Violation(`welcome with an invalid "${field}": ${shown(text)}`, rule)
  if (typeof frame.sid !== 'string' || frame.sid === '') throw bad('sid')
  if (typeof frame.resumed !== 'boolean') throw bad('resumed')
  if (!isInt(frame.ack)) throw bad('ack')
  if (!isInt(frame.max, 1)) throw bad('max', '§3.7')
  if (frame.reqs !== undefined && !isInt(frame.reqs, 1)) throw bad('reqs', '§3.8')
  if (frame.reason !== undefined && typeof frame.reason !== 'string') throw bad('reason', '§3.5')
  if (frame.sent !== undefined && !isInt(frame.sent)) throw bad('sent', '§3.5')
  if (frame.pa !== undefined && typeof frame.pa !== 'boolean') throw bad('pa', '§3.5')
  return {
    sid: frame.sid,
    resumed: frame.resumed,
    ack: frame.ack,
    max: frame.max,
    reqs: frame.reqs as number | undefined,
    reason: frame.reason as string | undefined,
    sent: frame.sent as number | undefined,
    pa: frame.pa === true,
  }
}
