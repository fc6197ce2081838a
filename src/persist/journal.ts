/**
 * The durable outbox's write-ahead log (option `persist`): what changed in the outbox and the
 * session during a tick is written in one transaction at the end of the tick, like the frames.
 *
 * The protocol keeps two rules with it (wire/tether.ts): a message's frame leaves only once its
 * entry and its sequence number are durable (`isDurable`), and an `ack` names only messages whose
 * delivery is durable (`afterDurable`). One commit is in flight at a time; what changes meanwhile
 * goes into the next one, so a busy tick costs one transaction, whatever it holds.
 *
 * When the store fails (quota, storage evicted, the database closed under the page) the socket
 * goes on in memory only: the stored outbox is discarded where possible, so that no later page
 * restores a state this page has moved past.
 * @module
 */
import type { DurableEntry, DurableLog, OutboxHandle, PersistedEntry, PersistedSession } from '../client/persist.js'
import type { PersistError } from '../errors.js'

/** What the journal asks of the socket it serves. */
export interface JournalHost {
  /** The session as it stands now (tether mode), or undefined (raw mode: nothing to keep). */
  session(): PersistedSession | undefined
  /** The store failed: report it; the socket goes on in memory only (the journal is inactive now). */
  failed(error: PersistError): void
  /**
   * Tether mode: what an acknowledgement removes may wait for the next commit (at most
   * {@link LATER} ms): a page gone before it is recorded leaves entries the server has, which the
   * next page's resume settles without sending them. So a message sent alone costs one commit,
   * not two. Raw mode has no such resume: its removals are recorded in their tick.
   */
  readonly lazyRemovals: boolean
}

/** How long an acknowledgement's removals may wait for another commit to carry them, in ms. */
export const LATER = 200

/**
 * `fn`, run once at the end of the current tick however often it is asked for meanwhile, after
 * the tick's other end-of-tick work: a `send()` records its entry before the protocol's flush of
 * that tick numbers it, and one commit must carry both (not the entry, then its number).
 */
function perTick(fn: () => void): () => void {
  let due = false
  return () => {
    if (due) return
    due = true
    queueMicrotask(() =>
      queueMicrotask(() => {
        due = false
        fn()
      }),
    )
  }
}

const sameSession = (a: PersistedSession | undefined, b: PersistedSession | undefined) =>
  a === b || (!!a && !!b && a.id === b.id && a.delivered === b.delivered && a.sent === b.sent && a.acked === b.acked)

/** The record of an entry; undefined for a `Blob`, which cannot be read synchronously (kept in memory only). */
function recordOf(entry: DurableEntry, position: number): PersistedEntry | undefined {
  let payload = entry.payload
  if (typeof payload !== 'string' && !(payload instanceof ArrayBuffer)) {
    if (!ArrayBuffer.isView(payload)) return undefined
    payload = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength).slice().buffer
  }
  const { requestId, deadline, staleAt, key, origin } = entry
  return {
    position,
    seq: entry.seq,
    payload,
    ...(requestId !== undefined && { requestId }),
    ...(deadline !== Number.POSITIVE_INFINITY && { deadline }),
    ...(staleAt !== Number.POSITIVE_INFINITY && { staleAt }),
    ...(key !== undefined && { key }),
    ...(origin !== undefined && { origin }),
  }
}

/** One socket's durable outbox, while the store works. */
export class Journal implements DurableLog {
  /** False once the store failed: from then on everything counts as durable (memory only). */
  active = true
  /** The session as the last completed commit left it (or as restored). */
  durable: PersistedSession | undefined
  /** Where each recorded entry is kept. */
  private readonly positions = new Map<DurableEntry, number>()
  private last: number
  /** Entries to write (added, or numbered) in the next commit. */
  private readonly changed = new Set<DurableEntry>()
  /** Entries to delete in the next commit. */
  private readonly leaving = new Set<DurableEntry>()
  private committing = false
  /** Something must be recorded at the end of this tick (not only removals that may wait). */
  private due = false
  /** Armed while only removals wait: they are recorded then, if no other commit took them. */
  private laterTimer: ReturnType<typeof setTimeout> | undefined
  /** Run once the next commit completes, and those of the commit in flight. */
  private waiting: (() => void)[] = []
  private inFlight: (() => void)[] = []

  /**
   * @param handle - the page's opened outbox
   * @param last - the highest position it holds (new entries go after it)
   */
  constructor(
    readonly handle: OutboxHandle,
    private readonly host: JournalHost,
    last: number,
    durable: PersistedSession | undefined,
  ) {
    this.last = last
    this.durable = durable
  }

  /** An entry kept at `position` already (restored): recorded again only when it changes. */
  place(entry: DurableEntry, position: number): void {
    this.positions.set(entry, position)
    this.last = Math.max(this.last, position)
  }

