/**
 * The server half of tether.v1, independent of any WebSocket library: sessions that outlive
 * connections, the client's sequence numbers and the acks for them, requests and replies.
 * What the session writes waits in its outbox (outbox.ts, where a session store would plug in);
 * what the client sends is taken in under the rate limit by admission.ts, which hands the work
 * back here in order. ws.ts feeds the session the frames of real connections as received.
 *
 * A client's message: `receiveText()` → admission, in its turn → `take()` and `accept()`
 * (sequenced; resends dropped, gaps are protocol errors) → the `message` event, once → one
 * cumulative `ack` per tick. A message to the client: `send()` → the outbox, numbered → `flush`
 * at the end of the tick, batched → the client's `ack` → `acknowledge()` → the promise resolves.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { ClosedError, DeliveryError, EncodeError, type QueueFullError, type TetherError } from '../errors.js'
import {
  afterTaskEach,
  type ClientFrame,
  CloseCode,
  encodeFrame,
  encodePayload,
  FrameError,
  perTickEach,
  type ReplyErrorBody,
  type ResumeRefusal,
  resTail,
} from '../protocol/frames.js'
import { Admission, type AdmissionHost, type RequestFrame, type Work } from './admission.js'
import { fromStored, Journal, type JournalHost } from './journal.js'
import type { AckProgress } from './liveness.js'
import { SENT_ENTRY_BYTES, SHARED_ENTRY_BYTES } from './memory.js'
import { type Outgoing, SessionOutbox, type SharedMessage } from './outbox.js'
import type { ExpireReason, MessageInfo, SessionConnection, SessionEvents, SessionLimits } from './seams.js'
import { type ClaimedSession, isAfter, type StoreLink } from './store.js'
import { checkTopic, Subscriptions, type TopicLog } from './topics.js'

/** What the session needs and reports (seams.ts). */
export type { ExpireReason, MessageInfo, SessionConnection, SessionEvents, SessionLimits } from './seams.js'

/**
 * A session held in a shared store (store.ts): the store's link, and what the claim found
 * (none for a new session).
 */
export interface SharedSession {
  readonly link: StoreLink
  readonly id: string
  readonly claimed?: ClaimedSession
  /** The client's hello: the last server item it received, and the last of its own it wrote. */
  readonly ack: number
  readonly sent: number
  /** For a new session: the broadcast log as far as this node has taken it in (a claimed one says its own). */
  readonly broadcast: string
  /** For a claimed session: this node's copies of the logs of the topics it has places in (`claimed.topics`). */
  readonly topics?: ReadonlyMap<string, TopicLog>
}

/** How a connection attaches: the client's ack from its hello, and the welcome's `resumed` and `reason`. */
export interface Attachment {
  readonly ack: number
  readonly resumed: boolean
  readonly reason?: ResumeRefusal
  /** The hello's `pa`: the client takes acks riding on data frames (PROTOCOL.md §2.9). */
  readonly pa?: boolean
}

/** `info` of a `message` or request: where the item stands in the session's sequence. */
class ItemInfo implements MessageInfo {
  constructor(
    private readonly session: string,
    readonly seq: number,
    readonly redelivered: boolean,
  ) {}

  get id(): string {
    return `${this.session}:${this.seq}`
  }
}

const noop = () => {}

const PING: Work = { t: 'ping' }

/**
 * A client's session: stable across its reconnects until it stays disconnected longer than
 * `sessionTtl`. Delivery to the server's handlers is exactly once and in order; `send()`
 * resolves when the client has acknowledged.
 */
