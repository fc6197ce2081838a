/**
 * A session's journal in a shared store: what this node must record before it may acknowledge
 * a client item or write a message to the client, gathered per tick into one commit.
 *
 * The rule it keeps (docs/SCALING.md states it for users): a client item is acknowledged only
 * once the store recorded it, and what its handlers sent while handling it (`session.send()`
 * before the handler returned, or before the promise it returned settled, and a request's
 * reply) is recorded in the same commit as the item, never in an earlier one: an entry sent
 * while items up to `n` were being handled waits for the commit that records `n`. So if the
 * node dies before that commit, neither the ack nor those sends exist anywhere, the client
 * resends the item, and its sends are made again, once.
 *
 * - Delivered: handed to the handlers (`deliver`). Settled: the handlers returned, and any
 *   promise they returned settled. The commit's `rx` is the last item before the first one not
 *   settled.
 * - An entry sent in the async context of an item's handling (its listener, what it awaits,
 *   the timers and callbacks it starts: Node's AsyncLocalStorage) carries that item (`item`)
 *   and is recorded only with it, once the item and every one before it are settled. Entries
 *   sent outside any handling carry none and are recorded at once. A commit takes the
 *   unrecorded entries it may (moving them ahead of those that wait: messages of different
 *   items are concurrent, and each item's own keep their order).
 * - One commit in flight per session; what comes meanwhile goes in the next one.
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { perTick } from '../protocol/frames.js'
import type { Outgoing, SessionOutbox } from './outbox.js'
import type { CommitBatch, StoredEntry, StoreLink, TopicPlaces } from './store.js'

/** What the journal reports to its session. */
export interface JournalHost {
  /**
   * The store recorded client items up to `rx` and more messages: acknowledge, write.
   * `acknowledged`: the client's ack reached messages other nodes wait on; tell them.
   */
  committed(rx: number, acknowledged: number | undefined): void
  /** The store refused a commit: the session was claimed elsewhere, or is gone; or the store failed. */
  failed(reason: 'fenced' | 'gone' | Error): void
  /**
   * Its places in its topics' logs now. Every topic item pulled so far is in the outbox and
   * recordable at once (it waits for no client item), so the places a commit records are
   * where its entries leave the session.
   */
  places?(): TopicPlaces
}

/** The item whose handling the code running now belongs to, and whose journal (shared store only). */
const handlingItem = new AsyncLocalStorage<{ readonly journal: Journal; readonly seq: number }>()

/** A gap entry as the outbox holds it. */
export function fromStored(entry: StoredEntry): Outgoing {
  const size = Buffer.byteLength(entry.payload)
  if (entry.reply) return { payload: entry.payload, size, reply: true }
  if (entry.missed !== undefined) return { payload: '', size: 0, topic: entry.topic, missed: entry.missed }
  if (entry.topic !== undefined) return { payload: entry.payload, size, topic: entry.topic }
  return { payload: entry.payload, size }
}

/** One session's writes to the shared store. @internal */
export class Journal {
  /** Last client item handed to the handlers. */
  private delivered: number
  /** Items delivered whose handlers have not settled, in order, with when their handling began. */
  private readonly unsettled: Array<{ seq: number; at: number }> = []
  /** Last client item the store recorded: what the client is told is acknowledged. */
  recordedRx: number
  /** Last message the store recorded: messages up to here may be written. */
  private recordedTx: number
  /** Messages the client acknowledged that the store let go. */
  private trimmed: number
  private inFlight = false
  private stopped = false
  /** Another node appended messages: the next commit runs even with nothing of its own, to bring them here. */
  private pulling = false
  /** The session's topic places as the store holds them (JSON). */
  private recordedPlaces: string
  /** Called when no commit is in flight and nothing is left to commit (a release waits for it). */
  private drained: Array<() => void> = []
  /** Called when no commit is in flight (letting the session go waits for the outcome of the last one). */
  private idled: Array<() => void> = []

  constructor(
    private readonly link: StoreLink,
    readonly id: string,
    readonly epoch: number,
    private readonly outbox: SessionOutbox,
    private readonly host: JournalHost,
    recorded: { rx: number; tx: number; trimmed: number; places?: TopicPlaces },
  ) {
    this.recordedPlaces = JSON.stringify(recorded.places ?? {})
    this.delivered = this.recordedRx = recorded.rx
    this.recordedTx = recorded.tx
    this.trimmed = recorded.trimmed
  }

  /** Last message the store recorded. */
  get recordedMessages(): number {
    return this.recordedTx
  }

  /** Commits soon even with nothing to record: another node appended messages, which the commit's gap brings. */
  pull(): void {
    this.pulling = true
    this.schedule()
  }

  /**
   * The item whose handling the code running now belongs to (its listener, or what that
   * started), if it is one of this journal's: an entry sent now is recorded with it.
   */
  get handling(): number | undefined {
    const handling = handlingItem.getStore()
    return handling?.journal === this ? handling.seq : undefined
  }