  /** Whether `entry` is recorded. */
  holds(entry: DurableEntry): boolean {
    return this.positions.has(entry)
  }

  /** A restored entry that did not make it back into the outbox (replaced by a newer one with its key). */
  drop(position: number, entry: DurableEntry): void {
    this.positions.set(entry, position)
    this.leaving.add(entry)
    this.request()
  }

  added(entry: DurableEntry): void {
    if (!this.active) return
    if (!this.positions.has(entry)) this.positions.set(entry, ++this.last)
    this.changed.add(entry)
    this.leaving.delete(entry)
    this.request()
  }

  /** The entry changed (given a sequence number, or renumbered for a new session). */
  numbered(entry: DurableEntry): void {
    if (this.active && this.positions.has(entry)) {
      this.changed.add(entry)
      this.request()
    }
  }

  removed(entry: DurableEntry): void {
    if (!this.active || !this.positions.has(entry)) return
    this.leaving.add(entry)
    if (this.host.lazyRemovals) this.requestLater()
    else this.request()
  }

  /** An entry taken out of the outbox stays recorded: a request acknowledged and waiting for its reply. */
  keep(entry: DurableEntry): void {
    this.leaving.delete(entry)
  }

  /** The session changed (a delivery, an acknowledgement): recorded in this tick's commit. */
  touch(): void {
    if (this.active) this.request()
  }

  /** Runs `then` once everything recorded so far is durable (at once, in a later microtask, when the store failed). */
  afterDurable(then: () => void): void {
    this.waiting.push(then)
    this.request()
  }

  /** Whether a commit is due or running. */
  get busy(): boolean {
    return this.committing || this.changed.size > 0 || this.leaving.size > 0
  }

  /** A commit at the end of this tick (or once the one in flight completes). */
  private request(): void {
    this.due = true
    this.schedule()
  }

  /** A commit within {@link LATER} ms, unless another one comes first and carries what waits. */
  private requestLater(): void {
    if (this.laterTimer !== undefined) return
    this.laterTimer = setTimeout(() => {
      this.laterTimer = undefined
      this.request()
    }, LATER)
  }

  private readonly schedule = perTick(() => this.commit())

  private commit(): void {
    if (this.committing) return // its completion starts the next
    this.due = false
    clearTimeout(this.laterTimer)
    this.laterTimer = undefined
    const waiting = this.waiting
    this.waiting = []
    if (!this.active) {
      for (const then of waiting) then()
      return
    }
    const session = this.host.session()
    const put: PersistedEntry[] = []
    for (const entry of this.changed) {
      if (this.leaving.has(entry)) continue
      const record = recordOf(entry, this.positions.get(entry) as number)
      if (record) put.push(record)
    }
    const remove: number[] = []
    for (const entry of this.leaving) {
      remove.push(this.positions.get(entry) as number)
      this.positions.delete(entry)
    }
    this.changed.clear()
    this.leaving.clear()
    const sessionChanged = session !== undefined && !sameSession(session, this.durable)
    if (put.length === 0 && remove.length === 0 && !sessionChanged) {
      for (const then of waiting) then()
      return
    }
    this.committing = true
    this.inFlight = waiting
    this.handle.commit({ put, remove, ...(sessionChanged && { session }) }).then(
      () => {
        this.committing = false
        if (sessionChanged) this.durable = session
        this.settle()
        if (this.due || this.waiting.length > 0) this.commit()
        else if (this.leaving.size > 0) this.requestLater()
      },
      (error: PersistError) => {
        this.committing = false
        this.fail(error)
      },
    )
  }

  private settle(): void {
    const done = this.inFlight
    this.inFlight = []
    for (const then of done) then()
  }

  /** The store failed: memory only from now on. The stored outbox is discarded, so no later page restores a stale state. */
  private fail(error: PersistError): void {
    if (!this.active) return
    this.active = false
    clearTimeout(this.laterTimer)
    this.positions.clear()
    this.changed.clear()
    this.leaving.clear()
    this.handle.discard().catch(() => this.handle.close())
    this.host.failed(error)
    this.settle()
    this.commit() // runs what waits, at once
  }

  /**
   * The socket stops without finishing what it holds (option `shared`: its page steps down as the
   * holder): nothing more is written, and the outbox stays as the last commit left it, under no
   * lock, for the next holder to adopt. A commit in flight still completes.
   */
  leave(): void {
    if (!this.active) return
    this.active = false
    clearTimeout(this.laterTimer)
    this.handle.close()
  }

  /**
   * The socket closed for good (everything it held failed): once that is written, the stored
   * outbox is deleted; the session ends with the socket.
   */
  end(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.afterDurable(() => {
        const done = () => resolve()
        if (!this.active) done()
        else
          this.handle.discard().then(done, () => {
            this.handle.close()
            done()
          })
        this.active = false
      })
    })
  }
}
