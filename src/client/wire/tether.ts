/**
 * tether.v1, client side: sequence numbers, cumulative acks, session resume, requests and
 * the heartbeat. docs/PROTOCOL.md describes the exchange; frames.ts holds the grammar.
 *
 * One message's path: the socket hands it to `queue`, which encodes it, puts an entry in the
 * outbox and asks for a flush; the flush (at most once per tick) gives it the next sequence
 * number and writes it, batched with its neighbours, in one `msg` frame; the server's
 * cumulative `ack` finishes it. After a reconnect the `hello` names the session and the last
 * server sequence received, the `welcome` names the last client sequence the server has, and
 * each side resends exactly the rest.
 * @module
 */
import { DEV } from '../../dev.js'
import { DeliveryError, EncodeError, ProtocolError, ReplyError, TetherError, TimeoutError } from '../../errors.js'
import {
  ackMember,
  afterTask,
  CloseCode,
  decodeFrame,
  encodeFrame,
  encodePayload,
  FrameError,
  MSG_OVERHEAD,
  msgBatcher,
  perTick,
  reqFrame,
  type ServerFrame,
  SUBPROTOCOL,
} from '../../protocol/frames.js'
import type { HeartbeatOptions } from '../options.js'
import { createEntry, type Entry } from '../outbox.js'
import type { DurableLog, PersistedSession, RestoredEntry, RestoringItem, RestoringSession } from '../persist.js'
import { timer } from '../timers.js'
import { isBinary } from './raw.js'
import type { Handover, MessageInfo, MissedInfo, Protocol, ProtocolHost, WireData } from './types.js'

/** The `session` event's argument: a new server session began. */
export interface SessionInfo {
  /** The new session's id. */
  id: string
  /** The session this client had before, if the server no longer knew it (expired or restarted). Unacknowledged messages are resent to the new session: at-least-once across this boundary. */
  previous: string | undefined
  /**
   * Why the previous session was not resumed, when the server said: `'unknown'` (it expired or
   * the server never had it) or `'lost'` (the server's session store lost writes it had
   * acknowledged, so it could not resume it without breaking exactly-once).
   */
  reason?: string
}

/** The types of the frames a client sends (PROTOCOL.md §3.1) that a server frame decodes to nothing for. */
const CLIENT_TYPES = /^(hello|req|ping)$/

/** `info` of a server message (and, with its count, of a `miss`) in tether mode: its id is made only when read. */
export class ServerItem implements MessageInfo {
  constructor(
    private readonly session: string | undefined,
    readonly seq: number,
    readonly redelivered: boolean,
    readonly topic: string | undefined,
  ) {}

  get id(): string {
    return `${this.session}:${this.seq}`
  }
}

/** A message as tether.v1 carries it: JSON text, or an EncodeError saying why it cannot be (the shared tabs' too). */
export function encodeMessage(data: unknown): string {
  if (isBinary(data)) {
    throw new EncodeError(DEV ? "tether.v1 carries JSON values, not binary: encode it (e.g. base64) or use mode: 'raw'" : '', { data })
  }
  try {
    return encodePayload(data)
  } catch (cause) {
    throw new EncodeError(DEV ? `message cannot be encoded as JSON: ${(cause as Error).message}` : '', { cause, data })
  }
}

/**
 * Queued within one tick past this many characters, messages are written at once instead of at
 * the end of the tick (the rest of the tick's go then, as usual). Coalescing is where speed
 * comes from, but not without bound: one frame of a whole 100,000-message loop leaves only when
 * the loop is over, and the server waits idle until then.
 */
const EARLY_BYTES = 64 * 1024

/** A timer that fires this much later than asked was throttled or frozen: re-probe before judging. */
const LATE = 1000

/** What numbering an entry came to: it has its number, it failed (too big), or it waits (request limit). */
const NUMBERED = 0
const FAILED = 1
const HELD = 2

/** The tether.v1 client protocol. */
export class TetherProtocol<In, Out> implements Protocol<Out>, RestoringSession {
  readonly subprotocol = SUBPROTOCOL
  readonly requests = true
  /** The server session, once welcomed. */
  sessionId: string | undefined

