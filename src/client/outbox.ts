/**
 * The outbox: every message the user handed to `send()` or `request()` that is not
 * finished yet, in send order.
 *
 * It is one linked list with a cursor. Entries before the cursor are in flight (written
 * to a socket, waiting for the server's acknowledgement); entries from the cursor on are
 * queued (waiting for a connection). A linked list because entries leave from anywhere:
 * acks take the head, aborts, `ttl` and `key` replacement take from the middle.
 *
 * One timer serves all deadlines: it is armed for the earliest one and re-armed when it
 * fires, so a burst of sends with timeouts costs no timer per message.
 * @module
 */
import { DEV } from '../dev.js'
import { AbortError, QueueFullError, type TetherError, TimeoutError } from '../errors.js'
import { perTick } from '../protocol/frames.js'
import type { RestoringItem } from './persist.js'
import { timer } from './timers.js'

/** What the wire carries: text or binary, as `WebSocket.send` accepts it. */
export type Payload = string | ArrayBuffer | ArrayBufferView | Blob

/** Bounds of the outbox. */
export interface QueueLimits {
  maxMessages: number
  maxBytes: number
  overflow: 'reject' | 'drop-oldest'
}

/** Per-message options as the outbox sees them (deadlines already absolute). */
export interface EntryOptions {
  /** Absolute time (ms) by which the message must be finished, or Infinity. */
  deadline: number
  /** Absolute time (ms) after which a message never transmitted is dropped, or Infinity. */
  staleAt: number
  /** The timeout and ttl those came from, in ms: for the messages of a `TimeoutError`. */
  timeout?: number
  ttl?: number
  signal?: AbortSignal
  key?: string
  /** Request id (tether mode): the entry finishes with the reply, not the ack. */
  requestId?: number
  /** The open hook's message: it goes ahead of every queued message, behind earlier such ones. */
  aheadOfQueue?: boolean
  /** Option `shared`, in the holder's socket: the tab and number of a tab's message (`tab:n`). */
  origin?: string
}

/**
 * What only some messages carry: a deadline, a key, a request id, a signal, the open hook's
 * place in line. A plain `send()` has none, so its entry holds no object for them.
 */
interface Extras {
  readonly key: string | undefined
  /** Changed only for a request never written (with `persist`: a previous page's request holds its id). */
  requestId: number | undefined
  readonly deadline: number
  readonly staleAt: number
  readonly timeout: number | undefined
  readonly ttl: number | undefined
  readonly aheadOfQueue: boolean
  readonly origin: string | undefined
  unlisten: (() => void) | undefined
}

/**
 * One message in the outbox. Fields are written by the outbox and the wire protocol only.
 *
 * Kept small because a queue can hold many: the rare options live in {@link Extras}, and a
 * settled entry drops its promise and resolver (an entry in flight outlives its promise
 * when the caller's timeout passed first).
 */
export class Entry {
  /** Sequence number given by the protocol on first transmission; 0 while never written. */
  seq = 0
  /** Written to the current connection (behind the cursor). */
  sent = false
  prev: Entry | undefined = undefined
  next: Entry | undefined = undefined

  constructor(
    /**
     * The caller's message, where the payload cannot give it back (raw mode). In tether mode it
     * is left out and `data` decodes the JSON payload again: a queued message then does not keep
     * the caller's object alive for the rare error that hands it back.
     */
    private readonly kept: unknown,
    /** The message encoded by the protocol, ready for the wire. */
    readonly payload: Payload,
    readonly size: number,
    /** The caller's promise, until it settles. */
    public promise: Promise<unknown> | undefined,
    /**
     * Settles `promise`, until it has. There is no reject function: a rejection resolves with a
     * thenable that rejects, so each queued message keeps one closure instead of two.
     */
    public resolve: ((value: unknown) => void) | undefined,
    readonly extras: Extras | undefined,
  ) {}

  /** The message as the user passed it, or in tether mode as its JSON decodes (errors carry it back). */
  get data(): unknown {
    return this.kept === undefined && typeof this.payload === 'string' ? JSON.parse(this.payload) : this.kept
  }

  /** The caller's promise has settled (the entry may stay, in flight, until acknowledged). */
  get settled(): boolean {
    return this.promise === undefined
  }