export class Session<Out = unknown> {
  /** 128 random bits, base64url: unguessable, and the only key to resume the session. */
  readonly id: string
  /** Last client sequence number delivered to the handlers (and acknowledged). */
  private rxSeq = 0
  /** Last client sequence number accepted on this connection: delivered, or held by admission. */
  private rxAccepted = 0
  /** Something was received since the last ack written: an ack is due (at the end of the tick, or before a close). */
  private ackDue = false
  /**
   * Acks ride on the data frames written to this connection (its client takes them, PROTOCOL.md
   * §2.9, and no store must record first): a due ack waits for the end of the task, so the
   * reply or message a handler sends meanwhile carries it instead of a frame of its own.
   */
  private acksRide = false
  /** What was written to the client and not yet acknowledged. */
  private readonly outbox: SessionOutbox
  /** When what the client sends is taken in (the rate limit). */
  private readonly admission: Admission<Session>
  private connection: SessionConnection | undefined
  private expiry: ReturnType<typeof setTimeout> | undefined
  private ended = false
  /** What pending sends were rejected with when the session ended. */
  private endError: TetherError | undefined
  /** Requests handed to the handler and not yet answered. */
  private pendingRequests = 0
  /** With a shared store: what this node records there before acknowledging or writing (journal.ts). */
  private readonly journal: Journal | undefined
  /** Client items up to here may have been handled before (by a node that died, or let the session go unrecorded). */
  private readonly redeliverUpTo: number = 0
  /** With a shared store: this node holds the session (false once it let it go: released, or claimed elsewhere). */
  private held = true
  /** With a shared store: the last broadcast of the service's log queued to this session. */
  private broadcastAt = '0-0'
  /**
   * Its places in the logs of its topics (topics.ts): topic messages wait there until pulled.
   * Made at its first join: a session in no topic holds none (an empty Map is 180 bytes).
   */
  private subscriptions: Subscriptions | undefined
  /** With a shared store: topics whose join the store has not answered yet (no place yet). Made when first needed. */
  private joining: Set<string> | undefined

  /**
   * Sessions are made by the server, never by hand. @internal
   * @param principal - who authenticated this session (`undefined` when no `authenticate` hook); only the same principal may resume it
   * @param shared - with a shared store: the store, and what the claim found; or only the id, for
   *   a handle of a session no node holds (its `send()` goes through the store)
   */
  constructor(
    readonly principal: string | undefined,
    private readonly limits: SessionLimits,
    private readonly events: SessionEvents,
    shared?: SharedSession | { readonly id: string },
  ) {
    this.id = shared?.id ?? randomBytes(16).toString('base64url')
    this.outbox = new SessionOutbox(limits, shared !== undefined)
    this.admission = new Admission(limits.rateLimit, limits.maxPayload, Session.admissionHost, this)
    if (!shared) return
    if (!('link' in shared)) {
      this.held = false
      return
    }
    const { claimed, ack } = shared
    this.broadcastAt = claimed?.broadcast ?? shared.broadcast
    if (claimed) {
      this.outbox.restore(ack, claimed.entries.map(fromStored))
      this.rxSeq = this.rxAccepted = claimed.rx
      // Resent items the old holder may have handled: up to what it said it handled, and when it
      // died (unclean), up to what the client had written.
      this.redeliverUpTo = Math.max(claimed.seen, claimed.unclean ? shared.sent : 0)
      // Its topics: it goes on from where the last commit left it in each.
      for (const [name, [cursor, end, current]] of Object.entries(claimed.topics)) {
        const log = shared.topics?.get(name)
        if (log) this.places().restore(log, cursor, end, current)
      }
    }
    this.journal = new Journal(shared.link, this.id, claimed?.epoch ?? 1, this.outbox, this.journalHost(), {
      rx: claimed?.rx ?? 0,
      tx: claimed ? ack + claimed.entries.length : 0,
      trimmed: ack,
      places: claimed?.topics ?? {},
    })
  }

  /** The client side of the sequence as far as this node knows it: the last client item delivered. @internal */
  get received(): number {
    return this.rxSeq
  }

  /** Sequence number of the last message to the client. @internal */
  get lastSent(): number {
    return this.outbox.last
  }

  /** With a shared store: the fencing token of this node's claim. @internal */
  get epoch(): number | undefined {
    return this.journal?.epoch
  }

