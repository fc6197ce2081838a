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

/** Where a follower's messages go, and where it keeps how far it delivered (tab.ts). */
export interface FollowerSide {
  /** Posts this tab's messages to the holder; false when no holder is known, or the page's channel is closed. */
  send(messages: Outgoing[]): boolean
  /** Whether `send` can post now. */
  readonly reachable: boolean
  /** How far this tab delivered, kept for this tab's next page (a reload). */
  remember(sid: string, last: number): void
}

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

  /**
   * @param recalled - how far this tab's previous page delivered (after a reload), if known
   */
  constructor(
    private readonly host: ProtocolHost<In>,
    private readonly onSession: (info: SessionInfo) => void,
    private readonly side: FollowerSide,
    recalled?: { sid: string; last: number },
  ) {
    this.sid = recalled?.sid
    this.last = recalled?.last ?? 0
  }

  /** The session id the holder's connection has, once welcomed. */
  get sessionId(): string | undefined {
    return this.sid
  }

  queue(data: Out, handover: Handover): Promise<unknown> {
    const payload = this.encode(data)
    const promise = this.host.outbox.add(undefined, payload, handover.request ? { ...handover, requestId: 0 } : handover)
    // To the holder whatever the connection's state: the shared outbox keeps it from then on.
    this.flushSoon()
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
    // The link's welcome says the rest (receive).
  }

  /** The link's welcome (the other holder messages come through `heard`). */
  receive(data: WireData): void {
    const message = data as unknown as HolderMessage
    if (message.t !== 'welcome') return
    if (message.sid !== this.sid) {
      // Another session (this tab's first welcome, or the server started a new one): what it
      // sent before this tab joined is not this tab's to see.
      this.newSession(message.sid)
      this.last = message.last
      this.side.remember(message.sid, message.last)
    }
    // A request among them: its reply is gone with the holder that had it (one still known comes as `res`).
    for (const n of message.done) this.finish(n, undefined)
    // What this tab wrote before the welcome may have gone to a holder gone since: to this one, what
    // no holder accepted goes again (it drops what it has).
    this.host.outbox.rewind()
    this.host.ready()
  }

  /** What a holder said about this tab's messages, or a server message, heard on the group's channel. */
  heard(message: HolderMessage): void {
    switch (message.t) {
      case 'holder':
        // Another holder: what no holder accepted goes to it (the last one may not have had it).
        this.host.outbox.rewind()
        this.flushSoon()
        return
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
        this.side.remember(message.sid, message.s)
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
    this.flushSoon()
  }

  /** What this tab sends in one tick goes to the holder in one message. */
  private readonly flushSoon = perTick(() => this.write())

  private write(): void {
    if (!this.side.reachable) return
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
    if (batch.length > 0) this.side.send(batch)
  }

  detach(): void {
    // The tab's messages go on to the holder over the group's channel (the socket rewinds what was written).
  }

  failAwaiting(): void {
    this.written.clear()
    this.accepted.clear()
  }
}
