/**
 * The durable outbox seam: what a socket with the `persist` option keeps across page loads, the
 * store that keeps it, and what the socket lends the durable outbox to run. `tethersocket/persist`
 * implements the store on IndexedDB (`indexedDBStore(name)`) and carries the machinery (the
 * journal and the restore), so the default bundle holds only these types and the few hooks the
 * socket and the protocol call.
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
import type { PersistError, TetherError } from '../errors.js'
import type { SharedParts, SocketSide } from './shared/index.js'
import type { ProtocolHost } from './wire/types.js'

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
  /** Option `shared`: the tab and number of the tab's message the holder's outbox keeps (`tab:n`). */
  readonly origin?: string
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
   * new positions (after every position this outbox holds or was given in a `commit`). When this
   * outbox has no session and the orphan has one, the orphan's session becomes this outbox's in
   * the same transaction (the page continues it). Rejects
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
  /**
   * Runs the durable outbox for a socket: opens the page's outbox, puts back what previous pages
   * left, and returns the log that keeps the outbox from then on (undefined when the socket no
   * longer wanted it). Rejects with a PersistError when the store cannot be opened. The socket
   * calls it; it lives here so that only pages using `persist` load it.
   * @internal
   */
  restore<Out>(context: RestoreContext<Out>): Promise<DurableLog | undefined>
  /**
   * Option `shared`: a socket's follower protocol and its place in the group of tabs sharing a
   * connection, or undefined where Web Locks or BroadcastChannel are missing. The socket calls it;
   * it lives here so that only pages using `persist` (which `shared` needs) load it.
   * @internal
   */
  share?<In, Out>(name: true | string, url: string, host: ProtocolHost<In>, socket: SocketSide): SharedParts<In, Out> | undefined
}

/** An outbox entry as the durable outbox reads it (the client's outbox entries have these). */
export interface DurableEntry {
  /** Its sequence number once given; 0 before. */
  readonly seq: number
  readonly payload: string | ArrayBuffer | ArrayBufferView | Blob
  readonly requestId: number | undefined
  /** Absolute times in ms, or Infinity. */
  readonly deadline: number
  readonly staleAt: number
  readonly key: string | undefined
  /** Option `shared`, in the holder's socket: the tab and number of a tab's message (`tab:n`). */
  readonly origin?: string | undefined
}

/**
 * The write-ahead log of one socket's outbox, as the socket and the protocol use it: told of
 * every change, it writes each tick's changes in one transaction. Not for apps: the socket and
 * `tethersocket/persist` use it.
 */
export interface DurableLog {
  /** False once the store failed (or the socket closed): everything counts as durable then. */
  readonly active: boolean
  /** The session as the last completed commit left it. */
  readonly durable: PersistedSession | undefined
  /** An entry entered the outbox. */
  added(entry: DurableEntry): void
  /** An entry left the outbox (finished, failed or replaced). */
  removed(entry: DurableEntry): void
  /** An entry's sequence number was given (or cleared for a new session). */
  numbered(entry: DurableEntry): void
  /** An entry that left the outbox stays recorded: an acknowledged request awaiting its reply. */
  keep(entry: DurableEntry): void
  /** The session changed: recorded in this tick's commit. */
  touch(): void
  /** Runs `then` once everything recorded so far is durable. */
  afterDurable(then: () => void): void
  /** The socket closed: deletes the stored outbox once the last changes are written. */
  end(): Promise<void>
  /** Option `shared`: the holder steps down; the stored outbox stays, unlocked, for the next holder. */
  leave(): void
}

/** Options of a message put back from a previous page, with absolute deadlines (Infinity for none). */
export interface RestoredOptions {
  readonly deadline: number
  readonly staleAt: number
  /** What is left of its timeout and ttl, in ms (for the messages of a TimeoutError). */
  readonly timeout?: number
  readonly ttl?: number
  readonly key?: string
  readonly requestId?: number
  readonly origin?: string
}

