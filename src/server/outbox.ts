/**
 * A session's outgoing half: the messages and replies written to the client and not yet
 * acknowledged, numbered consecutively, counted against `maxQueue` and `maxQueueBytes`, and
 * written to the connection in `msg` frames until its buffer is full (a client that does not
 * read). Not the client's `Outbox`: this one never times out or retries; it waits for the
 * client's cumulative ack, and rewrites what is unacknowledged when the client resumes.
 *
 * The storage seam goes here (the session store will put it under this class):
 * - recorded: each entry as `push()` appends it, under its sequence number (`last`): its
 *   payload, and whether it is a reply (a complete `res` frame). A broadcast's payload is one
 *   object shared by every session that holds it: stored once. The `send()` promise is not
 *   stored; it lives in this process only.
 * - read back: on resume, the entries after the client's ack (`acknowledge(clientAck)`, then
 *   `rewind()` and `flush()`), and `last`, so numbering goes on where it stopped.
 * - trimmed: on `acknowledge(seq)`, every entry up to `seq`; on `close()`, all of them.
 * The client's side of the sequence (the last client message delivered, `rxSeq`) is the
 * session's, and would be stored beside it.
 * @module
 */
import { QueueFullError, type TetherError } from '../errors.js'
import { type AckSource, ackMember, MSG_OVERHEAD, missFrame, msgHead, msgTail, resHead } from '../protocol/frames.js'
import type { AckProgress } from './liveness.js'
import { REPLY_ENTRY_BYTES, SENT_ENTRY_BYTES, SHARED_ENTRY_BYTES, WRITE_BUFFER_BYTES } from './memory.js'
import type { SessionConnection, SessionLimits } from './seams.js'

/**
 * A message held for the client. Its sequence number is its place in the outbox (they are
 * consecutive), so a broadcast's entry carries nothing per session and is shared by all of them.
 */
export interface Outgoing {
  /** A `msg` payload (JSON), or a `res` frame without its sequence number (frames.ts `resTail`). */
  readonly payload: string
  /** UTF-8 bytes of `payload`. */
  readonly size: number
  readonly reply?: true
  /**
   * With a shared store: the client item being handled when it was sent (journal.ts). It is
   * recorded, and written, only with that item.
   */
  readonly item?: number
  /** With a shared store, for a broadcast: its id in the service's broadcast log. */
  readonly broadcast?: string
  /** A message published to this topic (topics.ts): written in `msg` frames that name it. */
  readonly topic?: string
  /** A `miss` item: this many messages of `topic` were dropped by its log's retention before they could be delivered. */
  readonly missed?: number
  /** Only for `session.send()`: its promise, and what settles it. */
  readonly promise?: Promise<void>
  readonly resolve?: () => void
  readonly reject?: (error: TetherError) => void
  /** Only for a shared message: how many disconnected (parked) sessions hold it. */
  holdersAway?: number
  /**
   * Only for a shared message: its `msg` frame without the sequence number (frames.ts `msgTail`),
   * made by the first session that writes it alone in a frame, for every other that does.
   */
  tail?: string
}

/** A message encoded once for many sessions (a broadcast): each queues this same object, without a promise. @internal */
export interface SharedMessage extends Outgoing {
  holdersAway: number
  readonly item?: undefined
  /** With a shared store: its id in the service's broadcast log. */
  readonly broadcast?: string
  readonly reply?: undefined
  readonly promise?: undefined
  readonly resolve?: undefined
  readonly reject?: undefined
}

/** Makes a {@link SharedMessage} of a payload already JSON-encoded. @internal */
export const sharedMessage = (payload: string, broadcast?: string): SharedMessage =>
  broadcast === undefined
    ? { payload, size: Buffer.byteLength(payload), holdersAway: 0, tail: undefined }
    : { payload, size: Buffer.byteLength(payload), holdersAway: 0, tail: undefined, broadcast }

/** Bytes an entry counts against `maxQueueBytes` (memory.ts has the figures). */
export const cost = (entry: Outgoing): number =>
  entry.size + (entry.resolve ? SENT_ENTRY_BYTES : entry.reply ? REPLY_ENTRY_BYTES : SHARED_ENTRY_BYTES)

const noop = () => {}

/** UTF-8 bytes of a topic's `"tp"` member in a `msg` frame (none without a topic). */
const topicBytes = (topic: string | undefined): number => (topic === undefined ? 0 : Buffer.byteLength(`,"tp":${JSON.stringify(topic)}`))

/**
 * An entry's `msg` frame without its sequence number, when it goes alone in a frame. A shared
 * message's is made once, by the first session that writes it, for all: a publish to 10,000
 * members builds one, and each member only puts its sequence number in front.
 */