  /** Whether a connection is attached now. */
  get connected(): boolean {
    return this.connection !== undefined
  }

  /** Messages sent to the client and not yet acknowledged. */
  get pending(): number {
    return this.outbox.pending
  }

  /** What the messages not yet acknowledged count against `maxQueueBytes`: UTF-8 payload bytes plus a fixed overhead each. */
  get queuedBytes(): number {
    return this.outbox.bytes
  }

  /** What the session counts against `maxDisconnectedBytes` besides its fixed overhead: `queuedBytes` without the shared payloads. @internal */
  get ownBytes(): number {
    return this.outbox.ownBytes
  }

  /**
   * How far the client acknowledged what was written to it on `connection` (the heartbeat's
   * evidence that it reads); undefined if that connection is not the attached one. @internal
   */
  ackProgress(connection: SessionConnection): AckProgress | undefined {
    return this.connection === connection ? this.outbox.progress : undefined
  }

  /**
   * Sends a message to the client. Resolves when the client acknowledged it; while the client
   * is away it waits (bounded by `maxQueue` and `maxQueueBytes`) and goes out on resume.
   * Messages of its topics published before it go first: when they do not all fit, it rejects
   * with `QueueFullError` rather than overtake them.
   * @example
   * ```ts
   * await session.send({ type: 'welcome', motd })
   * ```
   */
  send(data: Out): Promise<void> {
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
    if (!this.held) {
      // Sent by a handler whose item was not recorded when this node let the session go: the item
      // is delivered again (on whichever node resumes it), and its handler sends this again there.
      const item = this.journal?.handling
      if (item !== undefined && item > this.acknowledged) return handledRejection(unrecordedItem())
      // Let go by this node (released, or claimed elsewhere): the message goes through the store.
      const forwarded = this.events.forward?.(this, payload) ?? handledRejection(new ClosedError('session has ended'))
      forwarded.catch(noop) // as any send: an ignored failure must not end the process
      return forwarded
    }
    const size = Buffer.byteLength(payload)
    // Topic messages published before it go first: the stream keeps the order things were sent in.
    // One that finds no room stops it too: a message sent after it must not overtake it.
    const full = this.pullTopics() ?? this.outbox.refusal(size + SENT_ENTRY_BYTES, this.id)
    // Pulling them may have ended a disconnected session (the budget evicts one that holds too much).
    if (this.ended) return handledRejection(this.endError ?? new ClosedError('session has ended'))
    if (full) return handledRejection(full)
    let resolve = noop
    let reject: (error: TetherError) => void = noop
    const promise = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    const item = this.journal?.handling
    this.enqueue(item === undefined ? { payload, size, promise, resolve, reject } : { payload, size, promise, resolve, reject, item })
    return promise
  }

  /**
   * Queues a message shared with other sessions (a broadcast): no promise, and the entry is the
   * one object every session holds. Returns false, queuing nothing, when the session has ended
   * or is at `maxQueue` or `maxQueueBytes`. @internal
   */
  sendShared(message: SharedMessage, readFrom?: string): boolean {
    if (this.ended || !this.held) return false
    // From the service's log (shared store): each broadcast once, in the log's order. A session
    // whose place is before where the read began would skip what lies between: it is read for later.
    if (message.broadcast !== undefined) {
      if (readFrom !== undefined && isAfter(readFrom, this.broadcastAt)) return false
      if (!isAfter(message.broadcast, this.broadcastAt)) return false
      this.broadcastAt = message.broadcast
    }
    if (this.pullTopics() || this.ended || this.outbox.refusal(message.size + SHARED_ENTRY_BYTES, this.id)) return false
    this.enqueue(message)
    return true
  }