  /** Last sequence number given to an outgoing entry. */
  private txSeq = 0
  /** Last server sequence number delivered to the application. */
  rxSeq = 0
  /** Last of our sequence numbers the server acknowledged: told in `hello`, so a server that knows less can say so. */
  private ackedSeq = 0
  /**
   * With `persist`: the write-ahead log. A frame leaves only once the numbers it carries are
   * durable, and an ack names only deliveries that are.
   */
  journal: DurableLog | undefined
  /**
   * After a restore (a previous page's session): server items up to this sequence number may
   * have been delivered to that page (`info.redelivered`); 0 when none may.
   */
  private redeliveredUpTo = 0
  /** Restored from a previous page and not yet welcomed. */
  private restored = false
  /** A write waits for the journal's commit. */
  private awaitingDurable = false
  /** The server's maximum frame size, learned from `welcome`. */
  private maxPayload = Number.POSITIVE_INFINITY
  /** Characters of payloads queued while open since the last write (see EARLY_BYTES). */
  private unwritten = 0
  /** Server items were delivered since the last ack written (alone, or riding on a frame). */
  private ackDue = false
  /**
   * The server takes acks on our data frames (`welcome.pa`, PROTOCOL.md §2.9): a due ack then
   * waits for the end of the task, riding on whatever the app sends meanwhile (a request made
   * when a reply arrives) instead of costing a frame of its own.
   */
  private serverTakesAcks = false
  /**
   * The connection as the protocol sees it: no connection; hello sent, waiting for welcome;
   * welcomed (in-flight items rewritten, the socket's onOpen hook runs: only its messages go);
   * open (the socket flushed its backlog: everything goes).
   */
  private phase: 'detached' | 'handshake' | 'welcomed' | 'open' = 'detached'
  private lastRequestId = 1
  /** Requests written to the server, by id, until their reply arrives. */
  private readonly requestsInFlight = new Map<number, Entry>()
  /** Most requests the server accepts awaiting replies (from `welcome`); further ones wait, in order. */
  private maxRequests = Number.POSITIVE_INFINITY
  /** Timers of requests acknowledged but not yet answered (their outbox deadline no longer applies). */
  private readonly replyTimers = new Map<number, ReturnType<typeof setTimeout> | undefined>()
  // heartbeat: judged by wall-clock time, so throttled timers cannot cause false timeouts
  private lastReceived = 0
  private pingSentAt = 0
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined
  private heartbeatDue = 0

  constructor(
    private readonly host: ProtocolHost<In>,
    private readonly heartbeat: Required<HeartbeatOptions> | false,
    private readonly onSession: (info: SessionInfo) => void,
  ) {}

  /** Encodes, queues, then writes at once (the onOpen hook's) or asks for this tick's flush (open). */
  queue(data: Out, handover: Handover): Promise<unknown> {
    return this.queueEncoded(this.encode(data), handover)
  }

  /** `queue` for a message encoded already (option `shared`: a tab's JSON text, in the holder's socket). */
  queueEncoded(payload: string, handover: Handover): Promise<unknown> {
    // The caller's object is not kept: errors decode it from the payload (Entry.data).
    const promise = this.host.outbox.add(undefined, payload, handover.request ? { ...handover, requestId: this.nextRequestId() } : handover)
    if (handover.aheadOfQueue) this.writeAheadOfQueue()
    else if (handover.open) {
      // A burst goes out in frames of about EARLY_BYTES while the app is still sending, rather
      // than all at the end of the tick: the server starts on it sooner, and frames stay smaller.
      this.unwritten += payload.length
      if (this.unwritten >= EARLY_BYTES && this.phase === 'open' && !this.journal?.active) this.write()
      else this.flush()
    }
    return promise
  }

  encode(data: Out): string {
    return encodeMessage(data)
  }

  /** Welcomed or open: frames flow on this connection. */
  private get live(): boolean {
    return this.phase === 'welcomed' || this.phase === 'open'
  }

  /** Request ids are assigned here so replies can be matched. */
  nextRequestId(): number {
    return this.lastRequestId++
  }