  get key(): string | undefined {
    return this.extras?.key
  }

  get requestId(): number | undefined {
    return this.extras?.requestId
  }

  /** Absolute time (ms) by which it must be finished, or Infinity. */
  get deadline(): number {
    return this.extras ? this.extras.deadline : Number.POSITIVE_INFINITY
  }

  /** Absolute time (ms) after which, never written, it is dropped; or Infinity. */
  get staleAt(): number {
    return this.extras ? this.extras.staleAt : Number.POSITIVE_INFINITY
  }

  /**
   * Why its deadline passed, for a `TimeoutError`: how long it was given, and by which option
   * (a request waits for its reply, a message for its ack).
   */
  get timedOut(): string {
    if (!DEV) return ''
    const waited = this.extras?.timeout
    return this.requestId === undefined
      ? `not acknowledged within ${waited} ms (the send's timeout, or ackTimeout)`
      : `no reply within ${waited} ms (the request's timeout, or requestTimeout)`
  }

  /** Option `shared`, in the holder's socket: which tab's message this is (`tab:n`). */
  get origin(): string | undefined {
    return this.extras?.origin
  }

  /** Added `aheadOfQueue` (by the open hook): goes ahead of queued messages, behind earlier such ones. */
  get aheadOfQueue(): boolean {
    return this.extras?.aheadOfQueue === true
  }
}

const noop = () => {}

/** The resolver the last `new Promise(capture)` was given: one executor for every entry, no closure each. */
let captured: ((value: unknown) => void) | undefined
const capture = (resolve: (value: unknown) => void) => {
  captured = resolve
}

/** A new entry with its promise, in no outbox yet; the rare options go into its extras. */
export function createEntry(data: unknown, payload: Payload, options: EntryOptions): Entry {
  const promise = new Promise<unknown>(capture)
  const resolve = captured as (value: unknown) => void
  const { signal, key, requestId, deadline, staleAt, timeout, ttl, aheadOfQueue = false, origin } = options
  const plain =
    origin === undefined &&
    !signal &&
    !aheadOfQueue &&
    key === undefined &&
    requestId === undefined &&
    deadline === Number.POSITIVE_INFINITY &&
    staleAt === Number.POSITIVE_INFINITY
  const extras: Extras | undefined = plain
    ? undefined
    : { key, requestId, deadline, staleAt, timeout, ttl, aheadOfQueue, origin, unlisten: undefined }
  return new Entry(data, payload, payloadSize(payload), promise, resolve, extras)
}

/**
 * Marks an entry settled and returns its resolver (undefined if it had settled already): the
 * entry lets go of its promise, and of its abort listener.
 */
function settle(entry: Entry): ((value: unknown) => void) | undefined {
  const { resolve, extras } = entry
  entry.promise = entry.resolve = undefined
  if (extras?.unlisten) {
    extras.unlisten()
    extras.unlisten = undefined
  }
  return resolve
}