  /**
   * Joins a topic: from now on every message published to it reaches this session's client,
   * exactly once and in order within its stream (`info.topic` tells them apart), across
   * reconnects, until `leave()` or the end of the session. Joining twice changes nothing.
   * Authorization is the app's: join from a request handler after checking the principal.
   * @example
   * ```ts
   * server.onRequest(async (req, session) => {
   *   if (req.join && mayRead(session.principal, req.join)) session.join(`room:${req.join}`)
   * })
   * ```
   * @throws `OptionError` for a name that is not a non-empty string (at most 200 characters)
   */
  join(topic: string): void {
    checkTopic('session.join', topic)
    if (this.ended) throw new ClosedError(`session.join(${JSON.stringify(topic)}): the session has ended`)
    if (!this.held) {
      throw new ClosedError(
        `session.join(${JSON.stringify(topic)}): this node no longer holds the session (its client went away, or resumed on another node): join it from a handler of its own messages or requests`,
      )
    }
    if (this.journal) {
      this.joinShared(topic)
      return
    }
    this.events.join?.(this, topic, (log) => this.places().join(log))
  }

  /** Its places in its topics' logs, made at the first join. */
  private places(): Subscriptions {
    this.subscriptions ??= new Subscriptions()
    return this.subscriptions
  }

  /**
   * With a shared store: the store records the membership and says where the session starts
   * (the topic's next number); its place is recorded with its next commit.
   */
  private joinShared(topic: string): void {
    if (this.subscriptions?.has(topic) || this.joining?.has(topic) || !this.events.joinShared) return
    this.joining ??= new Set()
    this.joining.add(topic)
    this.events.joinShared(this, topic).then(
      ({ log, cursor }) => {
        // Left (or ended) before the store answered: the leave took it out of the topic again.
        if (!this.joining?.delete(topic) || this.ended) return
        if (!this.held) {
          // Let go by this node before the store answered: its record has no place in the topic,
          // so no node would give it the topic's messages. The membership is undone (join again
          // from a handler of its next message).
          this.events.leave?.(this, topic, 'left')
          return
        }
        this.places().join(log, cursor)
        this.journal?.schedule()
        this.pullTopics()
      },
      () => {
        // The server reported the store's failure; the session is not a member.
        if (this.joining?.delete(topic) && !this.ended) this.events.leave?.(this, topic, 'left')
      },
    )
  }

  /**
   * Leaves a topic: messages published from now on do not reach this session; those published
   * while it was a member still do, in order. Leaving a topic it is not in changes nothing.
   */
  leave(topic: string): void {
    checkTopic('session.leave', topic)
    if (this.ended) return
    if (this.joining?.delete(topic)) {
      this.events.leave?.(this, topic, 'left')
      return
    }
    if (!this.subscriptions?.has(topic)) return
    this.subscriptions.leave(topic)
    this.journal?.schedule()
    this.events.leave?.(this, topic, 'left')
  }

  /** The topics this session is a member of. */
  get topics(): string[] {
    const names = this.subscriptions?.names() ?? []
    return this.joining?.size ? [...names, ...this.joining] : names
  }

  /** With a shared store: the topics whose logs it has places in (its own, and those left with messages due). @internal */
  get topicLogs(): Set<string> {
    return this.subscriptions?.logs() ?? new Set()
  }

  /** A message was published to one of its topics while connected: pulled into the stream now. @internal */
  published(): void {
    this.pullTopics()
  }

  /**
   * Turns waiting topic messages into items of the stream (numbered as they are queued), in
   * publish order, while the outbox has room (the rest waits in the topic's log, pulled when
   * acknowledgements make room, or reported as missed once the log no longer holds them).
   * Returns why one was left waiting (the outbox is full), if one was.
   */
  private pullTopics(): QueueFullError | undefined {
    const { subscriptions } = this
    if (this.ended || !this.held || !subscriptions?.waiting) return undefined
    let full: QueueFullError | undefined
    subscriptions.pull((pulled) => {
      const entry: Outgoing = 'message' in pulled ? pulled.message : { payload: '', size: 0, topic: pulled.topic, missed: pulled.missed }
      full = this.outbox.refusal(entry.size + SHARED_ENTRY_BYTES, this.id)
      if (full) return false
      this.enqueue(entry)
      return true
    })
    return full
  }