  attach(selected: string): void {
    if (selected !== SUBPROTOCOL) {
      this.notTether(DEV ? `it selected ${selected ? JSON.stringify(selected) : 'no'} subprotocol` : '')
      return
    }
    this.phase = 'handshake'
    this.lastReceived = Date.now()
    this.pingSentAt = 0
    // The hello says how far we got: no ack is due on this connection until something new comes.
    this.ackDue = false
    this.serverTakesAcks = false
    this.host.write(
      encodeFrame({ t: 'hello', sid: this.sessionId ?? null, ack: this.rxSeq, acked: this.ackedSeq, sent: this.txSeq, pa: true }),
    )
    this.armHeartbeat(this.heartbeat ? this.heartbeat.interval : 0)
  }

  /** The server is not a tether server: say so once and stop, rather than reconnect forever. */
  notTether(detail: string): void {
    const error = new ProtocolError(
      DEV
        ? `the server does not speak ${SUBPROTOCOL} (${detail}). Point the client at a tether server, or use mode: 'raw' for a plain WebSocket server. Not reconnecting.`
        : '',
    )
    this.host.drop(CloseCode.CLIENT_PROTOCOL_ERROR, `${SUBPROTOCOL} not spoken`, { error, final: true })
  }

  receive(data: WireData): void {
    if (this.phase === 'detached') return // the socket is closing or has moved on
    this.lastReceived = Date.now()
    this.pingSentAt = 0
    let frame: ServerFrame | undefined
    try {
      frame = decodeFrame(data, 'server')
      if (this.phase !== 'handshake' && frame?.t === 'welcome')
        throw new FrameError(DEV ? 'second "welcome" frame' : '', CloseCode.PROTOCOL_ERROR)
    } catch (error) {
      if (!(error instanceof FrameError)) throw error
      // A server that accepted tether.v1 but does not answer hello with welcome is some other server.
      if (this.phase === 'handshake') this.notTether(DEV ? `its first frame is not a welcome: ${error.message}` : '')
      else this.protocolError(error, data)
      return
    }
    if (this.phase === 'handshake' && frame?.t !== 'welcome') {
      // A type tether.v1 does not define is ignored here too (§4.5): a later server may send new
      // frames before its welcome. What decodes to nothing here is an object with a string `t`:
      // of such a type, or of a client frame (an echoed hello), which shows it is no tether server.
      if (!frame && !CLIENT_TYPES.test(JSON.parse(data as string).t)) return
      this.notTether(DEV ? 'its first frame is not a welcome' : '')
      return
    }
    if (!frame) return // an unknown frame type: ignored, for forward compatibility
    try {
      this.handle(frame)
    } catch (error) {
      if (!(error instanceof FrameError)) throw error
      this.protocolError(error, data)
    }
  }

  private protocolError(error: FrameError, data: WireData): void {
    this.host.drop(CloseCode.CLIENT_PROTOCOL_ERROR, 'protocol error', {
      error: new ProtocolError(DEV ? `malformed frame from the server: ${error.message}; reconnecting` : '', { data }),
    })
  }

  private handle(frame: ServerFrame): void {
    switch (frame.t) {
      case 'welcome':
        this.welcome(frame)
        return
      case 'ack':
        this.acknowledge(frame.s)
        return
      case 'msg': {
        if (frame.a !== undefined) this.acknowledge(frame.a)
        const first = this.accept(frame.s, frame.d.length)
        for (let i = first; i < frame.d.length; i++) {
          this.rxSeq = frame.s + i
          this.host.deliver(frame.d[i] as In, new ServerItem(this.sessionId, this.rxSeq, this.rxSeq <= this.redeliveredUpTo, frame.tp))
          if (!this.live) return // a listener closed or reconnected the socket
        }
        return
      }
      case 'miss': {
        // One item of the stream like a message: delivered once, in its place, acknowledged the same way.
        if (this.accept(frame.s, 1) > 0) return
        this.rxSeq = frame.s
        // Its info is a message's (id, seq, redelivered, topic), with the count.
        const item = new ServerItem(this.sessionId, frame.s, frame.s <= this.redeliveredUpTo, frame.tp)
        this.host.missed(Object.assign(item, { count: frame.n }) as ServerItem & MissedInfo)
        return
      }
      case 'res': {
        if (this.accept(frame.s, 1) === 0) {
          this.rxSeq = frame.s
          const { err } = frame
          const entry = this.requestsInFlight.get(frame.id)
          this.settleRequest(
            frame.id,
            err
              ? new ReplyError(DEV ? `the server answered with an error: ${err.message}` : err.message, err.code, { data: entry?.data })
              : { value: frame.d },
          )
        }
        // The ack riding on a reply is applied after it: its request leaves the outbox answered,
        // not acknowledged first and given a reply timer that the reply clears at once.
        if (frame.a !== undefined) this.acknowledge(frame.a)
        return
      }
    }
  }

