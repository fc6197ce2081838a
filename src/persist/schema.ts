/**
 * The IndexedDB layout of `tethersocket/persist`, one database per store name. Its version is
 * the schema's: a page never opens a database of a newer schema (IndexedDB refuses to lower a
 * version), and a newer library migrates older ones in `upgrade`.
 * @module
 */
import type { PersistedEntry, PersistedSession } from '../client/persist.js'

/** The schema version this code writes and reads. Raise it (with a step in `upgrade`) for any change of layout. */
export const SCHEMA_VERSION = 1

/** The object store of outboxes: one record per outbox, keyed by its id. */
export const OUTBOXES = 'outboxes'
/** The object store of entries: keyed by `[outbox id, position]`, so one outbox's entries are one key range, in queue order. */
export const ENTRIES = 'entries'

/** The database of a store name. */
export const databaseName = (name: string): string => `tethersocket:${name}`
/** The Web Lock a page holds while it owns an outbox. */
export const lockName = (name: string, id: string): string => `tethersocket:${name}:${id}`
/** The prefix of every outbox lock of a store name (ids never contain ':'). */
export const lockPrefix = (name: string): string => `tethersocket:${name}:`
/** The `sessionStorage` key under which a tab keeps its outbox's id. */
export const tabKey = (name: string): string => `tethersocket:${name}`

/** An outbox record. */
export interface OutboxRecord {
  /** Its id (also the key). */
  readonly id: string
  /** When it was created (ms since the epoch): orphans are offered oldest first. */
  readonly created: number
  /** When a page last opened it. */
  readonly opened: number
  /** The session, in tether mode once known. */
  readonly session?: PersistedSession
}

/** An entry record: the entry and the outbox it belongs to. */
export interface EntryRecord extends PersistedEntry {
  /** The id of the outbox it belongs to (first part of the key). */
  readonly outbox: string
}

/** Brings a database from `oldVersion` (0: new) to {@link SCHEMA_VERSION}; runs inside the versionchange transaction. */
export function upgrade(db: IDBDatabase, oldVersion: number): void {
  if (oldVersion < 1) {
    db.createObjectStore(OUTBOXES, { keyPath: 'id' })
    db.createObjectStore(ENTRIES, { keyPath: ['outbox', 'position'] })
  }
}
