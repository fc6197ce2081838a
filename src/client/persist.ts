/**
 * The durable outbox seam (issue 14, in progress): what a socket with the `persist` option keeps
 * across page loads, and the store that keeps it. `tethersocket/persist` implements it on
 * IndexedDB (`indexedDBStore(name)`); the socket does not use it yet.
 *
 * The rule the socket will keep with it (write-ahead): an entry, and the sequence number it is
 * given, are durable before its frame goes on the wire; how far server messages were delivered
 * is durable before they are acknowledged. One `commit` per tick carries every change of that
 * tick, like the frames.
 *
 * Which page owns which outbox: every page opens its own outbox under the store's name, held
 * under a Web Lock while the page lives. A reload reopens the same outbox (its id is kept in
 * `sessionStorage`); a duplicated tab, which copies `sessionStorage`, finds the lock taken and
 * opens a new one. An outbox whose lock nobody holds (its tab was closed with messages pending)
 * is offered for adoption to the next page that opens with the same name.
 * @module
 */
import type { PersistError } from '../errors.js'

/** One queued message as the store keeps it. */
export interface PersistedEntry {
  /** Its place in the outbox: increasing in queue order, unique within the outbox. */
  readonly position: number
  /** Its sequence number once given (tether mode, written at least once); 0 before. */
  readonly seq: number
  /** The encoded message: JSON text (tether mode), or what raw mode writes (text or binary). */
  readonly payload: string | ArrayBuffer
  /** Set for a `request()`: its id (tether mode). */
  readonly requestId?: number
  /** `ttl`: dropped unsent after this time (ms since the epoch). */
  readonly staleAt?: number
  /** `timeout`: failed when not done by this time (ms since the epoch). */
  readonly deadline?: number
  /** `key`: a newer message with the same key replaces this one while both wait. */
  readonly key?: string
}

/** The session of a tether-mode outbox, as far as the page had got. */
export interface PersistedSession {
  /** The server session's id. */
  readonly id: string
  /** Last server sequence number delivered to the page's listeners. */
  readonly delivered: number
  /** Last client sequence number given to an entry. */
  readonly sent: number
  /** Last client sequence number the server acknowledged. */
  readonly acked: number
}

/** What an outbox held when it was opened: what the previous page of this tab (or an adopted one) left. */
export interface PersistedOutbox {
  /** The outbox's id (kept in `sessionStorage` so a reload reopens it). */
  readonly id: string
  /** Tether mode: the session it belongs to, if it had one. */
  readonly session?: PersistedSession
  /** Messages not yet acknowledged (tether) or not yet written (raw), in queue order. */
  readonly entries: readonly PersistedEntry[]
}

/** One tick's changes to an outbox, applied in one durable transaction. */
export interface PersistChanges {
  /** Entries added, or changed (a sequence number given). */
  readonly put?: readonly PersistedEntry[]
  /** Positions of entries that are done (acknowledged, written in raw mode, failed, replaced). */
  readonly remove?: readonly number[]
  /** The session as it stands now (replaces the stored one; `null` clears it). */
  readonly session?: PersistedSession | null
}

// Declared in errors.ts, which PersistError's `reason` needs and which imports nothing of the client.
/** Why a store cannot keep the outbox: the socket then goes on in memory only, and says so. */
export type { PersistFailure } from '../errors.js'

/** An opened outbox: this page owns it until `close()`. */
export interface OutboxHandle {
  /** What it held when opened. */
  readonly opened: PersistedOutbox
  /** Outboxes of pages gone for good (their lock is free) under the same name, offered for adoption. */
  readonly orphans: readonly PersistedOutbox[]
  /**
   * Set when this tab's previous page left an outbox that is gone because the browser deleted the
   * stored data (reason `'evicted'`): what it held is lost. The outbox opened is a new, empty one,
   * kept as usual; report the error.
   */
  readonly lost?: PersistError
  /** Applies changes durably; resolves once the transaction completed, or rejects with a `PersistError` having written nothing of them. */
  commit(changes: PersistChanges): Promise<void>
  /**
   * Takes over an orphan: its entries move into this outbox (after its own), in order; resolves
   * once durable with what was adopted: the orphan's id and session, and its entries under their
   * new positions (after every position this outbox holds or was given in a `commit`). Rejects
   * with reason `'locked'` when another page reopened or adopted it first.
   */
  adopt(orphan: PersistedOutbox): Promise<PersistedOutbox>
  /** Releases the lock (the outbox stays, for this tab's next page or for adoption). */
  close(): void
  /** Deletes the outbox for good (the socket closed with nothing pending). */
  discard(): Promise<void>
}

/** What `indexedDBStore(name)` returns: the client's `persist` option. */
export interface PersistStore {
  /** The name outboxes are kept under (one per app, e.g. `'chat'`). */
  readonly name: string
  /**
   * Opens this page's outbox (reopening the one of this tab's previous page, if any), holding
   * it under a Web Lock. Rejects with a {@link PersistFailure} as the error's `reason` when it
   * cannot keep anything.
   */
  open(): Promise<OutboxHandle>
}