  /** Sequencing of server frames: the index of the first new item; a gap is a protocol error. */
  private accept(seq: number, count: number): number {
    if (seq > this.rxSeq + 1)
      throw new FrameError(DEV ? `sequence gap: expected ${this.rxSeq + 1}, got ${seq}` : '', CloseCode.PROTOCOL_ERROR)
    this.ackDue = true
    if (this.acksRide) this.ackAfterTask()
    else this.queueAck()
    return Math.min(count, this.rxSeq + 1 - seq)
  }

  private welcome(frame: Extract<ServerFrame, { t: 'welcome' }>): void {
    const { outbox } = this.host
    const restored = this.restored
    this.restored = false
    if (frame.resumed && frame.sid === this.sessionId) {
      // A previous page may have been given what the server resends now (see redeliveredUpTo);
      // a server that does not say how far it sent gives no bound: this whole connection's items.
      if (restored) {
        this.redeliveredUpTo = frame.sent ?? Number.POSITIVE_INFINITY
        // A stored state older than what its page went on to send (the store failed, and the
        // stale outbox could not be deleted): the server has more, which it acknowledges here.
        if (frame.ack > this.txSeq) this.txSeq = frame.ack
      }
      this.acknowledge(frame.ack)
      // Items numbered after frame.ack that left the outbox unacknowledged (close() failed them)
      // never reached the server: their numbers are free again.
      let last = frame.ack
      for (let entry = outbox.head; entry; entry = entry.next) last = Math.max(last, entry.seq)
      this.txSeq = last
    } else {
      // A new session: the server knows none of our sequence numbers. Everything not yet
      // acknowledged is renumbered and sent again (at-least-once across this boundary).
      const previous = this.sessionId
      for (let entry = outbox.head; entry; ) {
        const next = entry.next
        // One whose caller already got a rejection (timeout, abort) is not sent to the new session.
        if (entry.settled) outbox.remove(entry)
        else if (entry.seq !== 0) {
          entry.seq = 0
          this.journal?.numbered(entry)
          // written to the old session, not acknowledged: written again below, counted again then
          if (entry.requestId !== undefined) this.requestsInFlight.delete(entry.requestId)
        }
        entry = next
      }
      this.txSeq = this.rxSeq = this.ackedSeq = this.redeliveredUpTo = 0
      this.failReplies(
        (entry) =>
          new DeliveryError(DEV ? 'the server session ended before the reply arrived; the request may or may not have been handled' : '', {
            data: entry.data,
          }),
      )
      if (this.phase !== 'handshake') return // an error listener closed or reconnected the socket
      this.sessionId = frame.sid
      // Recorded at once: a page reloaded before anything else happens must resume it, or what
      // the server sends it meanwhile is lost with it.
      this.journal?.touch()
      this.phase = 'welcomed'
      this.onSession({ id: frame.sid, previous, reason: frame.reason })
      if (this.phase !== 'welcomed') return // a listener closed or reconnected the socket
    }
    this.sessionId = frame.sid
    this.maxPayload = frame.max
    this.maxRequests = frame.reqs ?? Number.POSITIVE_INFINITY
    this.serverTakesAcks = frame.pa === true
    this.phase = 'welcomed'
    // What was in flight goes again first, in order; only then may anything new be written.
    this.write({ resendOnly: true })
    this.host.ready()
  }

