/**
 * An outbox's log (schema.ts) in memory: the live state its records leave when replayed, and
 * when a commit should write a snapshot instead of its own changes.
 *
 * A page keeps the state of its outbox as its commits complete (the handle's mirror), so a
 * snapshot is written from memory, in the commit's one transaction, without reading anything.
 * Compaction keeps the log short for the next page that replays it, and the cost of rewriting
 * the whole outbox small per commit: a snapshot is due once the records since the last one hold
 * more than twice the live entries (their cost is then paid for by what was written), or once
 * there are more than {@link MAX_DELTAS} of them and more than one per
 * {@link ENTRIES_PER_DELTA} live entries (so a large outbox is not rewritten every few commits
 * of one message).
 * @module
 */
import type { PersistedEntry, PersistedOutbox, PersistedSession } from '../client/persist.js'
import type { LogRecord, SnapshotRecord } from './schema.js'

/** Records after a snapshot beyond which the next commit writes a snapshot (for an outbox of up to 2,048 entries). */
export const MAX_DELTAS = 32
/** Entries a large outbox holds per record allowed after its snapshot. */
export const ENTRIES_PER_DELTA = 64
/** Entries and positions the records after a snapshot may hold beyond twice the live entries. */
export const SLACK = 256

/** One commit's changes, checked and as the store keeps them. */
export interface Delta {
  readonly put: readonly PersistedEntry[]
  readonly remove: readonly number[]
  /** The new session; `null` clears it; undefined leaves it. */
  readonly session?: PersistedSession | null
}

/** The live state of an outbox, and what its log holds since the last snapshot. */
export class OutboxState {
  /** Live entries by position. */
  readonly entries: Map<number, PersistedEntry>
  session: PersistedSession | undefined
  /** Records since the last snapshot (all of them without one). */
  deltas = 0
  /** Entries and positions those records hold. */
  weight = 0

  constructor(entries = new Map<number, PersistedEntry>(), session?: PersistedSession) {
    this.entries = entries
    this.session = session
  }

  /** The state `records` (one outbox's log, in order) leave, and the number of the record after them. */
  static replay(records: readonly LogRecord[]): { state: OutboxState; next: number } {
    let state = new OutboxState()
    for (const record of records) {
      if (record.snapshot) state = new OutboxState(new Map(record.entries.map((entry) => [entry.position, entry])), record.session)
      else {
        const { put = [], remove = [], session } = record
        state.apply({ put, remove, ...(session !== undefined && { session }) })
      }
    }
    const last = records[records.length - 1]
    return { state, next: last ? last.n + 1 : 0 }
  }

  /** Whether it holds nothing to deliver and no session (an outbox to drop rather than offer). */
  get empty(): boolean {
    return this.entries.size === 0 && !this.session
  }

  /** Applies a commit written as a record of its own (puts first: an entry put and removed in one commit ends up removed). */
  apply({ put, remove, session }: Delta): void {
    for (const entry of put) this.entries.set(entry.position, entry)
    for (const position of remove) this.entries.delete(position)
    if (session !== undefined) this.session = session ?? undefined
    this.deltas++
    this.weight += put.length + remove.length
  }

  /** Whether the commit of `delta` should write a snapshot rather than a record of its own. */
  compacts(delta: Delta): boolean {
    const live = this.sizeAfter(delta)
    const deltas = this.deltas + 1
    const weight = this.weight + delta.put.length + delta.remove.length
    return weight > 2 * live + SLACK || deltas > Math.max(MAX_DELTAS, live / ENTRIES_PER_DELTA)
  }

  /** The state after `delta`, as a snapshot of it leaves it (this state is left as it is). */
  after(delta: Delta): OutboxState {
    const next = new OutboxState(new Map(this.entries), this.session)
    next.apply(delta)
    next.deltas = 0
    next.weight = 0
    return next
  }

  /** The snapshot record of this state, as record `n` of outbox `outbox`. */
  snapshot(outbox: string, n: number): SnapshotRecord {
    return { outbox, n, snapshot: true, entries: this.list(), ...(this.session && { session: this.session }) }
  }

  /** The outbox `id` as the seam shows it: its session and its entries in position order. */
  outbox(id: string): PersistedOutbox {
    return { id, ...(this.session && { session: this.session }), entries: this.list() }
  }

  private list(): PersistedEntry[] {
    return Array.from(this.entries.values()).sort((a, b) => a.position - b.position)
  }

  /** How many entries there would be after `delta`. */
  private sizeAfter({ put, remove }: Delta): number {
    let size = this.entries.size
    const added = new Set<number>()
    for (const { position } of put) {
      if (!this.entries.has(position) && !added.has(position)) {
        added.add(position)
        size++
      }
    }
    const removed = new Set<number>()
    for (const position of remove) {
      if ((this.entries.has(position) || added.has(position)) && !removed.has(position)) {
        removed.add(position)
        size--
      }
    }
    return size
  }
}
