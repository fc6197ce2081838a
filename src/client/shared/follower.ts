/**
 * The wire protocol of a socket with the `shared` option: it speaks to the tab holding the
 * connection (holder.ts) over the group's BroadcastChannel (link.ts carries the messages), not to
 * the server. It keeps the socket's API true for its tab: `send()` resolves when the server
 * acknowledged this tab's message, `request()` gets this tab's reply, and every server message
 * reaches the `message` listeners once, even across a change of holder.
 *
 * A message is numbered in its tab (`n`, kept for its life) and written once per holder. When
 * the holder says it `accepted` a number, the message is in the shared durable outbox: a later
 * holder delivers it, so it is never written again; the next holder's `welcome` says which of
 * those are finished. Server messages come with their sequence number in the session, and a
 * tab drops any number it delivered before (a new holder resends what the last one had not
 * acknowledged).
 * @module
 */
import { DEV } from '../../dev.js'
import { DeliveryError, ReplyError, type ReplyErrorCode, type TetherError, TimeoutError } from '../../errors.js'
import { perTick } from '../../protocol/frames.js'
import type { Entry, Payload } from '../outbox.js'
import { encodeMessage, ServerItem, type SessionInfo } from '../wire/tether.js'
import type { Handover, MissedInfo, Protocol, ProtocolHost, WireData } from '../wire/types.js'
import type { Failure, HolderMessage, Outgoing } from './channel.js'

/** What a follower says in its `hello`: what the previous holder left unfinished, and how far it delivered. */
export interface HelloState {
  readonly pending: number[]
  readonly accepted: number[]
  readonly sid: string | undefined
  readonly last: number
}

/** A failure from the holder as this tab's error. */
function errorOf({ name, code, message }: Failure, data: unknown): TetherError {
  if (name === 'ReplyError') return new ReplyError(message, code as ReplyErrorCode, { data })
  if (name === 'TimeoutError') return new TimeoutError(message, { data })
  return new DeliveryError(message, { data })
}

/** A shared socket's protocol: this tab's side of the conversation with the holder. */
export class FollowerProtocol<In, Out> implements Protocol<Out> {
  readonly subprotocol = undefined
  readonly requests = true
  /** The last number given to a message of this tab. */
  private lastN = 0
  /** Messages written (to some holder) and not finished, by number. */
  private readonly written = new Map<number, Entry>()
  /** Numbers a holder accepted (durable in the shared outbox), not finished yet. */
  private readonly accepted = new Set<number>()
  private sid: string | undefined
  /** The last server sequence number delivered to this tab's listeners. */
  private last = 0
  private phase: 'detached' | 'handshake' | 'open' = 'detached'

  constructor(
    private readonly host: ProtocolHost<In>,
    private readonly onSession: (info: SessionInfo) => void,
  ) {}

  /** The session id the holder's connection has, once welcomed. */
  get sessionId(): string | undefined {
    return this.sid
  }

  queue(data: Out, handover: Handover): Promise<unknown> {
    const payload = this.encode(data)
    const promise = this.host.outbox.add(undefined, payload, handover.request ? { ...handover, requestId: 0 } : handover)
    if (handover.aheadOfQueue || handover.open) this.flush()
    return promise
  }

  encode(data: Out): Payload {
    return encodeMessage(data)
  }

  /** What the `hello` to a holder says of this tab. */
  hello(): HelloState {
    return { pending: [...this.written.keys()], accepted: [...this.accepted], sid: this.sid, last: this.last }
  }

  attach(): void {
    this.phase = 'handshake'
  }

  receive(data: WireData): void {
    const message = data as unknown as HolderMessage
    switch (message.t) {
      case 'welcome': {
        if (message.sid !== this.sid) {
          // Another session (this tab's first welcome, or the server started a new one): what it
          // sent before this tab joined is not this tab's to see.
          this.newSession(message.sid)
          this.last = message.last
        }
        // A request among them: its reply is gone with the holder that had it (one still known comes as `res`).
        for (const n of message.done) this.finish(n, undefined)
        this.phase = 'open'
        this.host.ready()
        return
      }
      case 'accepted':
        for (const n of message.n) if (this.written.has(n)) this.accepted.add(n)
        return
      case 'ack':
        for (const n of message.n) {
          const entry = this.written.get(n)
          if (entry && entry.requestId === undefined) this.finish(n, undefined)
        }
        return
      case 'res': {
        const entry = this.written.get(message.n)
        if (entry) this.finish(message.n, message.err ? errorOf(message.err, entry.data) : { value: message.ok })
        return
      }
      case 'msg':
      case 'miss': {
        if (message.sid !== this.sid) {
          this.newSession(message.sid)
          this.last = 0
        }
        if (message.s <= this.last) return // delivered before (resent by a new holder, or caught up)
        this.last = message.s
        const info = new ServerItem(message.sid, message.s, message.re, message.tp)
        if (message.t === 'msg') this.host.deliver(message.d as In, info)
        else this.host.missed(Object.assign(info, { count: message.count }) as ServerItem & MissedInfo)
        return
      }
    }
  }

  /** The holder's connection is in another server session: said as the `session` event, as a socket of its own would. */
  private newSession(sid: string): void {
    const previous = this.sid
    this.sid = sid
    this.onSession({ id: sid, previous })
  }

  /**
   * A message of this tab is finished: acknowledged (`undefined`), answered (`{ value }`) or
   * failed. A request whose holder went away after its reply came is lost with that holder.
   */
  private finish(n: number, outcome: { value: unknown } | TetherError | undefined): void {
    const entry = this.written.get(n)
    this.written.delete(n)
    this.accepted.delete(n)
    if (!entry) return
    const { outbox } = this.host
    if (outcome === undefined && entry.requestId !== undefined) {
      outcome = new DeliveryError(
        DEV
          ? 'the tab holding the shared connection went away after the reply to this request came, before it passed it on: the reply is lost (the server did handle the request)'
          : '',
        { data: entry.data },
      )
    }
    outbox.remove(entry)
    if (outcome === undefined || !(outcome instanceof Error)) outbox.succeed(entry, outcome?.value)
    else outbox.fail(entry, outcome)
  }

  flush(): void {
    if (this.phase === 'open') this.flushSoon()
  }

  /** What this tab sends in one tick goes to the holder in one message. */
  private readonly flushSoon = perTick(() => this.write())

  private write(): void {
    if (this.phase !== 'open') return
    const { outbox } = this.host
    const batch: Outgoing[] = []
    for (let entry = outbox.cursor; entry; entry = outbox.cursor) {
      if (entry.seq === 0) {
        entry.seq = ++this.lastN
        this.written.set(entry.seq, entry)
      }
      outbox.markSent(entry)
      // Accepted by a holder: the shared outbox has it, and the holder that continues it delivers it.
      if (!this.accepted.has(entry.seq)) batch.push([entry.seq, entry.payload as string, entry.requestId === undefined ? 0 : 1])
    }
    if (batch.length > 0) this.host.write({ t: 'send', m: batch } as unknown as Payload)
  }

  detach(): void {
    this.phase = 'detached'
  }

  failAwaiting(): void {
    this.written.clear()
    this.accepted.clear()
  }
}