  /** Cumulative ack: everything up to `seq` reached the server. */
  private acknowledge(seq: number): void {
    if (seq > this.txSeq) {
      throw new FrameError(DEV ? `ack ${seq} for a message never sent (last sent ${this.txSeq})` : '', CloseCode.PROTOCOL_ERROR)
    }
    if (seq > this.ackedSeq) this.ackedSeq = seq
    const { outbox } = this.host
    for (let entry = outbox.head; entry && entry.seq !== 0 && entry.seq <= seq; entry = outbox.head) {
      if (entry.requestId === undefined) {
        outbox.succeed(entry)
        continue
      }
      // The request reached the server; its caller waits on for the reply, now outside the
      // outbox, so its deadline needs a timer of its own.
      outbox.remove(entry)
      if (entry.settled) {
        this.requestsInFlight.delete(entry.requestId) // its caller gave up (timeout, abort): the reply has no one to go to
        continue
      }
      this.journal?.keep(entry) // a later page must still take its reply
      this.awaitingReply(entry)
    }
    // What the ack removes (and `acked`) is recorded with the next commit: it may wait.
  }

  /** A request acknowledged before a reload (`persist`) waits for its reply here, outside the outbox. */
  awaitReply({ data, payload, seq, options }: RestoringItem): RestoredEntry {
    const entry = createEntry(data, payload, options)
    entry.seq = seq
    this.awaitingReply(entry)
    return { entry, promise: entry.promise as Promise<unknown> }
  }

  /** A request the server acknowledged waits for its reply, with a timer for its deadline. */
  private awaitingReply(entry: Entry): void {
    const id = entry.requestId as number
    this.requestsInFlight.set(id, entry)
    const left = entry.deadline - Date.now()
    if (left < Number.POSITIVE_INFINITY) {
      this.replyTimers.set(
        id,
        timer(() => this.settleRequest(id, new TimeoutError(entry.timedOut, { data: entry.data })), Math.max(0, left)),
      )
    }
  }

  /**
   * Takes up the session a previous page left (`persist`): the next hello resumes it. Items the
   * server resends may then have reached that page (`info.redelivered`).
   */
  resume(session: PersistedSession): void {
    this.sessionId = session.id
    this.rxSeq = session.delivered
    this.txSeq = session.sent
    this.ackedSeq = session.acked
    this.restored = true
  }

  /** Request ids up to `id` belong to a previous page's requests: new ones go after them. */
  reserveRequestIds(id: number): void {
    this.lastRequestId = Math.max(this.lastRequestId, id + 1)
    // Requests made before the store opened (never written: the first attempt waits for it) took
    // ids from 1 too: they take new ones, after `id` (ids start at 1, so 0 is none).
    for (const { extras } of this.host.outbox.entries()) if (extras?.requestId) extras.requestId = this.lastRequestId++
  }

  /** The session as the journal records it, once there is one. */
  snapshot(): PersistedSession | undefined {
    const id = this.sessionId
    return id === undefined ? undefined : { id, delivered: this.rxSeq, sent: this.txSeq, acked: this.ackedSeq }
  }

  /** A reply (or the reply timeout) finishes a request, whether or not its ack came first. */
  private settleRequest(id: number, outcome: { value: unknown } | TetherError): void {
    const entry = this.requestsInFlight.get(id)
    if (!entry) return
    this.requestsInFlight.delete(id)
    clearTimeout(this.replyTimers.get(id))
    this.replyTimers.delete(id)
    const { outbox } = this.host
    outbox.remove(entry)
    this.journal?.removed(entry)
    if (outcome instanceof TetherError) outbox.fail(entry, outcome)
    else outbox.succeed(entry, outcome.value)
    // A request held back by the server's limit may go now.
    if (outbox.cursor && this.phase === 'open') this.flush()
  }

  /** Fails the requests that were acknowledged and wait for a reply (those still in the outbox are the outbox's). */
  private failReplies(makeError: (entry: Entry) => TetherError): void {
    const { outbox } = this.host
    for (const [id, entry] of this.requestsInFlight) {
      if (entry.prev !== undefined || outbox.head === entry) continue
      this.settleRequest(id, makeError(entry))
    }
  }

  /** The socket is open: from now on everything goes, gathered per tick. */
  flush(): void {
    if (!this.live) return
    this.phase = 'open'
    this.flushSoon()
  }