  /** Appends to the outbox and writes it at the end of the tick; while disconnected, the budget hears of it. */
  private enqueue(entry: Outgoing): void {
    const sharedBytes = this.outbox.push(entry)
    // With a shared store, entries are written once recorded (the commit's result flushes).
    if (this.journal) this.journal.schedule()
    else Session.flushAtEndOfTick(this)
    // Disconnected: what it holds counts against the server-wide budget (which may end this session).
    if (this.outbox.parked) this.events.memory?.(this, true, sharedBytes)
  }

  /** Everything sent in this tick goes out together, batched (until the connection's buffer is full: outbox.ts). */
  private static readonly flushAtEndOfTick = perTickEach((session: Session) => session.outbox.flush(session.connection, session))

  /**
   * Whether a client whose hello says it received server items up to `ack`, and saw its own
   * acknowledged up to `acked`, knows more of this session than this server does: resuming it
   * would skip or repeat items, so it is refused (`'lost'`).
   */
  knowsLessThan(ack: number, acked: number | undefined): boolean {
    return ack > this.outbox.last || (acked ?? 0) > (this.journal ? this.journal.recordedRx : this.rxSeq)
  }

  /** Attaches a connection after a `hello`: drops what the client has, writes `welcome`, resends the rest. @internal */
  attach(connection: SessionConnection, { ack: clientAck, resumed, reason, pa }: Attachment): void {
    if (clientAck > this.outbox.last)
      throw new FrameError(`hello acknowledges ${clientAck} but only ${this.outbox.last} were sent`, CloseCode.PROTOCOL_ERROR)
    clearTimeout(this.expiry)
    this.expiry = undefined
    // Held work belonged to the old connection: never acknowledged, so the client resends it.
    this.admission.discard()
    this.connection?.close(1000, 'replaced by a newer connection of the same session')
    this.connection = connection
    this.acksRide = pa === true && !this.journal
    // Out of the budget first: what the hello acknowledges is let go by every count, the budget's too.
    this.events.memory?.(this, false, this.outbox.unpark())
    this.outbox.acknowledge(clientAck)
    connection.send(
      encodeFrame({
        t: 'welcome',
        sid: this.id,
        resumed,
        ack: this.acknowledged,
        // JSON has no Infinity: no limit is the largest integer for `max`, and no `reqs` at all (PROTOCOL.md §3.7, §3.8).
        max: Math.min(this.limits.maxPayload, Number.MAX_SAFE_INTEGER),
        ...(Number.isFinite(this.limits.maxPendingRequests) && { reqs: this.limits.maxPendingRequests }),
        ...(reason && { reason }),
        // Every number given so far, queued while away or not yet recorded included: nothing resent is above it (PROTOCOL.md §4.10).
        sent: this.outbox.last,
        // Acks may ride on the client's data frames (PROTOCOL.md §2.9).
        pa: true,
      }),
    )
    this.outbox.rewind()
    // What its topics published while it was away becomes part of the stream now, after what it has.
    this.pullTopics()
    this.outbox.flush(connection)
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
    this.admission.discard()
    this.connection = undefined
    this.outbox.rewind()
    // Presence tracking hears of the connection first: before anything the budget does (an eviction's expire).
    this.events.disconnect?.(this, code)
    if (this.ended) return // a disconnect listener ended the session
    // With a shared store the store keeps the session, and whichever node finds it due expires it.
    if (this.journal) {
      this.events.release?.(this)
      return
    }
    this.expiry = setTimeout(
      () => this.endWith(new DeliveryError('session expired before the client acknowledged'), 'ttl'),
      this.limits.sessionTtl,
    )
    this.events.memory?.(this, true, this.outbox.park())
  }