  /**
   * Hands item `seq` to its handlers (`run`); what they return, if it is a promise, holds its
   * record (and every later one) until it settles.
   */
  deliver(seq: number, run: () => unknown): void {
    this.delivered = seq
    this.unsettled.push({ seq, at: Date.now() })
    let result: unknown
    try {
      result = handlingItem.run({ journal: this, seq }, run)
    } finally {
      if (!isThenable(result)) this.settle(seq)
    }
    if (isThenable(result)) {
      const done = () => this.settle(seq)
      result.then(done, done)
    }
  }

  /** The handlers of `seq` are done: it, and what they sent, may be recorded. */
  settle(seq: number): void {
    const at = this.unsettled.findIndex((item) => item.seq === seq)
    if (at >= 0) this.unsettled.splice(at, 1)
    this.schedule()
  }

  /** Something changed (an entry, an ack, a settled item): commit at the end of the tick. */
  readonly schedule = perTick(() => this.commit())

  /** Stops committing (the session left this node); a waiting drain is released. */
  stop(): void {
    this.stopped = true
    this.wake(this.drained)
    // What waits for the journal to be idle waits for the commit in flight, if any.
    if (!this.inFlight) this.wake(this.idled)
  }

  /**
   * Resolves once nothing is in flight and nothing committable is left (before a release).
   * What waits for an item still being handled is not committable: it stays behind.
   */
  drain(): Promise<void> {
    if (this.stopped || (!this.inFlight && this.nextBatch() === undefined)) return Promise.resolve()
    return new Promise((resolve) => {
      this.drained.push(resolve)
      this.schedule()
    })
  }

  /** Resolves once no commit is in flight: what the store recorded is then known. */
  idle(): Promise<void> {
    if (!this.inFlight) return Promise.resolve()
    return new Promise((resolve) => this.idled.push(resolve))
  }

  /** Resolves what waits for the journal to drain, and to be idle. */
  private release(): void {
    this.wake(this.drained)
    this.wake(this.idled)
  }

  private wake(waiting: Array<() => void>): void {
    for (const resolve of waiting.splice(0)) resolve()
  }

  private get settledRx(): number {
    return this.unsettled.length > 0 ? this.unsettled[0].seq - 1 : this.delivered
  }

  /**
   * The oldest item still being handled, if its handler started before `since` (ms since the
   * epoch) and a message it sent waits for it: a handler that awaits the client's ack of its own
   * message waits forever, since that message is written only once the handler is done.
   */
  stalled(since: number): number | undefined {
    const oldest = this.unsettled[0]
    if (!oldest || oldest.at > since) return undefined
    const waiting = this.outbox.unrecorded(this.recordedTx)[0]
    return waiting?.item !== undefined && waiting.item >= oldest.seq ? oldest.seq : undefined
  }

  /** What a commit now would record, or undefined if it would record nothing. */
  private nextBatch(): (CommitBatch & { entries: StoredEntry[]; placesText: string }) | undefined {
    // Items up to `rx` are settled: they are recorded with every entry they sent, and with the
    // entries of no item; the entries of items still being handled move behind and wait.
    const rx = this.settledRx
    const count = this.outbox.recordableFirst(this.recordedTx, (entry) => entry.item === undefined || entry.item <= rx)
    const entries = this.outbox.unrecorded(this.recordedTx).slice(0, count)
    let broadcast: string | undefined
    for (const entry of entries) if (entry.broadcast !== undefined) broadcast = entry.broadcast
    const trim = this.outbox.acked
    const places = this.host.places?.() ?? {}
    const placesText = JSON.stringify(places)
    const moved = placesText !== this.recordedPlaces
    if (!this.pulling && rx <= this.recordedRx && entries.length === 0 && trim <= this.trimmed && !moved) return undefined
    return {
      placesText,
      ...(moved && { topics: places }),
      epoch: this.epoch,
      rx,
      base: this.recordedTx,
      entries,
      trim,
      recorded: this.recordedRx,
      ...(broadcast !== undefined && { broadcast }),
    }
  }

  private commit(): void {
    if (this.stopped || this.inFlight) return
    const batch = this.nextBatch()
    if (!batch) {
      this.release()
      return
    }
    const { rx, entries } = batch
    this.inFlight = true
    this.pulling = false
    this.link.commit(this.id, batch).then(
      (result) => {
        this.inFlight = false
        if (!result.ok) {
          if (!this.stopped) this.host.failed(result.reason)
          this.stopped = true
        } else {
          // Applied even once stopped: what the store recorded must be known before the session is let go.
          const gap = result.gap.map(fromStored)
          this.outbox.insert(batch.base, gap)
          this.recordedTx = batch.base + gap.length + entries.length
          this.outbox.recorded(this.recordedTx)
          const elsewhere = result.waiting > this.trimmed && batch.trim > this.trimmed
          this.trimmed = Math.max(this.trimmed, batch.trim)
          this.recordedRx = Math.max(this.recordedRx, rx)
          this.recordedPlaces = batch.placesText
          this.host.committed(this.recordedRx, elsewhere ? this.trimmed : undefined)
        }
        this.wake(this.idled)
        if (this.stopped) this.release()
        else this.commit()
      },
      (error: unknown) => {
        this.inFlight = false
        if (!this.stopped) {
          this.stopped = true
          this.host.failed(error instanceof Error ? error : new Error(String(error)))
        }
        this.release()
      },
    )
  }
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function'