/** Byte length of a payload; for strings the UTF-8 length, counted without encoding. */
export function payloadSize(payload: Payload): number {
  if (typeof payload !== 'string') {
    return 'byteLength' in payload ? payload.byteLength : payload.size
  }
  let bytes = payload.length
  for (let i = 0; i < payload.length; i++) {
    const c = payload.charCodeAt(i)
    if (c < 0x80) continue
    // U+0080..U+07FF take 2 bytes; the rest of the BMP and lone surrogates (sent as U+FFFD) 3;
    // a surrogate pair 4 for its 2 units.
    const pair = c >= 0xd800 && c <= 0xdbff && (payload.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    if (pair) i++
    bytes += c < 0x800 ? 1 : 2
  }
  return bytes
}

/**
 * Where the outbox reports its size: the socket, as its `pending` event, once per tick in which
 * the size changed (not when the tick ended where it started), and only while it has listeners.
 */
export interface SizeEvents {
  listenerCount(event: 'pending'): number
  emit(event: 'pending', size: number): boolean
}

/**
 * Told when entries enter and leave the outbox: the durable outbox (journal.ts) records them.
 * `removed` is called for every entry that leaves, finished or not; `added` for each linked.
 */
export interface OutboxWatcher {
  added(entry: Entry): void
  removed(entry: Entry): void
}

/** The ordered, bounded store of unfinished messages. */
export class Outbox {
  /** Oldest entry (in flight or queued). */
  head: Entry | undefined
  tail: Entry | undefined
  /** First entry not yet written to the current connection. */
  cursor: Entry | undefined
  /** Entries in the outbox (in flight + queued). */
  size = 0
  /** Entries waiting to be written. */
  queued = 0
  /** Bytes held by all entries. */
  bytes = 0

  private readonly keyed = new Map<string, Entry>()
  /** Set with `persist`, once the store is open. */
  private watcher: OutboxWatcher | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private timerAt = Number.POSITIVE_INFINITY
  /** The size last reported (or, while nobody listens, the current size). */
  private reported = 0

  /**
   * @param limits - bounds; checked on every add
   * @param onFail - told of every entry that fails (the socket emits it as an `error` event)
   * @param events - told of size changes, coalesced per tick
   */
  constructor(
    private readonly limits: QueueLimits,
    private readonly onFail: (error: TetherError) => void,
    private readonly events?: SizeEvents,
  ) {}

  /**
   * Changes `size`. While someone listens, a report is due at the end of the tick; while nobody
   * does, nothing is scheduled, and the size is simply taken as reported.
   */
  private resize(by: number): void {
    this.size += by
    if (this.events?.listenerCount('pending')) this.report()
    else this.reported = this.size
  }

  // A listener that throws is reported as uncaught by the microtask, like the socket's other events.
  private readonly report = perTick(() => {
    if (this.size !== this.reported) {
      this.reported = this.size
      this.events?.emit('pending', this.size)
    }
  })

  /** Fails `entry` when `signal` aborts (a method of its own: a closure in `add` would cost every send a context). */
  private listenForAbort(entry: Entry, signal: AbortSignal, extras: Extras): void {
    const onAbort = () =>
      this.fail(entry, new AbortError(DEV ? 'send was aborted by its signal' : '', { cause: signal.reason, data: entry.data }))
    signal.addEventListener('abort', onAbort, { once: true })
    extras.unlisten = () => signal.removeEventListener('abort', onAbort)
  }

  /**
   * Adds a message and returns the promise its sender gets. Never throws: a message that
   * cannot be queued gets a rejected promise (and an `onFail` report).
   * `options.aheadOfQueue` puts it ahead of every queued message (for the open hook's messages).
   * `data` is the caller's message, or undefined where `payload` is its JSON (see Entry.data).
   */
  add(data: unknown, payload: Payload, options: EntryOptions): Promise<unknown> {
    const entry = createEntry(data, payload, options)
    const promise = entry.promise as Promise<unknown>
    const { signal, key, deadline, staleAt, aheadOfQueue = false } = options
    const { extras } = entry
    if (signal?.aborted) {
      this.finish(
        entry,
        new AbortError(DEV ? 'send was aborted by its signal before it was queued' : '', { cause: signal.reason, data: entry.data }),
      )
      return promise
    }
    const replaced = key === undefined ? undefined : this.keyed.get(key)
    if (replaced) this.supersede(replaced, entry)
    if (!this.makeRoom(entry)) return promise
    this.link(entry, aheadOfQueue)
    if (signal && extras) this.listenForAbort(entry, signal, extras)
    if (key !== undefined) this.keyed.set(key, entry)
    const expiry = Math.min(deadline, staleAt)
    if (expiry < this.timerAt) this.arm(expiry)
    return promise
  }

  /**
   * Puts back what a previous page left (with `persist`), ahead of every entry queued so far
   * (the socket has not connected yet, so all of those are newer), in the order given. The
   * bounds do not apply: these were accepted once. A restored entry whose `key` a newer queued
   * entry has is replaced by it at once.
   * @returns each item's entry, promise, and whether it is in the outbox (not replaced), in order
   */
  restore(items: readonly RestoringItem[]): { entry: Entry; promise: Promise<unknown>; kept: boolean }[] {
    const first = this.head
    let expiry = Number.POSITIVE_INFINITY
    const promises = items.map(({ data, payload, seq, options }) => {
      const entry = createEntry(data, payload, options)
      const promise = entry.promise as Promise<unknown>
      entry.seq = seq
      const { key } = entry
      const newer = key === undefined || seq !== 0 ? undefined : this.keyed.get(key)
      if (newer) {
        promise.catch(noop)
        settle(entry)?.(newer.promise)
        return { entry, promise, kept: false }
      }
      this.linkBefore(entry, first)
      if (key !== undefined && seq === 0) this.keyed.set(key, entry)
      expiry = Math.min(expiry, entry.deadline, entry.staleAt)
      return { entry, promise, kept: true }
    })
    if (expiry < this.timerAt) this.arm(expiry)
    return promises
  }

  /** The entries, in order. */
  entries(): Entry[] {
    const all: Entry[] = []
    for (let entry = this.head; entry; entry = entry.next) all.push(entry)
    return all
  }

  /** Starts telling `watcher` about entries entering and leaving (the durable outbox, once open). */
  watch(watcher: OutboxWatcher | undefined): void {
    this.watcher = watcher
  }

  /** Moves the cursor past `entry`: it has been written to the socket and now waits for its ack. */
  markSent(entry: Entry): void {
    entry.sent = true
    this.cursor = entry.next
    this.queued--
    if (entry.key !== undefined && this.keyed.get(entry.key) === entry) this.keyed.delete(entry.key)
  }

  /** After a connection is lost: everything in flight is queued again, to be written on the next one. */
  rewind(): void {
    for (let entry = this.head; entry; entry = entry.next) entry.sent = false
    this.cursor = this.head
    this.queued = this.size
  }

  /** Finishes an entry successfully and removes it. */
  succeed(entry: Entry, value?: unknown): void {
    this.remove(entry)
    settle(entry)?.(value)
  }

  /**
   * Fails an entry's promise. An entry never written leaves the outbox; one in flight stays
   * until acknowledged, because the server may already have it and sequence numbers must
   * stay contiguous.
   */
  fail(entry: Entry, error: TetherError): void {
    if (entry.seq === 0) this.remove(entry)
    this.finish(entry, error)
  }

  /** Fails every entry (close, or reconnection given up) and empties the outbox. */
  failAll(makeError: (entry: Entry) => TetherError): void {
    const head = this.head
    // Emptied first: an onFail listener that sends adds to an empty outbox, not to a list being dropped.
    this.head = this.tail = this.cursor = undefined
    this.resize(-this.size)
    this.queued = this.bytes = 0
    this.keyed.clear()
    this.disarm()
    for (let entry = head; entry; ) {
      const next: Entry | undefined = entry.next
      // Unlinked, so a late succeed/fail/remove of this entry finds it out and changes nothing.
      entry.prev = entry.next = undefined
      this.watcher?.removed(entry)
      this.finish(entry, makeError(entry))
      entry = next
    }
  }

  /** Stops the deadline timer (the outbox stays usable). */
  disarm(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
  }

  private finish(entry: Entry, error: TetherError): void {
    const { promise } = entry
    const resolve = settle(entry)
    if (!resolve) return
    // Marks the rejection handled, so a caller who ignores the promise gets no unhandled rejection.
    promise?.catch(noop)
    // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose, it rejects the promise it resolves (see Entry.resolve)
    resolve({ then: (_: unknown, reject: (reason: TetherError) => void) => reject(error) })
    this.onFail(error)
  }

  /** A newer message with the same key replaces a queued one; the old promise follows the new one. */
  private supersede(old: Entry, replacement: Entry): void {
    this.remove(old)
    const { promise } = old
    promise?.catch(noop)
    settle(old)?.(replacement.promise)
  }

  /** Enforces the bounds for a new entry; false (and the entry rejected) when it cannot be queued. */
  private makeRoom(entry: Entry): boolean {
    const { maxMessages, maxBytes, overflow } = this.limits
    const fits = () => this.size < maxMessages && this.bytes + entry.size <= maxBytes
    if (entry.size > maxBytes) {
      this.finish(
        entry,
        new QueueFullError(
          DEV ? `message of ${entry.size} bytes exceeds queue.maxBytes (${maxBytes}); raise queue.maxBytes or send smaller messages` : '',
          { data: entry.data },
        ),
      )
      return false
    }
    if (overflow === 'drop-oldest') {
      // Only messages never written can be dropped: one in flight may already be at the server.
      for (let oldest = this.cursor; oldest && !fits(); ) {
        const next: Entry | undefined = oldest.next
        if (oldest.seq === 0) {
          this.fail(
            oldest,
            new QueueFullError(
              DEV
                ? `dropped to make room: queue full (queue.maxMessages ${maxMessages}, queue.maxBytes ${maxBytes}) and queue.overflow is 'drop-oldest'`
                : '',
              { data: oldest.data },
            ),
          )
        }
        oldest = next
      }
    }
    if (fits()) return true
    this.finish(
      entry,
      new QueueFullError(
        DEV
          ? `queue full: ${this.size} messages, ${this.bytes} bytes (queue.maxMessages ${maxMessages}, queue.maxBytes ${maxBytes}); wait for the connection, raise the limits or set queue.overflow to 'drop-oldest'`
          : '',
        { data: entry.data },
      ),
    )
    return false
  }

  private link(entry: Entry, aheadOfQueue: boolean): void {
    let before = aheadOfQueue ? this.cursor : undefined
    // Behind earlier such ones, and behind every numbered entry: numbers go out in order (with
    // `persist`, numbered entries can wait at the cursor for their commit).
    while (before && (before.aheadOfQueue || before.seq !== 0)) before = before.next
    this.linkBefore(entry, before)
  }

  /** Links `entry` before `before` (at the end when undefined), as queued. */
  private linkBefore(entry: Entry, before: Entry | undefined): void {
    if (before) {
      entry.prev = before.prev
      entry.next = before
      if (before.prev) before.prev.next = entry
      else this.head = entry
      before.prev = entry
    } else {
      entry.prev = this.tail
      if (this.tail) this.tail.next = entry
      else this.head = entry
      this.tail = entry
    }
    if (!this.cursor || this.cursor === before) this.cursor = entry
    this.resize(1)
    this.queued++
    this.bytes += entry.size
    this.watcher?.added(entry)
  }

  /** Whether `entry` is in this outbox. */
  has(entry: Entry): boolean {
    // An entry is linked when it is the head or has a predecessor.
    return entry.prev !== undefined || this.head === entry
  }

  /** Takes an entry out of the outbox without finishing it (a no-op when it is not in). */
  remove(entry: Entry): void {
    if (!this.has(entry)) return
    if (this.cursor === entry) this.cursor = entry.next
    if (!entry.sent) this.queued--
    if (entry.prev) entry.prev.next = entry.next
    else this.head = entry.next
    if (entry.next) entry.next.prev = entry.prev
    else this.tail = entry.prev
    entry.prev = entry.next = undefined
    this.resize(-1)
    this.bytes -= entry.size
    if (entry.key !== undefined && this.keyed.get(entry.key) === entry) this.keyed.delete(entry.key)
    if (this.size === 0) this.disarm()
    this.watcher?.removed(entry)
  }

  private arm(at: number): void {
    clearTimeout(this.timer)
    this.timerAt = at
    this.timer = timer(() => this.expire(), at - Date.now())
  }

  private expire(): void {
    this.timer = undefined
    this.timerAt = Number.POSITIVE_INFINITY
    const now = Date.now()
    for (let entry = this.head; entry; ) {
      const following = entry.next
      if (!entry.settled && entry.seq === 0 && entry.staleAt <= now) {
        this.fail(
          entry,
          new TimeoutError(DEV ? `dropped unsent after waiting ${entry.extras?.ttl} ms (the send's ttl, or queue.ttl)` : '', {
            data: entry.data,
          }),
        )
      } else if (!entry.settled && entry.deadline <= now) {
        this.fail(entry, new TimeoutError(entry.timedOut, { data: entry.data }))
      }
      entry = following
    }
    // Counted after the failures: their listeners may have settled or removed the rest (close()).
    let next = Number.POSITIVE_INFINITY
    for (let entry = this.head; entry; entry = entry.next) {
      if (!entry.settled) next = Math.min(next, entry.deadline, entry.seq === 0 ? entry.staleAt : Number.POSITIVE_INFINITY)
    }
    // An onFail listener may have added an entry (and armed for it) meanwhile: keep the earlier.
    if (next < this.timerAt) this.arm(next)
  }
}