  /** The onOpen hook's message goes at once, ahead of the backlog (which waits for `flush`). */
  writeAheadOfQueue(): void {
    if (this.live) this.write({ limit: 1 })
  }

  /** Everything sent in this tick goes out together, in as few frames as possible. */
  private readonly flushSoon = perTick(() => {
    if (this.phase === 'open') this.write()
  })

  /**
   * Writes up to `limit` queued entries in order, batching consecutive messages into `msg`
   * frames no bigger than the server's limit. `resendOnly` stops at the first entry never
   * written (after a resume, what was in flight goes again before anything new).
   */
  private write({ limit = Number.POSITIVE_INFINITY, resendOnly = false }: { limit?: number; resendOnly?: boolean } = {}): void {
    const { outbox } = this.host
    this.unwritten = 0
    const batch = msgBatcher(this.maxPayload, (frame) => this.host.write(frame), this.acksRide ? this : undefined)
    for (let entry = outbox.cursor; entry && limit > 0 && this.live; entry = outbox.cursor) {
      if (entry.seq === 0) {
        if (resendOnly) break
        const outcome = this.number(entry)
        if (outcome === HELD) break
        if (outcome === FAILED) {
          limit-- // it took its turn: writeAheadOfQueue() must not write the next (backlog) entry
          continue
        }
      }
      if (!this.durable(entry)) {
        // Write-ahead: its number must be on disk before its frame leaves. The rest of what is
        // due now is numbered too, so that one commit carries all of it.
        if (!resendOnly) this.numberAhead(entry.next, limit - 1)
        this.writeWhenDurable()
        break
      }
      outbox.markSent(entry)
      limit--
      if (entry.requestId !== undefined) {
        batch.end()
        this.requestsInFlight.set(entry.requestId, entry)
        this.host.write(this.reqFrame(entry))
        continue
      }
      batch.add(entry.seq, entry.payload as string, entry.size)
    }
    batch.end()
  }

  /** Gives `entry` the next sequence number, unless it must wait (request limit) or cannot go (too big). */
  private number(entry: Entry): typeof NUMBERED | typeof FAILED | typeof HELD {
    // The server takes so many requests awaiting replies; the rest waits here, in order.
    if (entry.requestId !== undefined && this.requestsInFlight.size >= this.maxRequests) return HELD
    if (entry.size + MSG_OVERHEAD > this.maxPayload) {
      this.host.outbox.fail(
        entry,
        new DeliveryError(
          DEV
            ? `message of ${entry.size} bytes exceeds the server's maximum frame size (${this.maxPayload} bytes); send smaller messages`
            : '',
          { data: entry.data },
        ),
      )
      return FAILED
    }
    entry.seq = ++this.txSeq
    if (entry.requestId !== undefined) this.requestsInFlight.set(entry.requestId, entry)
    this.journal?.numbered(entry)
    return NUMBERED
  }

  /** Numbers up to `limit` entries from `from` on without writing them (they wait for the journal). */
  private numberAhead(from: Entry | undefined, limit: number): void {
    for (let entry = from; entry && limit > 0; ) {
      const next = entry.next
      if (entry.seq === 0 && this.number(entry) === HELD) return
      limit--
      entry = next
    }
  }

  /** Whether the number `entry` carries is durable (always, without a working journal). */
  private durable(entry: Entry): boolean {
    const journal = this.journal
    if (!journal?.active) return true
    const durable = journal.durable
    return durable !== undefined && durable.id === this.sessionId && entry.seq <= durable.sent
  }

  /** Writes what waited for the journal once its commit is done (only what was numbered, while welcomed). */
  private writeWhenDurable(): void {
    if (this.awaitingDurable || !this.journal) return
    this.awaitingDurable = true
    this.journal.afterDurable(() => {
      this.awaitingDurable = false
      if (this.phase === 'open') this.write()
      else if (this.phase === 'welcomed') this.write({ resendOnly: true })
    })
  }