  /**
   * Handles one frame from the attached connection (after the hello), as received: its UTF-8
   * JSON text, and `size`, its length in bytes. Admission decodes it in its turn (admission.ts).
   * Throws FrameError for protocol violations and limits: the ack of what was delivered is
   * written first, whatever the connection had held is discarded, and the caller closes the
   * connection. @internal
   */
  receiveText(text: string | Buffer, size: number): void {
    this.guard(() => this.admission.receiveText(text, size))
  }

  /** `receiveText()` for a frame already decoded (`undefined`: a frame of an unknown type). @internal */
  receive(frame: ClientFrame | undefined, size: number): void {
    this.guard(() => this.admission.receive(frame, size))
  }

  private guard(handle: () => void): void {
    try {
      handle()
    } catch (error) {
      if (error instanceof FrameError) this.writeAck()
      this.admission.discard()
      throw error
    }
  }

  /** What the journal reports: recorded (acknowledge and write), or refused. */
  private journalHost(): JournalHost {
    return {
      committed: (_rx, acknowledged) => {
        this.ackDue = true
        this.writeAck()
        this.outbox.flush(this.connection)
        if (acknowledged !== undefined) this.events.acknowledged?.(this, acknowledged)
      },
      failed: (reason) => this.events.lost?.(this, reason),
      places: () => this.subscriptions?.snapshot() ?? {},
    }
  }

  /**
   * With a shared store: what this node holds of the session once its records are written: the
   * records before a release. Resolves once nothing is left to commit. @internal
   */
  drain(): Promise<void> {
    return this.journal?.drain() ?? Promise.resolve()
  }

  /**
   * With a shared store: stops recording, and resolves once the commit in flight (if any) has its
   * answer, so that what the store holds is known before the session is let go. @internal
   */
  stopRecording(): Promise<void> {
    if (!this.journal) return Promise.resolve()
    this.journal.stop()
    return this.journal.idle()
  }

  /**
   * With a shared store: this node lets the session go (released, or claimed elsewhere, or the
   * store failed): the journal stops, the connection (if any) closes with `close`, held work
   * is discarded. The send promises still waiting are handed back (by sequence number) for the
   * server to resolve when another node sees them acknowledged; `send()` from now on goes
   * through the store. @internal
   */
  letGo(close?: { code: number; reason: string; replaced?: boolean }): Array<{ seq: number; entry: Outgoing }> {
    if (!this.held) return []
    this.held = false
    this.journal?.stop()
    clearTimeout(this.expiry)
    this.admission.discard()
    const connection = this.connection
    this.connection = undefined
    if (connection && close) {
      connection.close(close.code, close.reason)
      // A connection replaced by a newer one of the same session is not a disconnect (as without a store).
      if (!close.replaced) this.events.disconnect?.(this, close.code)
    }
    this.events.memory?.(this, false, this.outbox.unpark())
    return this.outbox.detachWaiters()
  }

  /**
   * With a shared store: the oldest client item whose handler began before `since` and has not
   * settled while a message it sent waits for it (journal.ts `stalled`). @internal
   */
  stalled(since: number): number | undefined {
    return this.held ? this.journal?.stalled(since) : undefined
  }

  /** The last client item recorded (without a store: delivered). @internal */
  get recordedItems(): number {
    return this.acknowledged
  }

  /** With a shared store: the last message the store recorded (all of them without a store). @internal */
  get recordedUpTo(): number {
    return this.journal ? this.journal.recordedMessages : this.outbox.last
  }

  /** With a shared store: another node appended messages to this session; a commit brings them here and writes them. @internal */
  pull(): void {
    this.journal?.pull()
  }

  /** With a shared store: the last broadcast of the service's log queued to this session. @internal */
  get broadcastPosition(): string {
    return this.broadcastAt
  }

  /** With a shared store: whether this node holds the session (it lets it go when released or claimed elsewhere). @internal */
  get isHeld(): boolean {
    return this.held
  }

  /** With a shared store: the last client item this node handed to the handlers (recorded or not). @internal */
  get seen(): number {
    return this.rxSeq
  }