function frameTail(entry: Outgoing): string {
  if (entry.holdersAway === undefined) return msgTail(entry.payload, entry.topic)
  entry.tail ??= msgTail(entry.payload, entry.topic)
  return entry.tail
}

/**
 * From this many bytes buffered in a connection (with the frame about to be written), its
 * writes are watched: below it the buffer cannot reach WRITE_BUFFER_BYTES with one frame.
 */
const WATCH_FROM_BYTES = 64 * 1024

/** Takes the place of an acknowledged entry until the array is compacted. */
const RELEASED: Outgoing = { payload: '', size: 0 }

/** The unacknowledged messages of one session, to the client. @internal */
export class SessionOutbox {
  /** Entries from `head` are unacknowledged, numbered consecutively up to `last`. */
  private entries: Outgoing[] = []
  private head = 0
  /** Of the unacknowledged entries, how many went on the current connection. */
  private written = 0
  private lastSeq = 0
  /** The client's last cumulative ack. */
  private ackedSeq = 0
  /** What the unacknowledged entries count against `maxQueueBytes`. */
  private counted = 0
  /** Of those, the payload bytes of shared messages (broadcasts), which the server-wide budget counts once for all sessions. */
  private sharedBytes = 0
  /** Counted by the server-wide budget (the session is disconnected): the shared entries count this outbox among their holders. */
  private away = false
  /** The connection writing stopped on (WRITE_BUFFER_BYTES were buffered), until what it buffered was handed on. */
  private blocked: SessionConnection | undefined
  /**
   * Entries up to here may be written. Without a shared store every entry may be written at
   * once; with one, only those it has recorded (`recorded()`), so a node that resumes the
   * session resends exactly what the client has not acknowledged.
   */
  private writable = 0

  /**
   * @param writeAhead - entries are written only once `recorded()` says the store has them
   */
  constructor(
    private readonly limits: Pick<SessionLimits, 'maxQueue' | 'maxQueueBytes' | 'maxPayload'>,
    private readonly writeAhead = false,
  ) {}

  /** Sequence number of the last entry pushed. */
  get last(): number {
    return this.lastSeq
  }

  /** Entries not yet acknowledged. */
  get pending(): number {
    return this.entries.length - this.head
  }

  /** What the unacknowledged entries count against `maxQueueBytes`. */
  get bytes(): number {
    return this.counted
  }

  /** `bytes` without the shared payloads: what the server-wide budget counts for this session alone. */
  get ownBytes(): number {
    return this.counted - this.sharedBytes
  }

  /** The client's last cumulative ack. */
  get acked(): number {
    return this.ackedSeq
  }

  /** Whether the outbox is counted by the server-wide budget (see {@link park}). */
  get parked(): boolean {
    return this.away
  }

  /** How far the client acknowledged what was written on the current connection. */
  get progress(): AckProgress {
    // Entries are numbered by their place: the last written is `written` after the last acknowledged.
    return { acked: this.ackedSeq, written: this.lastSeq - this.pending + this.written }
  }

  /** Why an entry counting `bytes` cannot be pushed now (`owner` names the session), or undefined if it can. */
  refusal(bytes: number, owner: string): QueueFullError | undefined {
    const { maxQueue, maxQueueBytes } = this.limits
    if (this.pending >= maxQueue) {
      return new QueueFullError(
        `session ${owner} has ${this.pending} unacknowledged messages (maxQueue ${maxQueue}); the client is not keeping up or is away`,
      )
    }
    if (this.counted + bytes > maxQueueBytes) {
      return new QueueFullError(
        `session ${owner} holds ${this.counted} bytes of unacknowledged messages and this one counts ${bytes} (maxQueueBytes ${maxQueueBytes}); the client is not keeping up or is away`,
      )
    }
    return undefined
  }

  /**
   * Appends an entry, numbered `last + 1`, and counts it. Returns the payload bytes the
   * server-wide budget now counts in addition: a shared entry's, when this parked outbox is its
   * first disconnected holder; otherwise 0.
   */
  push(entry: Outgoing): number {
    this.lastSeq++
    if (!this.writeAhead) this.writable = this.lastSeq
    // Into an empty outbox (the usual case for a client that keeps up), an array of exactly one:
    // a push would give the array room for 16 more (152 bytes), made and dropped at every message.
    if (this.entries.length === 0) this.entries = [entry]
    else this.entries.push(entry)
    this.counted += cost(entry)
    if (entry.holdersAway === undefined) return 0
    this.sharedBytes += entry.size
    return this.away && entry.holdersAway++ === 0 ? entry.size : 0
  }

