/**
 * The IndexedDB layout of `tethersocket/persist`, one database per store name. Its version is
 * the schema's: a page never opens a database of a newer schema (IndexedDB refuses to lower a
 * version), and a newer library migrates older ones in `upgrade`.
 *
 * The layout is log-structured: an outbox is one small record in {@link OUTBOXES} and a log in
 * {@link LOG}, where each commit appends one record however many entries it holds (IndexedDB
 * costs about as much per request as per kilobyte written, so one record per entry made a burst
 * of sends cost a request each). A snapshot record, written now and then in place of a commit's
 * record, holds the whole outbox and replaces every record before it (log.ts).
 * @module
 */
import type { PersistedEntry, PersistedSession } from '../client/persist.js'

/** The schema version this code writes and reads. Raise it (with a step in `upgrade`) for any change of layout. */
export const SCHEMA_VERSION = 1

/** The object store of outboxes: one record per outbox, keyed by its id. */
export const OUTBOXES = 'outboxes'
/** The object store of the outboxes' logs: keyed by `[outbox id, n]`, so one outbox's log is one key range, in order. */
export const LOG = 'log'

/** The database of a store name. */
export const databaseName = (name: string): string => `tethersocket:${name}`
/** The Web Lock a page holds while it owns an outbox. */
export const lockName = (name: string, id: string): string => `tethersocket:${name}:${id}`
/** The prefix of every outbox lock of a store name (ids never contain ':'). */
export const lockPrefix = (name: string): string => `tethersocket:${name}:`
/** The `sessionStorage` key under which a tab keeps its outbox's id. */
export const tabKey = (name: string): string => `tethersocket:${name}`

/** An outbox record: which outboxes exist (their state is in their log). */
export interface OutboxRecord {
  /** Its id (also the key). */
  readonly id: string
  /** When it was created (ms since the epoch): orphans are offered oldest first. */
  readonly created: number
  /** When a page last opened it. */
  readonly opened: number
}

/** What every log record starts with: its key. */
interface LogKey {
  /** The id of the outbox whose log it is in (first part of the key). */
  readonly outbox: string
  /** Its place in the log: increasing in the order the records were written; gaps are allowed. */
  readonly n: number
}

/** One commit's changes: puts applied first, then removals, then the session. */
export interface DeltaRecord extends LogKey {
  readonly snapshot?: undefined
  /** Entries added or changed. */
  readonly put?: readonly PersistedEntry[]
  /** Positions of entries that are done. */
  readonly remove?: readonly number[]
  /** The session as it stood (`null`: cleared); absent when unchanged. */
  readonly session?: PersistedSession | null
}

/** The whole outbox as it stood: replaces every record before it. */
export interface SnapshotRecord extends LogKey {
  readonly snapshot: true
  /** Every entry, in position order. */
  readonly entries: readonly PersistedEntry[]
  /** The session, if it had one. */
  readonly session?: PersistedSession
}

/** A record of an outbox's log. */
export type LogRecord = DeltaRecord | SnapshotRecord

/** Brings a database from `oldVersion` (0: new) to {@link SCHEMA_VERSION}; runs inside the versionchange transaction. */
export function upgrade(db: IDBDatabase, oldVersion: number): void {
  if (oldVersion < 1) {
    db.createObjectStore(OUTBOXES, { keyPath: 'id' })
    db.createObjectStore(LOG, { keyPath: ['outbox', 'n'] })
  }
}