  /** The protocol's side of admission: what it hands back, in order (one host for every session). */
  private static readonly admissionHost: AdmissionHost<Session> = {
    connection: (session) => session.connection,
    take: (session, frame) => session.take(frame),
    acked: (session) => session.outbox.acked,
    message: (session, seq, data) => session.deliver(seq, data),
    request: (session, frame) => session.request(frame),
    ping: (session) => session.connection?.send('{"t":"pong"}'),
    refused: (session, seq) => {
      session.rxAccepted = seq - 1
    },
    discarded: (session) => {
      session.rxAccepted = session.rxSeq
    },
    close: (session, error) => {
      // As if a frame had just arrived: the connection is closed, what it still held discarded.
      const connection = session.connection
      if (!connection) return
      session.detach(connection, error.closeCode)
      connection.close(error.closeCode, error.message) // the adapter cuts it to the WebSocket limit
    },
  }

  /** Delivers the client's message numbered `seq` to the handlers. */
  private deliver(seq: number, data: unknown): void {
    this.rxSeq = seq
    const info = new ItemInfo(this.id, seq, seq <= this.redeliverUpTo)
    if (this.journal) {
      // Acknowledged once recorded, with what its handlers sent (journal.ts).
      this.journal.deliver(seq, () => this.events.message(data, this, info))
      return
    }
    // Queued before delivering: the ack is written at the end of the tick, when rxSeq is
    // what these deliveries left it, so it goes out even if a handler throws halfway.
    this.queueAck()
    this.events.message(data, this, info)
  }