  /** The client acknowledged everything up to `seq` (at most `last`): those entries are let go, their sends resolve. */
  acknowledge(seq: number): void {
    this.ackedSeq = Math.max(this.ackedSeq, seq)
    const { entries } = this
    let count = Math.min(this.pending, seq - (this.lastSeq - this.pending))
    while (count-- > 0) {
      const entry = entries[this.head]
      // Let go now (a broadcast's payload is shared): only a compaction would drop it otherwise.
      entries[this.head++] = RELEASED
      this.counted -= cost(entry)
      if (entry.holdersAway !== undefined) this.sharedBytes -= entry.size
      if (this.written > 0) this.written--
      entry.resolve?.()
    }
    // Everything acknowledged (the usual case for a client that keeps up): the slots of what was
    // let go are dropped at once. Otherwise, compact now and then rather than shifting per ack.
    if (this.head === entries.length) {
      entries.length = 0
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head)
      this.head = 0
    }
  }

  /** A new connection, or none: nothing unacknowledged went on it yet. */
  rewind(): void {
    this.written = 0
    this.blocked = undefined
  }

  /**
   * Writes what `connection` has not had yet, batching messages into `msg` frames, until the
   * connection has WRITE_BUFFER_BYTES buffered (a client that does not read): then the rest
   * waits, and writing goes on once what was written has been handed on.
   */
  flush(connection: SessionConnection | undefined, acks?: AckSource): void {
    if (!connection || this.blocked === connection) return
    const { entries } = this
    const start = this.head + this.written
    const end = entries.length - (this.lastSeq - this.writable)
    if (start >= end) return
    const firstSeq = this.lastSeq - this.pending + 1 - this.head
    const maxBytes = this.limits.maxPayload
    let full = false
    // Messages go out in runs, a `msg` frame each: consecutive messages of one topic (or of none)
    // within maxPayload (frames.ts msgBatcher's rule). `run` is the first of the run being
    // collected, `runBytes` its size once a second message could join it (0 until then).
    let run = start
    let runBytes = 0
    let i = start
    for (; i < end && !full; i++) {
      const entry = entries[i]
      this.written++
      if (run < i) {
        const first = entries[run]
        runBytes ||= MSG_OVERHEAD + topicBytes(first.topic) + first.size + 1
        if (entry.topic === first.topic && !entry.reply && entry.missed === undefined && runBytes + entry.size + 1 <= maxBytes) {
          runBytes += entry.size + 1
          continue
        }
        full = this.write(connection, this.msgFrame(firstSeq, run, i, acks)) || full
      }
      run = i
      runBytes = 0
      if (!entry.reply && entry.missed === undefined) continue
      // A reply, or a `miss` item: a frame of its own.
      const seq = firstSeq + i
      full =
        this.write(
          connection,
          entry.reply
            ? resHead(seq) + ackMember(acks?.takeAck()) + entry.payload
            : missFrame(seq, entry.topic as string, entry.missed as number),
        ) || full
      run = i + 1
    }
    if (run < i) full = this.write(connection, this.msgFrame(firstSeq, run, i, acks)) || full
    if (full) this.blocked = connection
  }

  /**
   * The `msg` frame of entries `from` to `to` (excluded), of one topic or none, with the ack
   * `acks` has due riding on it (PROTOCOL.md §2.9; MSG_OVERHEAD keeps room for it).
   */
  private msgFrame(firstSeq: number, from: number, to: number, acks: AckSource | undefined): string {
    const first = this.entries[from]
    const head = msgHead(firstSeq + from) + ackMember(acks?.takeAck())
    if (to - from === 1) return head + frameTail(first)
    const payloads = this.entries.slice(from, to).map((entry) => entry.payload)
    return head + msgTail(payloads.join(','), first.topic)
  }

  /** Writes a frame; returns whether the connection's buffer is now full. */
  private write(connection: SessionConnection, frame: string): boolean {
    // Only a connection that reports what it buffers can be waited for.
    if (!connection.bufferedAmount) {
      connection.send(frame)
      return false
    }
    // Told when a frame was handed on only where the buffer may fill: each callback costs the
    // write a nextTick, and a client that keeps up leaves nothing buffered. A frame that could
    // make the buffer full always has one (its length is at most its bytes), so a blocked
    // connection always has a callback to come.
    if (connection.bufferedAmount() + frame.length < WATCH_FROM_BYTES) connection.send(frame)
    else
      connection.send(frame, (error) => {
        if (!error) this.onWritten(connection)
      })
    return connection.bufferedAmount() >= WRITE_BUFFER_BYTES
  }

  /** A frame written by flush() was handed to the network: write on if the connection's buffer has emptied. */
  private onWritten(connection: SessionConnection): void {
    if (this.blocked !== connection || (connection.bufferedAmount?.() ?? 0) >= WRITE_BUFFER_BYTES / 2) return
    this.blocked = undefined
    this.flush(connection)
  }

  /** Entries after `recordedUpTo` (numbered from it + 1): what a commit records next. @internal */
  unrecorded(recordedUpTo: number): Outgoing[] {
    const from = this.head + this.pending - (this.lastSeq - recordedUpTo)
    return this.entries.slice(Math.max(from, this.head))
  }

  /**
   * Moves the unrecorded entries (after `recordedUpTo`) that `may` accepts ahead of those it
   * does not, each group in its order, and returns how many it accepted. Unrecorded entries were
   * never written, so their numbers are not known to anyone yet.
   */
  recordableFirst(recordedUpTo: number, may: (entry: Outgoing) => boolean): number {
    const from = Math.max(this.head + this.pending - (this.lastSeq - recordedUpTo), this.head)
    const tail = this.entries.slice(from)
    const accepted = tail.filter(may)
    if (accepted.length < tail.length && accepted.length > 0) {
      const waiting = tail.filter((entry) => !may(entry))
      this.entries.splice(from, tail.length, ...accepted, ...waiting)
    }
    return accepted.length
  }

  /** The store recorded the entries up to `seq`: they may be written now (`flush`). */
  recorded(seq: number): void {
    if (seq > this.writable) this.writable = seq
  }

  /**
   * Other nodes appended `gap` after entry `base` (the store numbered them first): they go in
   * after it, and the entries this node numbered after `base` (not recorded, so never written)
   * move up behind them.
   */
  insert(base: number, gap: readonly Outgoing[]): void {
    if (gap.length === 0) return
    const at = this.head + this.pending - (this.lastSeq - base)
    this.entries.splice(at, 0, ...gap)
    this.lastSeq += gap.length
    for (const entry of gap) this.counted += cost(entry)
  }

  /**
   * A claimed session's messages, as the store had them: the client acknowledged up to `acked`,
   * and `entries` follow, all recorded. Only on an outbox that holds nothing yet.
   */
  restore(acked: number, entries: readonly Outgoing[]): void {
    this.entries = [...entries]
    this.head = 0
    this.ackedSeq = acked
    this.lastSeq = this.writable = acked + entries.length
    for (const entry of entries) this.counted += cost(entry)
  }

  /**
   * Takes out the promises of entries not yet acknowledged, which then stay in the outbox
   * without them: the session is leaving this node (released, or claimed elsewhere), and
   * another node will see the client acknowledge them. Entries after `recordedUpTo` are
   * returned too, to be appended through the store. @internal
   */
  detachWaiters(): Array<{ seq: number; entry: Outgoing }> {
    const out: Array<{ seq: number; entry: Outgoing }> = []
    const first = this.lastSeq - this.pending + 1
    for (let i = this.head; i < this.entries.length; i++) {
      const entry = this.entries[i]
      if (entry.resolve) out.push({ seq: first + i - this.head, entry })
    }
    return out
  }

  /**
   * The session disconnected: from now on the server-wide budget counts it, and the shared
   * entries count it among their disconnected holders. Returns the payload bytes of those it is
   * the first disconnected holder of.
   */
  park(): number {
    this.away = true
    return this.holdShared(1)
  }

  /** No longer counted by the budget (connected again, or ended); returns the shared payload bytes let go (negative). */
  unpark(): number {
    if (!this.away) return 0
    this.away = false
    return this.holdShared(-1)
  }

  /** Counts this outbox among the holders of its shared entries (`by` 1), or no longer (-1). */
  private holdShared(by: 1 | -1): number {
    let bytes = 0
    const { entries } = this
    for (let i = this.head; i < entries.length; i++) {
      const entry = entries[i]
      if (entry.holdersAway === undefined) continue
      entry.holdersAway += by
      if (entry.holdersAway === (by > 0 ? 1 : 0)) bytes += by * entry.size
    }
    return bytes
  }

  /**
   * The session ended: every entry is let go and its send rejects with `error`. Returns the
   * shared payload bytes the budget lets go (negative), as {@link unpark}.
   */
  close(error: TetherError): number {
    const sharedBytes = this.unpark()
    const { entries, head } = this
    this.entries = []
    this.head = 0
    this.counted = 0
    this.sharedBytes = 0
    this.blocked = undefined
    for (let i = head; i < entries.length; i++) {
      const entry = entries[i]
      // An ignored failure must not crash the process as an unhandled rejection. Marked here,
      // not when sent: a second promise per message would cost as much again.
      entry.promise?.catch(noop)
      entry.reject?.(error)
    }
    return sharedBytes
  }
}
