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
 * - Entries pushed while items are being handled carry the last delivered item (`item`); a
 *   commit takes the outbox's unrecorded entries in order up to the first whose item is not
 *   yet settled. Entries pushed while nothing is being handled carry none and go at once.
 * - One commit in flight per session; what comes meanwhile goes in the next one.
 * @module
 */
import { perTick } from '../protocol/frames.js'
import type { Outgoing, SessionOutbox } from './outbox.js'
import type { CommitBatch, StoredEntry, StoreLink } from './store.js'

/** What the journal reports to its session. */
export interface JournalHost {
  /**
   * The store recorded client items up to `rx` and more messages: acknowledge, write.
   * `acknowledged`: the client's ack reached messages other nodes wait on; tell them.
   */
  committed(rx: number, acknowledged: number | undefined): void
  /** The store refused a commit: the session was claimed elsewhere, or is gone; or the store failed. */
  failed(reason: 'fenced' | 'gone' | Error): void
}

/** A gap entry as the outbox holds it. */
export const fromStored = (entry: StoredEntry): Outgoing =>
  entry.reply
    ? { payload: entry.payload, size: Buffer.byteLength(entry.payload), reply: true }
    : { payload: entry.payload, size: Buffer.byteLength(entry.payload) }

/** One session's writes to the shared store. @internal */
export class Journal {
  /** Last client item handed to the handlers. */
  private delivered: number
  /** The item whose handlers are running now, synchronously (what they send is known to be its). */
  private current: number | undefined
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
    recorded: { rx: number; tx: number; trimmed: number },
  ) {
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
   * The items an entry pushed now may belong to: from the oldest being handled (`from`) to the
   * last delivered (`item`); undefined while none is being handled.
   */
  get handling(): number | undefined {
    return this.current ?? (this.unsettled.length > 0 ? this.delivered : undefined)
  }

  /**
   * The oldest item being handled (see {@link handling}); while a handler runs synchronously,
   * that item exactly: what it sends then is known to be its own.
   */
  get handlingFrom(): number | undefined {
    return this.current ?? this.unsettled[0]?.seq
  }

  /**
   * Hands item `seq` to its handlers (`run`); what they return, if it is a promise, holds its
   * record (and every later one) until it settles.
   */
  deliver(seq: number, run: () => unknown): void {
    this.delivered = seq
    this.unsettled.push({ seq, at: Date.now() })
    let result: unknown
    this.current = seq
    try {
      result = run()
    } finally {
      this.current = undefined
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
  private nextBatch(): (CommitBatch & { entries: StoredEntry[] }) | undefined {
    const pending = this.outbox.unrecorded(this.recordedTx)
    // An entry sent while items up to `item` were handled waits until they are all settled; and
    // since any one of them from `from` on may have sent it, none of those is recorded without
    // it. So the commit records items up to `rx` and the entries before the first that waits
    // for an item after `rx`, where `rx` stays below the `from` of every entry left behind
    // (lowering `rx` may leave more behind, so until it holds).
    let rx = this.settledRx
    let count = pending.length
    for (;;) {
      count = pending.findIndex((entry) => entry.item !== undefined && entry.item > rx)
      if (count < 0) {
        count = pending.length
        break
      }
      let bound = rx
      for (let i = count; i < pending.length; i++) {
        const { item, from = item } = pending[i]
        if (from !== undefined && from - 1 < bound) bound = from - 1
      }
      if (bound >= rx) break
      rx = bound
    }
    rx = Math.max(rx, this.recordedRx)
    const entries: StoredEntry[] = pending.slice(0, count)
    let broadcast: string | undefined
    for (const entry of pending.slice(0, count)) if (entry.broadcast !== undefined) broadcast = entry.broadcast
    const trim = this.outbox.acked
    if (!this.pulling && rx <= this.recordedRx && entries.length === 0 && trim <= this.trimmed) return undefined
    return {
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