  /** A frame taken in (decoded) in its turn: sequences it, applies an ack; returns the work it carries. */
  private take(frame: ClientFrame | undefined): Work | undefined {
    // An ack riding on the frame (PROTOCOL.md §2.9) is taken as if its ack frame had come just before.
    if ((frame?.t === 'msg' || frame?.t === 'req') && frame.a !== undefined) this.acknowledge(frame.a)
    switch (frame?.t) {
      case 'msg': {
        const first = this.accept(frame.s, frame.d.length)
        // Only the new items are kept (not the frame): a resend overlapping delivered ones holds none of those.
        if (first === frame.d.length) return undefined
        return { t: 'msg', s: frame.s + first, items: first === 0 ? frame.d : frame.d.slice(first) }
      }
      case 'req':
        return this.accept(frame.s, 1) === 0 ? { t: 'req', frame } : undefined
      case 'ping':
        return PING
      case 'ack':
        this.acknowledge(frame.s)
        return undefined
      case 'hello':
        throw new FrameError('second "hello" on one connection', CloseCode.PROTOCOL_ERROR)
    }
    return undefined
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

  /** The client's cumulative ack: what it acknowledges leaves the outbox, and those sends resolve. */
  private acknowledge(seq: number): void {
    if (seq > this.outbox.last)
      throw new FrameError(`ack ${seq} for a message never sent (last sent ${this.outbox.last})`, CloseCode.PROTOCOL_ERROR)
    this.outbox.acknowledge(seq)
    this.journal?.schedule()
    // Room was made: topic messages held back by a full outbox come now.
    this.pullTopics()
  }

  /** Hands a request to the handler, within the limits on replies; throws FrameError (1013) beyond them. */
  private request(frame: RequestFrame): void {
    // Replies wait in the outbox like messages, so they count against maxQueue (and maxQueueBytes) too.
    if (this.pending + this.pendingRequests >= this.limits.maxQueue) this.overLimit('too many unacknowledged replies (maxQueue)')
    if (this.outbox.bytes >= this.limits.maxQueueBytes) this.overLimit('too many bytes of unacknowledged replies (maxQueueBytes)')
    if (this.pendingRequests >= this.limits.maxPendingRequests) {
      // The client was told the limit in welcome; one that ignores it is asked to come back later.
      this.overLimit(`more than ${this.limits.maxPendingRequests} requests awaiting replies (maxPendingRequests)`)
    }
    const seq = frame.s
    this.rxSeq = seq
    const { id } = frame
    this.pendingRequests++
    const info = new ItemInfo(this.id, seq, seq <= this.redeliverUpTo)
    const handle = () =>
      this.events.request(frame.d, this, info).then(
        (value) => this.reply(id, seq, value),
        (error: unknown) => this.reply(id, seq, undefined, publicError(error)),
      )
    // With a shared store the request is acknowledged with its reply, in one commit (journal.ts).
    if (this.journal) this.journal.deliver(seq, handle)
    else {
      this.queueAck()
      handle()
    }
  }

  /** Closes with 1013: come back later (what was refused is not acknowledged, so it is resent). */
  private overLimit(reason: string): never {
    throw new FrameError(reason, CloseCode.TRY_AGAIN_LATER)
  }

  private reply(id: number, seq: number, value: unknown, error?: ReplyErrorBody): void {
    this.pendingRequests--
    if (this.ended || !this.held) return
    let payload: string | undefined
    try {
      payload = error ? undefined : encodePayload(value ?? null)
    } catch {
      error = { code: 'ERR_REPLY_ENCODING', message: 'the reply could not be encoded as JSON' }
    }
    // Numbered when written (outbox.ts): with a shared store, entries may move up behind others' (journal.ts).
    const tail = resTail(id, payload, error)
    const size = Buffer.byteLength(tail)
    // Topic messages published before the reply go first, as before a direct message. A reply is
    // never refused: if the outbox has no room for them, it goes ahead of those left waiting.
    this.pullTopics()
    if (this.ended) return // pulling them got the session evicted (memory.ts)
    // With a shared store, recorded with its request (journal.ts).
    this.enqueue(this.journal ? { payload: tail, size, reply: true, item: seq } : { payload: tail, size, reply: true })
  }

  /** One cumulative ack for everything received in this tick, written at its end. */
  private queueAck(): void {
    this.ackDue = true
    if (this.acksRide) Session.ackAfterTask(this)
    else Session.ackAtEndOfTick(this)
  }

  private static readonly ackAtEndOfTick = perTickEach((session: Session) => session.writeAck())
  private static readonly ackAfterTask = afterTaskEach((session: Session) => session.writeAck())

  /** The due ack, for a frame about to carry it (PROTOCOL.md §2.9): then it is no longer due. @internal */
  takeAck(): number | undefined {
    if (!this.ackDue || !this.acksRide) return undefined
    this.ackDue = false
    return this.acknowledged
  }

  /**
   * Writes the due ack now: at the end of the tick, or at once before the connection is closed
   * (so that the client learns what was delivered on it before the close, not only on resume).
   */
  private writeAck(): void {
    if (!this.ackDue) return
    this.ackDue = false
    this.connection?.send(`{"t":"ack","s":${this.acknowledged}}`)
  }

  /** The last client item the client may be told is acknowledged: delivered, or with a shared store, recorded. */
  private get acknowledged(): number {
    return this.journal ? this.journal.recordedRx : this.rxSeq
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
    this.endError = error
    clearTimeout(this.expiry)
    this.admission.discard()
    const sharedBytes = this.outbox.close(error)
    for (const topic of [...(this.subscriptions?.clear() ?? []), ...(this.joining ?? [])]) this.events.leave?.(this, topic, 'ended')
    this.joining = undefined
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
}

/** Why a message sent while handling an item is not delivered: the item was not recorded before the session moved. @internal */
export const unrecordedItem = (): DeliveryError =>
  new DeliveryError(
    'the session moved to another connection before the client item being handled was recorded: the item will be delivered again, and its handler will send this again',
  )

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
  /**
   * @param code - a stable code the client sees as its `ReplyError`'s `code` (e.g. `'BAD_REQUEST'`)
   * @param message - what the client sees as the error's message
   */
  constructor(
    /** The code the client sees. */
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