/** A message a previous page left, as the socket takes it back. */
export interface RestoringItem {
  readonly data: unknown
  readonly payload: string | ArrayBuffer
  /** Its sequence number in the continued session; 0 to be numbered anew. */
  readonly seq: number
  readonly options: RestoredOptions
}

/** A restored message in the socket: its entry and the promise its outcome settles. */
export interface RestoredEntry {
  readonly entry: DurableEntry
  readonly promise: Promise<unknown>
}

/** The socket's outbox, as a restore uses it. */
export interface RestoringOutbox {
  /** Puts items back ahead of everything queued, in order; `kept` false for one a newer message with its key replaced. */
  restore(items: readonly RestoringItem[]): (RestoredEntry & { kept: boolean })[]
  /** The entries in the outbox now, in order (sent since the socket was created). */
  entries(): DurableEntry[]
}

/** The session side of tether mode, as a restore uses it. */
export interface RestoringSession {
  /** The session as it stands (what a commit records). */
  snapshot(): PersistedSession | undefined
  /** Takes up a previous page's session: the next hello resumes it. */
  resume(session: PersistedSession): void
  /** Request ids up to `id` are a previous page's: new ones go after. */
  reserveRequestIds(id: number): void
  /** A fresh request id (for a renumbered request). */
  nextRequestId(): number
  /** A request acknowledged before the reload: only its reply is still to come. */
  awaitReply(item: RestoringItem): RestoredEntry
}

/**
 * What the socket lends the durable outbox while it restores: its outbox, its protocol's session
 * side, and where to report. Not for apps: the socket and `tethersocket/persist` use it.
 */
export interface RestoreContext<Out> {
  /** Tether mode's session side; undefined in raw mode (no session, no requests). */
  readonly session: RestoringSession | undefined
  /** The socket's outbox. */
  readonly outbox: RestoringOutbox
  /** Whether the socket still wants the outbox (it may have been closed while the store opened). */
  wanted(): boolean
  /** From now on the outbox and the protocol report their changes to `log`. */
  start(log: DurableLog): void
  /** Reports a store failure that does not stop the socket (an adoption that failed, storage evicted). */
  report(error: PersistError): void
  /** The store failed after it opened: memory only from now on. */
  failed(error: PersistError): void
  /** Reports what became of one previous page's messages. */
  restored(info: RestoredInfo<Out>): void
  /** Option `shared`: a message of a tab, put back from a previous holder, and the promise its outcome settles. */
  held?(origin: string, outcome: Promise<unknown>): void
}

/** A message a previous page sent that was delivered: the `restored` event lists them. */
export interface RestoredMessage<Out = unknown> {
  /** The message, as decoded from what was stored (tether mode: the JSON value; raw mode: what was written). */
  readonly data: Out
  /** A `request()`: the server's reply. */
  readonly reply?: unknown
  /** @internal Option `shared`: the tab and number of the tab's message. */
  readonly origin?: string
}

/** A message a previous page sent that was given up on. */
export interface RestoredFailure<Out = unknown> {
  /** The message, as decoded from what was stored. */
  readonly data: Out
  /** Why (a `TimeoutError` when its timeout passed, a `ClosedError` when the socket was closed, …). */
  readonly error: TetherError
  /** @internal Option `shared`: the tab and number of the tab's message. */
  readonly origin?: string
}

/**
 * The `restored` event's argument: what became of the messages a previous page left, reported
 * once all of them are finished (their `send()` promises were lost with that page).
 * @example
 * ```ts
 * sock.on('restored', ({ delivered, failed }) => {
 *   if (delivered.length) toast(`${delivered.length} messages sent from your last visit`)
 *   for (const { data, error } of failed) showUnsent(data, error.message)
 * })
 * ```
 */
export interface RestoredInfo<Out = unknown> {
  /** `'reload'`: this tab's previous page; `'adopted'`: a page that was closed with messages pending. */
  readonly from: 'reload' | 'adopted'
  /** Delivered (acknowledged, or answered for a request), in send order. */
  readonly delivered: RestoredMessage<Out>[]
  /** Given up on, in send order. */
  readonly failed: RestoredFailure<Out>[]
}