  /** A request's frame, with the due ack riding on it when the server takes that and it fits (§2.9). */
  private reqFrame(entry: Entry): string {
    const id = entry.requestId as number
    const payload = entry.payload as string
    const frame = reqFrame(entry.seq, id, payload)
    if (!this.acksRide || !this.ackDue) return frame
    // The envelope is ASCII: its bytes are its characters.
    if (entry.size + frame.length - payload.length + ackMember(this.rxSeq).length > this.maxPayload) return frame
    return reqFrame(entry.seq, id, payload, this.takeAck())
  }

  /**
   * Acks ride on data frames: the server takes them (§2.9), and no journal holds them back (with
   * `persist` an ack names only what is durable, so it goes alone once the commit is done).
   */
  private get acksRide(): boolean {
    return this.serverTakesAcks && !this.journal?.active
  }

  /** The ack due, for a frame about to carry it (§2.9): then it is no longer due. @internal */
  takeAck(): number | undefined {
    if (!this.ackDue) return undefined
    this.ackDue = false
    return this.rxSeq
  }

  /**
   * One cumulative ack for everything received in this tick; with `persist`, once how far the
   * page got is durable (a later page must not be resent what this one acknowledged, nor miss it).
   */
  private readonly queueAck = perTick(() => this.writeAck())

  /** Where acks ride (§2.9): the ack goes alone only if nothing carried it by the end of the task. */
  private readonly ackAfterTask = afterTask(() => this.writeAck())

  /** Writes the due ack as a frame of its own. */
  private writeAck(): void {
    if (!this.ackDue) return
    this.ackDue = false
    const journal = this.journal
    if (!journal?.active) {
      if (this.live) this.host.write(encodeFrame({ t: 'ack', s: this.rxSeq }))
      return
    }
    const session = this.sessionId
    journal.afterDurable(() => {
      const durable = journal.active ? journal.durable : this.snapshot()
      if (this.live && durable && durable.id === session && session === this.sessionId) {
        this.host.write(encodeFrame({ t: 'ack', s: durable.delivered }))
      }
    })
  }

  /** Checks liveness now (the page became visible, the network came back): a ping, then the timeout. */
  probe(): void {
    if (!this.live || !this.heartbeat || this.pingSentAt) return
    this.ping()
  }

  private ping(): void {
    if (!this.heartbeat) return
    this.pingSentAt = Date.now()
    this.host.write(encodeFrame({ t: 'ping' }))
    this.armHeartbeat(this.heartbeat.timeout)
  }

  private armHeartbeat(delay: number): void {
    clearTimeout(this.heartbeatTimer)
    this.heartbeatTimer = undefined
    if (!this.heartbeat) return
    this.heartbeatDue = Date.now() + delay
    this.heartbeatTimer = timer(() => this.checkHeartbeat(), delay)
  }

  private checkHeartbeat(): void {
    const hb = this.heartbeat
    if (!hb || this.phase === 'detached') return
    const now = Date.now()
    if (now - this.heartbeatDue > LATE) {
      // This timer was throttled (background tab) or frozen: the silence may be ours, not the server's.
      this.ping()
      return
    }
    if (this.pingSentAt) {
      if (now - this.pingSentAt >= hb.timeout) {
        this.host.drop(CloseCode.CLIENT_DROP, 'heartbeat timeout', {
          error: new TimeoutError(
            DEV
              ? `no frame from the server for ${now - this.lastReceived} ms (heartbeat.interval + heartbeat.timeout); replacing the connection`
              : '',
          ),
        })
        return
      }
      this.armHeartbeat(this.pingSentAt + hb.timeout - now)
      return
    }
    const idle = now - this.lastReceived
    if (idle >= hb.interval) this.ping()
    else this.armHeartbeat(hb.interval - idle)
  }

  detach(): void {
    // Without the server's bound, only the first connection after a restore could resend what a previous page saw.
    if (this.redeliveredUpTo === Number.POSITIVE_INFINITY) this.redeliveredUpTo = this.rxSeq
    this.phase = 'detached'
    clearTimeout(this.heartbeatTimer)
    this.heartbeatTimer = undefined
  }

  /** The socket closed or gave up: fail what waits for a reply outside the outbox. */
  failAwaiting(makeError: (entry: Entry) => TetherError): void {
    this.failReplies(makeError)
    this.requestsInFlight.clear()
    this.detach()
  }
}
